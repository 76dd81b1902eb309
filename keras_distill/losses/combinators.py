"""Small pieces that wrap any distillation term.

`ClassMask` removes (or changes) the distillation signal for chosen
classes, the mechanism TLLM needs; it works on any per-example term.
"""

import keras
from keras import ops

from keras_distill.losses.base import DistillationLoss
from keras_distill.ops import kl_from_target

_MASK_MODES = ("drop", "renormalize", "one_hot", "hard_label")
_LARGE_LOGIT = 1e4


@keras.saving.register_keras_serializable(package="keras_distill")
class ClassMask(DistillationLoss):
    """Masks a distillation term per class.

    The mask is a variable `m` of shape `(num_classes,)` with 1 for a masked
    (e.g. undistillable) class. A callback assigns it during training
    (`keras_distill.callbacks.UndistillableClasses`), or the user sets it.

    Modes:

    * `"drop"`: `L_i = (1 - m[y_i]) * inner_i` — samples whose label is masked
      get no distillation signal (the hard-label loss still applies).
    * `"renormalize"`: additionally to `"drop"`, masked classes are removed
      from every sample's teacher distribution (their teacher logits are
      pushed to -1e4, i.e. the teacher softmax is renormalised over the
      others). Needs a term that reads teacher logits.
    * `"one_hot"`: samples whose label is masked distil towards the
      one-hot label instead of the teacher's distribution (their teacher
      logits are replaced by `1e4 * one_hot(y)`).
    * `"hard_label"`: samples whose label is masked get the hard-label
      cross-entropy `CE(y, softmax(z_s))` in place of the term:
      `L_i = (1 - m[y_i]) * inner_i + m[y_i] * CE_i`. With the term's weight
      `w` and the supervised weight `w_ce`, a masked sample then carries the
      hard-label loss only, at its full weight `w_ce + w` (with `"drop"` it
      keeps only `w_ce`, e.g. 0.1 of KD's usual balance).

    The needs (taps, side inputs) are the wrapped term's, plus the labels
    (and, in mode `"hard_label"`, the student's logits). The training flag
    is forwarded to the wrapped term's `compute`.

    Args:
        term: The wrapped `DistillationLoss`.
        num_classes: Number of classes `K`.
        mode: One of `"drop"`, `"renormalize"`, `"one_hot"`, `"hard_label"`.
        initial_mask: Optional initial mask (list of 0/1 of length K, or a
            list of class indices to mask).
        name: Defaults to the inner term's name, so logs keep their names.
        input_view: Accepted for configs saved by earlier versions, and
            ignored: the mask is computed on the wrapped term's view.
        **kwargs: `DistillationLoss` arguments (`reduction`, `dtype`).

    Example:

    ```python
    masked_kd = ClassMask(KD(temperature=4.0), num_classes=10)
    # later, from a callback: masked_kd.class_mask.assign(new_mask)
    ```

    Reference:
        Zhu et al. "Teach Less, Learn More: On the Undistillable Classes in
        Knowledge Distillation". NeurIPS 2022.
    """

    requires_labels = True

    def __init__(self, term, num_classes, mode="drop", initial_mask=None,
                 name=None, input_view=None, **kwargs):
        if isinstance(term, dict):
            term = keras.saving.deserialize_keras_object(term)
        if mode not in _MASK_MODES:
            raise ValueError(
                f"ClassMask mode must be one of {_MASK_MODES}, got {mode!r}.")
        super().__init__(input_view=term.input_view, name=name or term.name, **kwargs)
        self.term = term
        self.num_classes = int(num_classes)
        self.mode = mode
        self.initial_mask = self._as_mask_list(initial_mask)
        self.class_mask = None

    def _as_mask_list(self, initial_mask):
        if initial_mask is None:
            return [0.0] * self.num_classes
        values = list(initial_mask)
        if len(values) == self.num_classes and set(values) <= {0, 1, 0.0, 1.0, True, False}:
            return [float(v) for v in values]
        mask = [0.0] * self.num_classes
        for index in values:
            if not 0 <= int(index) < self.num_classes:
                raise ValueError(
                    f"ClassMask initial_mask names class {index}, outside "
                    f"[0, {self.num_classes}).")
            mask[int(index)] = 1.0
        return mask

    @property
    def teacher_taps(self):
        return tuple(self.term.teacher_taps)

    @property
    def student_taps(self):
        taps = tuple(self.term.student_taps)
        if self.mode == "hard_label" and "logits" not in taps:
            taps += ("logits",)
        return taps

    @property
    def side_inputs(self):
        return tuple(self.term.side_inputs)

    @property
    def adapters(self):
        return self.term.adapters

    @adapters.setter
    def adapters(self, value):
        pass  # owned by the inner term

    def build(self, teacher_shapes, student_shapes):
        if not self.term.built:
            self.term.build(teacher_shapes, student_shapes)
        self.state_variables.update(
            {f"{self.term.name}/{k}": v for k, v in self.term.state_variables.items()})
        self.class_mask = self.add_state_variable(
            "class_mask", ops.convert_to_tensor(self.initial_mask),
            shape=(self.num_classes,))
        self.built = True

    def extra_metrics(self):
        return self.term.extra_metrics()

    def compute(self, teacher, student, labels, side_inputs, training=False):
        mask = ops.cast(self.class_mask, "float32")
        sample_masked = ops.take(mask, labels)  # (batch,) 1 where label masked
        if self.mode == "renormalize":
            teacher = dict(teacher)
            teacher["logits"] = teacher["logits"] - _LARGE_LOGIT * mask[None, :]
        elif self.mode == "one_hot":
            teacher = dict(teacher)
            one_hot = ops.one_hot(labels, self.num_classes) * _LARGE_LOGIT
            teacher["logits"] = ops.where(
                sample_masked[:, None] > 0, one_hot, teacher["logits"])
        inner_labels = labels if self.term.requires_labels else None
        values = self.term.compute_per_example(teacher, student, inner_labels, side_inputs,
                                               training=training)
        if self.mode in ("drop", "renormalize", "hard_label"):
            values = values * (1.0 - sample_masked)
        if self.mode == "hard_label":  # KL(one_hot(y) || softmax(z_s)) is CE(y, softmax(z_s))
            cross_entropy = kl_from_target(ops.one_hot(labels, self.num_classes),
                                           ops.cast(student["logits"], "float32"), 1.0)
            values = values + sample_masked * cross_entropy
        return values

    def get_config(self):
        config = super().get_config()
        config.update({
            "term": keras.saving.serialize_keras_object(self.term),
            "num_classes": self.num_classes,
            "mode": self.mode,
            "initial_mask": self.initial_mask,
        })
        return config
