"""Input validation: clear errors for inputs a trainer cannot train on.

Each check names the problem and the fix. The trainers call them at
construction (`check_output_kind`, `check_compatible`), at the top of every
step (`check_batch`, `check_cached_teacher_outputs`; `check_step_inputs`,
which checks shapes when the step is traced and adds `assert_labels_in_range`
to the graph), and around `fit` (`check_not_empty`, `RequireTrainingBatches`).
The recipes use `TrackedOptions` to refuse `--method_options` a method never
reads.
"""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import ops

from keras_distill.features import is_graph_model

# Smallest probability taken when turning probabilities into logits: log(1e-30) = -69 is
# finite, so a probability that underflowed to 0 gives no -inf (and no 0 * inf = nan).
PROBABILITY_FLOOR = 1e-30
OUTPUT_KINDS = ("logits", "probabilities")


# ------------------------------------------------------------- output activation
def output_activation(model):
    """The activation a graph model applies last, and the layer applying it.

    Follows the output tensor to the operation producing it: a `Softmax`
    layer (or `keras.ops.softmax`), an `Activation` layer, or a layer with an
    `activation` argument (`Dense`, `Conv2D`, ...). Nested functional models
    are followed into.

    Args:
        model: A `keras.Model`.

    Returns:
        `(activation_name, layer_name)`, e.g. `("softmax", "predictions")` or
        `("linear", "logits")`; `(None, None)` when it cannot be told (a
        subclassed model, a custom layer).
    """
    outputs = getattr(model, "outputs", None)
    if not outputs:
        return None, None
    operation = getattr(getattr(outputs[0], "_keras_history", None), "operation", None)
    for _ in range(16):  # nested models: follow their own output
        if isinstance(operation, keras.Model) and getattr(operation, "outputs", None):
            operation = getattr(getattr(operation.outputs[0], "_keras_history", None),
                                "operation", None)
        else:
            break
    if operation is None:
        return None, None
    name = getattr(operation, "name", None)
    if type(operation).__name__ in ("Softmax", "LogSoftmax"):
        return type(operation).__name__.lower().replace("logsoftmax", "log_softmax"), name
    activation = getattr(operation, "activation", None)
    if activation is None:
        return None, None
    return getattr(activation, "__name__", str(activation)), name


def check_output_kind(model, role, kind="logits"):
    """Refuses a network whose output is not what the Distiller was told it is.

    Args:
        model: The teacher or the student.
        role: `"teacher"` or `"student"`, for the message.
        kind: `"logits"` (the default for both networks) or
            `"probabilities"` (teachers only: `Distiller(teacher_outputs=...)`).

    Raises:
        ValueError: a softmax output where logits are expected (naming the
            layer and the fix), or `"probabilities"` for an output known to
            be linear.
    """
    if kind not in OUTPUT_KINDS:
        raise ValueError(f"{role}_outputs must be one of {OUTPUT_KINDS}, got {kind!r}.")
    activation, layer = output_activation(model)
    if kind == "logits" and activation == "softmax":
        if role == "teacher":
            fix = ("Pass Distiller(..., teacher_outputs='probabilities') (the Distiller then "
                   "uses log-probabilities, which give the same softmax at every temperature), "
                   "or rebuild the teacher without its final softmax (e.g. "
                   "classifier_activation=None for keras.applications models).")
        else:
            fix = ("Build the student without its final softmax (activation=None, or "
                   "classifier_activation=None for keras.applications models) and apply the "
                   "softmax at inference, e.g. "
                   "keras.Sequential([student, keras.layers.Softmax()]).")
        raise ValueError(
            f"The {role} {model.name!r} ends in a softmax (layer {layer!r}): it outputs "
            "probabilities, but distillation terms and the supervised loss "
            f"(from_logits=True) read logits. {fix}")
    if kind == "probabilities" and activation is not None and \
            activation not in ("softmax", "log_softmax"):
        raise ValueError(
            f"teacher_outputs='probabilities', but the {role} {model.name!r} ends in layer "
            f"{layer!r} with activation {activation!r}: it outputs logits, not probabilities. "
            "Drop teacher_outputs (the default 'logits' is right for it).")


def probabilities_to_logits(probabilities):
    """`log(max(p, 1e-30))`: logits whose softmax is `p` (at any temperature T,
    `softmax(log p / T)` is the tempered distribution of the teacher)."""
    probabilities = ops.cast(probabilities, "float32")
    return ops.log(ops.maximum(probabilities, PROBABILITY_FLOOR))


# --------------------------------------------------------------------- the batch
def check_inputs_fit(inputs, model, role):
    """At trace time: refuses a batch whose image shape the network does not take.

    Args:
        inputs: The batch's model inputs (a tensor; other structures pass).
        model: The teacher or the student.
        role: `"teacher"` or `"student"`.

    Raises:
        ValueError: naming both shapes and the fix.
    """
    expected = getattr(model, "inputs", None)
    if not expected or len(expected) != 1 or not hasattr(inputs, "shape"):
        return
    want = tuple(expected[0].shape[1:])
    got = tuple(inputs.shape[1:])
    if len(want) != len(got) or any(
            w is not None and g is not None and w != g for w, g in zip(want, got)):
        raise ValueError(
            f"The batch's inputs have shape {got} (batch dimension left out) but the {role} "
            f"{model.name!r} takes {want}. Resize or reshape the data to {want} in the input "
            "pipeline (e.g. keras.layers.Resizing, or tf.image.resize in a tf.data map), or "
            f"build the models with input_shape={got}.")


def check_compatible(teacher, student, teacher_shapes, student_shapes):
    """At construction: refuses a teacher and a student that cannot see the same batch.

    Args:
        teacher: The teacher `keras.Model`.
        student: The student `keras.Model`.
        teacher_shapes: Dict tap -> shape of the teacher (`"logits"` included).
        student_shapes: The same for the student.

    Raises:
        ValueError: different numbers of classes, or different input shapes,
            naming both and the fix.
    """
    t_logits, s_logits = teacher_shapes.get("logits"), student_shapes.get("logits")
    if t_logits and s_logits and t_logits[-1] != s_logits[-1]:
        raise ValueError(
            f"The teacher predicts {t_logits[-1]} classes but the student predicts "
            f"{s_logits[-1]}: distillation needs the same classes. Build the student "
            f"with num_classes={t_logits[-1]} (or give the teacher the student's head).")
    if not (is_graph_model(teacher) and is_graph_model(student)):
        return
    t_in = [tuple(i.shape[1:]) for i in teacher.inputs]
    s_in = [tuple(i.shape[1:]) for i in student.inputs]
    if len(t_in) != len(s_in) or any(
            len(a) != len(b) or any(x is not None and y is not None and x != y
                                    for x, y in zip(a, b))
            for a, b in zip(t_in, s_in)):
        raise ValueError(
            f"The teacher takes inputs of shape {t_in} but the student takes "
            f"{s_in}: both see the same batch. Resize inside one model (e.g. a "
            "keras.layers.Resizing layer at its input) so both accept the data.")


def check_batch(terms, labels, side_inputs, training, supervised):
    """Refuses a batch that lacks what the loss reads: labels, or a term's side inputs.

    Args:
        terms: The trainer's `keras_distill.terms.WeightedTerms`.
        labels: The batch's `y`, or None when it yields no labels.
        side_inputs: Dict of the batch's side inputs.
        training: A training step. At evaluation a term whose side inputs
            are missing is skipped, not refused.
        supervised: Whether `compile()` was given a supervised loss.

    Raises:
        ValueError: naming the terms, what is missing and how to yield it.
    """
    needs_labels = [name for name, term in terms.items()
                    if term.requires_labels and term.input_view is None]
    if labels is None and needs_labels:
        raise ValueError(
            f"Distillation term(s) {needs_labels} need integer labels, but the dataset "
            "yields no labels. Yield (inputs, labels) pairs, or use terms that need "
            "no labels.")
    if labels is None and supervised:
        raise ValueError(
            "compile() was given a supervised loss but the dataset yields no "
            "labels. Yield (inputs, labels) pairs, or compile without `loss=` to "
            "distil on unlabeled data.")
    if labels is not None and needs_labels and len(labels.shape) == 2 and \
            labels.shape[-1] not in (1, None):
        raise ValueError(
            f"Labels have shape {tuple(labels.shape)} (one-hot or soft labels), but term(s) "
            f"{needs_labels} need integer class labels of shape (batch,). Convert with "
            "`np.argmax(labels, axis=-1)`, or keep soft labels only for the supervised "
            "loss and use terms that read no labels.")
    for name in terms.names:
        missing = set(terms.side_inputs(name)) - set(side_inputs)
        if missing and training:  # at evaluation such terms are skipped
            wanted = ", ".join(repr(m) + ": ..." for m in sorted(missing))
            raise ValueError(
                f"Term {name!r} reads side input(s) {sorted(missing)} that the batch "
                f"does not carry (it has {sorted(side_inputs) or 'none'}). Yield batches as "
                f"({{'inputs': x, {wanted}}}, y).")


def check_step_inputs(inputs, labels, networks, num_classes=None, assert_labels=True):
    """Input shapes (at trace time) and, in the graph, the labels' range.

    Args:
        inputs: The batch's model inputs.
        labels: The batch's `y`, or None.
        networks: Dict role -> `keras.Model` that runs on `inputs`.
        num_classes: The classes the networks predict, when the loss reads the
            labels (None: the labels' range is not checked).
        assert_labels: False under XLA, which drops assert ops.

    Returns:
        `labels`, made to depend on the range check (so no loss reads them first).
    """
    for role, model in networks.items():
        check_inputs_fit(inputs, model, role)
    if labels is not None and assert_labels and labels_rank_is_sparse(labels) and \
            (num_classes or 0) > 1:
        flat = tf.squeeze(labels, axis=-1) if len(labels.shape) == 2 else labels
        with tf.control_dependencies(assert_labels_in_range(flat, num_classes)):
            labels = tf.identity(labels)
    return labels


def check_cached_teacher_outputs(cached, needed):
    """Refuses cached teacher outputs that lack a tap the terms read.

    Args:
        cached: Dict tap -> tensor the batch carries.
        needed: Set of the taps the terms read on the batch (with `"logits"`).

    Raises:
        ValueError: naming the missing taps and the fix.
    """
    missing = set(needed) - set(cached)
    if missing:
        raise ValueError(
            f"The batch carries cached teacher outputs {sorted(cached)} but the terms "
            f"also read {sorted(missing)}. Cache those taps too "
            "(TeacherCache.compute(..., taps=...)) or train with the live teacher.")


def assert_labels_in_range(labels, num_classes):
    """In-graph check that integer labels are class indices in `[0, num_classes)`.

    Out-of-range labels otherwise give an obscure gather error, or silently a
    zero one-hot row (a wrong loss). Under XLA (`jit_compile=True`) assert
    ops are dropped by the compiler, so callers skip this check there.

    Args:
        labels: `(batch,)` labels, integer or float.
        num_classes: The number of classes `K` (the logits' width).

    Returns:
        The assertion ops (run automatically inside a `tf.function`).
    """
    if labels.dtype.is_integer:
        values = labels
    else:
        values = tf.cast(labels, tf.float32)
    message = (
        f"Labels must be class indices in [0, {num_classes}) (the networks predict "
        f"{num_classes} classes), but this batch holds labels outside that range. Remap the "
        f"labels to 0..{num_classes - 1}, or build the teacher and student with "
        "num_classes = (largest label + 1).")
    return [
        tf.debugging.assert_greater_equal(values, tf.zeros((), values.dtype), message=message),
        tf.debugging.assert_less(values, tf.cast(num_classes, values.dtype), message=message),
    ]


# ------------------------------------------------------------------------ fit
def check_not_empty(x, what="training data"):
    """Refuses data known to hold no example or batch before `fit` starts.

    Keras 3.15's `fit` on an empty `tf.data.Dataset` or empty arrays runs
    no step, only warns "Your input ran out of data", and returns as if it
    had trained. Datasets of unknown size (after `filter`) are checked by
    `RequireTrainingBatches` at the end of the first epoch instead.

    Raises:
        ValueError: the data is empty; the message says what to check.
    """
    empty = False
    if isinstance(x, tf.data.Dataset):
        empty = int(x.cardinality()) == 0
    elif isinstance(x, dict) and x:
        empty = any(hasattr(v, "shape") and len(v.shape) and v.shape[0] == 0
                    for v in x.values())
    elif hasattr(x, "shape") and len(getattr(x, "shape", ())) and x.shape[0] == 0:
        empty = True
    if empty:
        raise ValueError(_empty_message(what))


def _empty_message(what):
    return (f"The {what} is empty: it yields no batch, so nothing would be trained. Check the "
            "source (a filter that removes everything, a wrong split, limit=0, a batch size "
            "larger than the data with drop_remainder=True).")


class RequireTrainingBatches(keras.callbacks.Callback):
    """Raises at the end of an epoch in which no training batch ran.

    Placed first in the callback list, it raises before any other callback
    saves that (empty) epoch.
    """

    async_safe = True  # it only counts; Keras flushes batch callbacks before on_epoch_end

    def on_epoch_begin(self, epoch, logs=None):
        self._batches = 0

    def on_train_batch_end(self, batch, logs=None):
        self._batches += 1

    def on_epoch_end(self, epoch, logs=None):
        if getattr(self, "_batches", 1) == 0:
            raise ValueError(_empty_message("training data") +
                             f" (Epoch {epoch + 1} ran 0 training steps.)")


# ------------------------------------------------------------- method options
class TrackedOptions(dict):
    """A dict that records which keys were looked up.

    Hand it to `MethodContext(options=...)`; after the method is built,
    `unused()` lists the options it never read (usually a typo), e.g.
    `--method_options temprature=2`. Iterating the dict counts as reading
    every key.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.read = set()

    def __contains__(self, key):
        self.read.add(key)
        return super().__contains__(key)

    def __getitem__(self, key):
        self.read.add(key)
        return super().__getitem__(key)

    def get(self, key, default=None):
        self.read.add(key)
        return super().get(key, default)

    def __iter__(self):
        self.read.update(super().keys())
        return super().__iter__()

    def keys(self):
        self.read.update(super().keys())
        return super().keys()

    def items(self):
        self.read.update(super().keys())
        return super().items()

    def copy(self):
        self.read.update(super().keys())
        return dict(super().items())

    def unused(self):
        """Keys given but never read, sorted."""
        return sorted(k for k in super().keys() if k not in self.read)

    def asked(self):
        """Keys the reader asked for (given or not), sorted."""
        return sorted(self.read)


def labels_rank_is_sparse(y):
    """True for integer-style labels `(batch,)` or `(batch, 1)` (not one-hot)."""
    shape = getattr(y, "shape", None)
    if shape is None:
        return False
    return len(shape) == 1 or (len(shape) == 2 and shape[-1] == 1)


__all__ = [
    "OUTPUT_KINDS",
    "RequireTrainingBatches",
    "TrackedOptions",
    "assert_labels_in_range",
    "check_batch",
    "check_cached_teacher_outputs",
    "check_compatible",
    "check_inputs_fit",
    "check_not_empty",
    "check_output_kind",
    "check_step_inputs",
    "labels_rank_is_sparse",
    "output_activation",
    "probabilities_to_logits",
]
