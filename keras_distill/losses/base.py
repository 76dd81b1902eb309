"""The plug-in contract every distillation method follows.

A method is a `keras.losses.Loss` subclass. It declares, at construction,
what it needs from the two networks and from the batch:

* `teacher_taps` / `student_taps`: names of layers whose outputs it reads
  (the logits are always available under the key `"logits"`);
* `requires_labels`: whether it reads the integer labels;
* `side_inputs`: extra keys it reads from a dict-shaped batch
  (e.g. `"index"` for CRD's memory bank);
* `input_view`: optionally, a `keras_distill.views.InputView` that builds
  the inputs this term is computed on (KD+'s mixup batch); `None` means
  the batch itself.

The `Distiller` asks once, when it is built, then calls the term through
`Loss.__call__(y_true, y_pred, sample_weight)`, so reduction and the
multi-replica scaling are Keras's own. `y_pred` is a dict::

    {"teacher": {"logits": z_t, tap: feature, ...},
     "student": {"logits": z_s, tap: feature, ...},
     "side_inputs": {key: tensor, ...}}

and `y_true` holds the integer labels (as float: Keras casts `y_true` to the
loss dtype; `call` casts them back). Subclasses implement `compute`, which
returns one loss value per example.

Learned parts (adapters: a FitNet regressor, DPK's codec, CRD's heads) are
`keras.layers.Layer`s that a term creates in `build`; the Distiller owns
and trains them, checkpoints them with the student, and never exports
them. State that changes during training (a ratio, a class mask, a memory
bank) is a `keras.Variable` created in `build` with `add_state_variable`,
so it is created under the Distiller's distribution strategy, tracked and
checkpointed, and assigned with `.assign()` by the term or a callback.
"""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_distill")
class DistillationLoss(keras.losses.Loss):
    """Base class of every distillation term.

    Subclasses implement `compute(teacher, student, labels, side_inputs)`
    returning a per-example loss of shape `(batch,)`, and extend
    `get_config` with their own hyperparameters.

    Args:
        teacher_taps: Teacher layer names the term reads.
        student_taps: Student layer names the term reads.
        requires_labels: Whether `compute` reads integer labels.
        side_inputs: Keys the term reads from a dict-shaped batch.
        input_view: An `InputView` the term is computed on, or `None` for
            the batch itself.
        name: Name of the term; the Distiller logs its value under it.
        reduction: Keras loss reduction. Keep the default
            `"sum_over_batch_size"` for correct multi-replica scaling.
        dtype: Computation dtype. Defaults to float32 even under a mixed
            precision policy, so the distillation maths stays in float32.

    Example:

    ```python
    class L2Logits(DistillationLoss):
        def compute(self, teacher, student, labels, side_inputs):
            diff = student["logits"] - teacher["logits"]
            return keras.ops.sum(keras.ops.square(diff), axis=-1)
    ```
    """

    def __init__(
        self,
        teacher_taps=(),
        student_taps=(),
        requires_labels=False,
        side_inputs=(),
        input_view=None,
        name=None,
        reduction="sum_over_batch_size",
        dtype=None,
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype or "float32")
        self.teacher_taps = tuple(teacher_taps)
        self.student_taps = tuple(student_taps)
        self.requires_labels = bool(requires_labels)
        self.side_inputs = tuple(side_inputs)
        self.input_view = input_view
        self.adapters = []
        self.state_variables = {}
        self.training = False
        self.built = False

    # ------------------------------------------------------------------ build
    def build(self, teacher_shapes, student_shapes):
        """Creates adapters and state variables once shapes are known.

        Called by the Distiller inside its strategy scope, once.

        Args:
            teacher_shapes: Dict tap name -> shape (batch dim `None`),
                including `"logits"`.
            student_shapes: The same for the student.
        """
        self.built = True

    def require_matching_shapes(self, teacher_shapes, student_shapes, teacher_tap,
                                student_tap, hint="use a method with a learned adapter, "
                                "e.g. keras_distill.losses.FitNet"):
        """Raises a clear error when two taps' shapes (batch excluded) differ."""
        teacher_shape = tuple(teacher_shapes.get(teacher_tap) or ())[1:]
        student_shape = tuple(student_shapes.get(student_tap) or ())[1:]
        if teacher_shape and student_shape and teacher_shape != student_shape:
            raise ValueError(
                f"{type(self).__name__} {self.name!r} compares teacher tap "
                f"{teacher_tap!r} of shape {teacher_shape} with student tap "
                f"{student_tap!r} of shape {student_shape}; they must match. Pick taps "
                f"of equal shape, or {hint}.")

    def add_state_variable(self, name, initializer, shape=(), dtype="float32",
                           aggregation="mean"):
        """Creates a non-trainable variable the Distiller tracks.

        Args:
            name: Variable name, unique within the term.
            initializer: A value or Keras initializer.
            shape: Variable shape.
            dtype: Variable dtype.
            aggregation: How replicas' assignments combine under a
                distribution strategy (`"mean"`, `"sum"`, `"none"`,
                `"only_first_replica"`).

        Returns:
            The `keras.Variable`.
        """
        if callable(initializer) and not isinstance(initializer, keras.Variable):
            value = initializer(shape, dtype=dtype)
        else:
            value = ops.cast(ops.broadcast_to(initializer, shape), dtype)
        variable = keras.Variable(
            value, trainable=False, dtype=dtype, aggregation=aggregation,
            name=f"{self.name}_{name}")
        self.state_variables[name] = variable
        return variable

    def add_adapter(self, layer):
        """Registers a training-only layer owned (and trained) by the Distiller."""
        self.adapters.append(layer)
        return layer

    def extra_metrics(self):
        """Extra scalars the Distiller logs after every train and test step.

        Override to report state, e.g. a ratio the term updates
        (`{"ratio": self.ratio}`). Values are read after the step's updates;
        the Distiller logs each as `"<term name>_<key>"` (the step's value,
        not an average). Values must agree across replicas (e.g. state
        variables assigned with aggregation "mean" from replica-equal values).

        Returns:
            Dict key -> scalar `keras.Variable` or tensor; empty by default.
        """
        return {}

    # ---------------------------------------------------------------- compute
    def call(self, y_true, y_pred):
        labels = ops.cast(y_true, "int32") if self.requires_labels else None
        return self.compute(
            y_pred["teacher"], y_pred["student"], labels,
            y_pred.get("side_inputs", {}))

    def compute(self, teacher, student, labels, side_inputs):
        """Per-example loss.

        Args:
            teacher: Dict with `"logits"` and the declared teacher taps.
            student: Dict with `"logits"` and the declared student taps.
            labels: Integer labels `(batch,)` if `requires_labels`, else `None`.
            side_inputs: Dict of the declared side inputs.

        Returns:
            Tensor of shape `(batch,)`.
        """
        raise NotImplementedError(
            f"{type(self).__name__} must implement compute().")

    # ----------------------------------------------------------- serialization
    def get_config(self):
        config = super().get_config()
        config["input_view"] = (
            keras.saving.serialize_keras_object(self.input_view)
            if self.input_view is not None else None)
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if config.get("input_view") is not None:
            config["input_view"] = keras.saving.deserialize_keras_object(
                config["input_view"])
        return cls(**config)


def log_softmax_kl(teacher_logits, student_logits, temperature):
    """`T^2 * KL(softmax(z_t / T) || softmax(z_s / T))` per example.

    Computed from log-probabilities on both sides, summed over classes.

    Args:
        teacher_logits: `(batch, classes)`.
        student_logits: `(batch, classes)`.
        temperature: Softening temperature `T` (float or scalar tensor).

    Returns:
        `(batch,)` tensor.
    """
    log_p = ops.log_softmax(teacher_logits / temperature, axis=-1)
    log_q = ops.log_softmax(student_logits / temperature, axis=-1)
    kl = ops.sum(ops.exp(log_p) * (log_p - log_q), axis=-1)
    return kl * (temperature ** 2)


def kl_from_target(target_probabilities, student_logits, temperature):
    """`T^2 * KL(target || softmax(z_s / T))` for an explicit target distribution.

    Zero-probability target entries contribute 0 (the `0 log 0 = 0` limit).

    Args:
        target_probabilities: `(batch, classes)`, rows summing to 1.
        student_logits: `(batch, classes)`.
        temperature: Softening temperature `T`.

    Returns:
        `(batch,)` tensor.
    """
    log_q = ops.log_softmax(student_logits / temperature, axis=-1)
    safe = ops.where(target_probabilities > 0, target_probabilities, 1.0)
    entropy_terms = ops.where(
        target_probabilities > 0, target_probabilities * ops.log(safe), 0.0)
    kl = ops.sum(entropy_terms - target_probabilities * log_q, axis=-1)
    return kl * (temperature ** 2)
