"""Accepts `keras.distillation` loss objects, computed correctly.

Keras 3.13+ ships `keras.distillation.LogitsDistillation` and
`FeatureDistillation`. Their default logits loss applies `kl_divergence`
to temperature-scaled values without the `T^2` factor (measured: 3.22
where Hinton's KD is 0.752 on a test input). `from_keras` turns those
objects into this package's terms:

* `LogitsDistillation(temperature=T, loss="kl_divergence")` becomes
  `KD(temperature=T)`: log-softmax KL with `T^2` (Hinton's definition).
* `LogitsDistillation` with another loss applies that loss to the two
  softened distributions `softmax(z/T)`, times `T^2`.
* `FeatureDistillation(loss, teacher_layer_name, student_layer_name)`
  becomes a feature term on those taps, the loss averaged over features,
  read from the single student forward pass.
"""

import keras
from keras import ops

from keras_distill.losses.base import DistillationLoss
from keras_distill.losses.kd import KD


class _KerasLogits(DistillationLoss):
    def __init__(self, loss, temperature, name="logits_distillation", **kwargs):
        super().__init__(name=name, **kwargs)
        self.loss_fn = loss
        self.temperature = float(temperature)

    def compute(self, teacher, student, labels, side_inputs, training=False):
        t = self.temperature
        p = ops.softmax(teacher["logits"] / t, axis=-1)
        q = ops.softmax(student["logits"] / t, axis=-1)
        return self.loss_fn(p, q) * t * t


class _KerasFeatures(DistillationLoss):
    def __init__(self, loss, teacher_layer_name, student_layer_name,
                 name="feature_distillation", **kwargs):
        super().__init__(name=name, **kwargs)
        self.loss_fn = loss
        self.teacher_tap = teacher_layer_name or "logits"
        self.student_tap = student_layer_name or "logits"

    @property
    def teacher_taps(self):
        return (self.teacher_tap,)

    @property
    def student_taps(self):
        return (self.student_tap,)

    def build(self, teacher_shapes, student_shapes):
        self.require_matching_shapes(teacher_shapes, student_shapes, self.teacher_tap,
                                     self.student_tap)
        super().build(teacher_shapes, student_shapes)

    def compute(self, teacher, student, labels, side_inputs, training=False):
        value = self.loss_fn(teacher[self.teacher_tap], student[self.student_tap])
        while len(value.shape) > 1:
            value = ops.mean(value, axis=-1)
        return value


def _per_example(loss):
    """A per-example function from a loss name, function or Keras Loss."""
    if isinstance(loss, str):
        loss = keras.losses.get(loss)
    function = getattr(loss, "fn", None)  # keras.losses.LossFunctionWrapper
    if function is not None:
        kwargs = getattr(loss, "_fn_kwargs", {})
        return lambda a, b: function(a, b, **kwargs)
    if isinstance(loss, keras.losses.Loss):
        return loss.call
    return loss


def from_keras(loss):
    """Converts a `keras.distillation` loss object into a `DistillationLoss`.

    Args:
        loss: A `keras.distillation.LogitsDistillation` or
            `keras.distillation.FeatureDistillation`.

    Returns:
        The equivalent `DistillationLoss`.

    Raises:
        TypeError: for anything else, naming what is accepted.
    """
    distillation = getattr(keras, "distillation", None)
    logits_cls = getattr(distillation, "LogitsDistillation", ())
    features_cls = getattr(distillation, "FeatureDistillation", ())
    if logits_cls and isinstance(loss, logits_cls):
        single = loss.loss
        if isinstance(single, (list, tuple, dict)):
            raise TypeError("Multi-output LogitsDistillation is not supported; "
                            "use one keras_distill term per output.")
        if isinstance(single, keras.losses.KLDivergence) or single is keras.losses.kl_divergence \
                or single in ("kl_divergence", "kld", "KLDivergence"):
            return KD(temperature=loss.temperature)
        return _KerasLogits(_per_example(single), loss.temperature)
    if features_cls and isinstance(loss, features_cls):
        single = loss.loss
        if isinstance(single, (list, tuple, dict)):
            raise TypeError("Multi-output FeatureDistillation is not supported; "
                            "use one keras_distill term per tap.")
        return _KerasFeatures(_per_example(single), loss.teacher_layer_name,
                              loss.student_layer_name)
    raise TypeError(
        f"Cannot use {type(loss).__name__} as a distillation term. Pass a "
        "keras_distill.losses.DistillationLoss (e.g. keras_distill.losses.KD()), or a "
        "keras.distillation.LogitsDistillation / FeatureDistillation.")
