"""The plug-in contract every distillation method follows.

A method is a `keras.losses.Loss` subclass. It declares what it needs by
overriding class attributes (or properties, when the need depends on the
constructor's arguments):

* `teacher_taps` / `student_taps`: names of layers whose outputs it reads
  (the logits are always available under the key `"logits"`);
* `requires_labels`: whether it reads the integer labels;
* `side_inputs`: extra keys it reads from a dict-shaped batch
  (e.g. `"index"` for CRD's memory bank);

and it takes, as a constructor argument, `input_view`: optionally a
`keras_distill.views.InputView` that builds the inputs this term is computed
on (KD+'s mixup batch); `None` means the batch itself.

The trainer asks once, when it is built, then calls the term through
`Loss.__call__(y_true, y_pred, sample_weight)`, so reduction and the
multi-replica scaling are Keras's own. `y_pred` is a dict::

    {"teacher": {"logits": z_t, tap: feature, ...},
     "student": {"logits": z_s, tap: feature, ...},
     "side_inputs": {key: tensor, ...},
     "training": True or False}          # a Python bool

and `y_true` holds the integer labels (as float: Keras casts `y_true` to the
loss dtype; `call` casts them back). Subclasses implement `compute`, which
returns one loss value per example; `call` forwards the training flag to it
(`compute(..., training=...)`), so a term never keeps the flag as state.

Learned parts (adapters: a FitNet regressor, DPK's codec, CRD's heads) are
`keras.layers.Layer`s that a term creates in `build`; the trainer owns
and trains them, checkpoints them with the student, and never exports
them. State that changes during training (a ratio, a class mask, a memory
bank) is a `keras.Variable` created in `build` with `add_state_variable`,
so it is created under the trainer's distribution strategy, tracked and
checkpointed, and assigned with `.assign()` by the term or a callback.
"""

from __future__ import annotations

import inspect

import keras
import tensorflow as tf
from keras import ops

# Re-exported: `keras_distill.losses.log_softmax_kl` / `kl_from_target` are public.
from keras_distill.ops import kl_from_target, log_softmax_kl

__all__ = ["DistillationLoss", "kl_from_target", "log_softmax_kl"]

# The needs the former constructor took as keyword arguments.
_DECLARATIONS = ("teacher_taps", "student_taps", "requires_labels", "side_inputs")


@keras.saving.register_keras_serializable(package="keras_distill")
class DistillationLoss(keras.losses.Loss):
    """Base class of every distillation term.

    Subclasses implement
    `compute(teacher, student, labels, side_inputs, training=False)`
    returning a per-example loss of shape `(batch,)`, declare their needs by
    overriding the class attributes below (or properties), and extend
    `get_config` with their own constructor arguments.

    Class attributes (the declaration):
        teacher_taps: Teacher layer names the term reads (default `()`).
        student_taps: Student layer names the term reads (default `()`).
        requires_labels: Whether `compute` reads integer labels (default False).
        side_inputs: Keys the term reads from a dict-shaped batch (default `()`).

    Compatibility with terms written for the earlier contract:

    * A `compute(teacher, student, labels, side_inputs)` override without a
      `training` parameter keeps working: whether `compute` accepts
      `training` (by name, or `**kwargs`) is inspected once, at
      construction; the flag is forwarded only if it does. Such a term may
      still read `self.training`, which `call` sets before calling it
      (the only case where the flag is stored on the term).
    * The keyword arguments `teacher_taps`, `student_taps`,
      `requires_labels` and `side_inputs` are still accepted (e.g. from a
      subclass's `super().__init__(teacher_taps=...)` or an old saved
      config): each is applied when the class does not declare that need
      itself, and ignored when it does (the class's declaration wins, e.g.
      `FitNet`'s taps come from its `teacher_tap` / `student_tap`).

    The training flag is read from `y_pred["training"]` only (default
    False when absent); setting `term.training` has no effect.

    Args:
        input_view: An `InputView` the term is computed on, or `None` for
            the batch itself.
        name: Name of the term; the trainer logs its value under it.
        reduction: Keras loss reduction. Keep the default
            `"sum_over_batch_size"` for correct multi-replica scaling.
        dtype: Computation dtype. Defaults to float32 even under a mixed
            precision policy, so the distillation maths stays in float32.

    Example:

    ```python
    class L2Logits(DistillationLoss):
        def compute(self, teacher, student, labels, side_inputs, training=False):
            diff = student["logits"] - teacher["logits"]
            return keras.ops.sum(keras.ops.square(diff), axis=-1)


    class L2Feature(DistillationLoss):
        def __init__(self, tap="stage2", name="l2_feature", **kwargs):
            super().__init__(name=name, **kwargs)
            self.tap = tap

        @property
        def teacher_taps(self):
            return (self.tap,)

        @property
        def student_taps(self):
            return (self.tap,)

        def compute(self, teacher, student, labels, side_inputs, training=False):
            diff = student[self.tap] - teacher[self.tap]
            return keras_distill.ops.mean_per_example(keras.ops.square(diff))
    ```
    """

    teacher_taps = ()
    student_taps = ()
    requires_labels = False
    side_inputs = ()

    def __init__(self, input_view=None, name=None, reduction="sum_over_batch_size",
                 dtype=None, **declarations):
        unknown = sorted(set(declarations) - set(_DECLARATIONS))
        if unknown:
            raise TypeError(
                f"{type(self).__name__} got unexpected keyword arguments {unknown}. "
                f"Declare needs by overriding the class attributes {_DECLARATIONS}.")
        super().__init__(name=name, reduction=reduction, dtype=dtype or "float32")
        for key, value in declarations.items():
            if not self._declares(key):
                setattr(self, key, bool(value) if key == "requires_labels" else tuple(value))
        self.input_view = input_view
        self.adapters = []
        self.state_variables = {}
        self.built = False
        self._compute_takes_training = _accepts_training(type(self).compute)

    @classmethod
    def _declares(cls, key):
        """Whether a subclass overrides the declaration `key` (attribute or property)."""
        for klass in cls.__mro__:
            if klass is DistillationLoss:
                return False
            if key in vars(klass):
                return True
        return False

    # ------------------------------------------------------------------ build
    def build(self, teacher_shapes, student_shapes):
        """Creates adapters and state variables once shapes are known.

        Called by the trainer inside its strategy scope, once.

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
        """Creates a non-trainable variable the trainer tracks.

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
        """Registers a training-only layer owned (and trained) by the trainer."""
        self.adapters.append(layer)
        return layer

    def extra_metrics(self):
        """Extra scalars the trainer logs after every train and test step.

        Override to report state, e.g. a ratio the term updates
        (`{"ratio": self.ratio}`). Values are read after the step's updates;
        the trainer logs each as `"<term name>_<key>"` (the step's value,
        not an average). Values must agree across replicas (e.g. state
        variables assigned with aggregation "mean" from replica-equal values).

        Returns:
            Dict key -> scalar `keras.Variable` or tensor; empty by default.
        """
        return {}

    # ---------------------------------------------------------------- compute
    def call(self, y_true, y_pred):
        labels = ops.cast(y_true, "int32") if self.requires_labels else None
        training = _as_python_bool(y_pred.get("training", False), self.name)
        return self.compute_per_example(
            y_pred["teacher"], y_pred["student"], labels, y_pred.get("side_inputs", {}),
            training=training)

    def compute_per_example(self, teacher, student, labels, side_inputs, training=False):
        """Calls `compute`, forwarding `training` only if the override accepts it.

        Wrappers (e.g. `ClassMask`) call their inner term through this, so
        inner terms of either contract get the flag.

        Args:
            teacher: Dict with `"logits"` and the declared teacher taps.
            student: Dict with `"logits"` and the declared student taps.
            labels: Integer labels `(batch,)` if `requires_labels`, else `None`.
            side_inputs: Dict of the declared side inputs.
            training: Whether this is a training step (a Python bool).

        Returns:
            Tensor of shape `(batch,)`.
        """
        if self._compute_takes_training:
            return self.compute(teacher, student, labels, side_inputs, training=training)
        self.training = training  # read by terms of the earlier contract
        return self.compute(teacher, student, labels, side_inputs)

    def compute(self, teacher, student, labels, side_inputs, training=False):
        """Per-example loss.

        Args:
            teacher: Dict with `"logits"` and the declared teacher taps.
            student: Dict with `"logits"` and the declared student taps.
            labels: Integer labels `(batch,)` if `requires_labels`, else `None`.
            side_inputs: Dict of the declared side inputs.
            training: Whether this is a training step: a term may update its
                state (a memory bank, a ratio) only then.

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


def _accepts_training(compute):
    """Whether a `compute` function takes a `training` argument (by name or `**kwargs`)."""
    parameters = inspect.signature(compute).parameters.values()
    return any(p.name == "training" or p.kind is inspect.Parameter.VAR_KEYWORD
               for p in parameters)


def _as_python_bool(value, name):
    """The training flag as a Python bool.

    `Loss.__call__` converts every leaf of `y_pred` to a tensor, so a Python
    bool arrives as a constant tensor; its static value is read back.
    """
    if isinstance(value, bool):
        return value
    static = tf.get_static_value(value)
    if static is None:
        raise ValueError(
            f"Term {name!r}: y_pred['training'] must be a Python bool (the trainer's "
            f"`training` argument), got a tensor whose value is only known at run time: "
            f"{value!r}.")
    return bool(static)
