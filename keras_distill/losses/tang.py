"""Tang et al. 2020: KD split into label smoothing, re-weighting and class prior."""

import math

import keras
from keras import ops

from keras_distill.losses.base import DistillationLoss
from keras_distill.ops import kl_from_target, log_softmax_kl

MODES = ("full", "label_smoothing", "partial", "top_k", "reweight")


def default_top_k(num_classes):
    """`ceil(K / 20)`: 5 for 100 classes (the default of methods.md), 1 for 10."""
    return max(1, math.ceil(num_classes / 20))


@keras.saving.register_keras_serializable(package="keras_distill")
class TangKD(DistillationLoss):
    """KD with a transformed teacher target (Tang et al., 2020).

    The paper reads KD's teacher distribution as three kinds of knowledge:
    (1) label smoothing, (2) per-example re-weighting by the teacher's
    confidence on the true class `p_y`, (3) a class-relationship prior (the
    shape of the non-target mass). Each mode keeps some of them. With
    `p = softmax(z_t / T)`, `y` the label, `K` classes, the target `t` is:

    * `full`: `t = p` (plain KD; all three).
    * `label_smoothing`: `t = (1 - eps) * one_hot(y) + eps / K` (1 only).
    * `partial` (KD-pt): `t_y = p_y`, `t_k = (1 - p_y) / (K - 1)` for
      `k != y` (1 and 2, no class prior).
    * `top_k`: keep `p_y` and the `k` largest non-target `p_k`; the rest
      `1 - p_y - sum(kept)` is spread uniformly over the other `K - 1 - k`
      classes (the paper's suggested improvement).

    and the per-example loss is `T^2 * KL(t || softmax(z_s / T))`.
    `reweight` (2 only) is instead the hard-label cross-entropy weighted by
    the teacher's confidence: `L = p_y(z_t / T_w) * CE(y, softmax(z_s))`.
    The plain `CE` term is the Distiller's supervised loss.

    Args:
        mode: One of `MODES` (default `"full"`).
        temperature: `T` of the target modes (default 4.0).
        epsilon: Label-smoothing `eps` (default 0.1, the usual choice of
            Szegedy et al.; the value is not fixed by Tang et al.).
        top_k: Kept non-target classes of `top_k`; default `None` means
            `ceil(K / 20)` (5 for 100 classes, 1 for 10). Clipped to `K - 1`.
        weight_temperature: `T_w` of the teacher confidence in `reweight`
            (default 1.0: the teacher's own `p_y`).
        **kwargs: `DistillationLoss` arguments (`name`, `input_view`, ...).

    Returns:
        Called as a Keras loss, the mean over the batch.

    Example:

    ```python
    term = TangKD(mode="top_k", temperature=4.0)
    distiller = Distiller(teacher, student, [term], [0.9], student_loss_weight=0.1)
    ```

    Reference:
        Tang, Shivanna, Zhao, Lin, Singh, Chi, Jain. "Understanding and
        Improving Knowledge Distillation". arXiv:2002.03532, 2020.
    """

    def __init__(self, mode="full", temperature=4.0, epsilon=0.1, top_k=None,
                 weight_temperature=1.0, name=None, **kwargs):
        if mode not in MODES:
            raise ValueError(f"TangKD mode must be one of {MODES}, got {mode!r}.")
        if not temperature > 0 or not weight_temperature > 0:
            raise ValueError(f"TangKD temperatures must be > 0, got temperature={temperature!r}, "
                             f"weight_temperature={weight_temperature!r}.")
        if not 0.0 <= epsilon < 1.0:
            raise ValueError(f"TangKD epsilon must be in [0, 1), got {epsilon!r}.")
        if top_k is not None and (int(top_k) != top_k or top_k < 0):
            raise ValueError(f"TangKD top_k must be an integer >= 0 or None, got {top_k!r}.")
        super().__init__(name=name or f"tang_{mode}", **kwargs)
        self.mode = mode
        self.temperature = float(temperature)
        self.epsilon = float(epsilon)
        self.top_k = None if top_k is None else int(top_k)
        self.weight_temperature = float(weight_temperature)

    @property
    def requires_labels(self):
        """Every mode but `full` reads the label."""
        return self.mode != "full"

    def target(self, teacher_logits, labels=None):
        """The transformed teacher distribution `t`, `(batch, K)` rows summing to 1."""
        p = ops.softmax(ops.cast(teacher_logits, "float32") / self.temperature, axis=-1)
        if self.mode == "full":
            return p
        num_classes = int(teacher_logits.shape[-1])
        one_hot = ops.one_hot(labels, num_classes)
        if self.mode == "label_smoothing":
            return (1.0 - self.epsilon) * one_hot + self.epsilon / num_classes
        p_y = ops.sum(p * one_hot, axis=-1, keepdims=True)
        if self.mode == "partial":
            return one_hot * p_y + (1.0 - one_hot) * (1.0 - p_y) / max(num_classes - 1, 1)
        k = min(self.top_k if self.top_k is not None else default_top_k(num_classes),
                num_classes - 1)
        if k == num_classes - 1:
            return p
        keep = one_hot
        if k > 0:
            _, indices = ops.top_k(ops.where(one_hot > 0, -1.0, p), k)
            keep = keep + ops.sum(ops.one_hot(indices, num_classes), axis=1)
        rest = 1.0 - ops.sum(p * keep, axis=-1, keepdims=True)
        return keep * p + (1.0 - keep) * rest / (num_classes - 1 - k)

    def compute(self, teacher, student, labels, side_inputs, training=False):
        teacher_logits = ops.stop_gradient(teacher["logits"])
        if self.mode == "reweight":
            one_hot = ops.one_hot(labels, int(teacher_logits.shape[-1]))
            p_y = ops.sum(ops.softmax(teacher_logits / self.weight_temperature) * one_hot, -1)
            cross_entropy = -ops.sum(ops.log_softmax(student["logits"]) * one_hot, axis=-1)
            return ops.stop_gradient(p_y) * cross_entropy
        if self.mode == "full":  # exactly KD's computation
            return log_softmax_kl(teacher_logits, student["logits"], self.temperature)
        target = ops.stop_gradient(self.target(teacher_logits, labels))
        return kl_from_target(target, student["logits"], self.temperature)

    def get_config(self):
        return {**super().get_config(), "mode": self.mode, "temperature": self.temperature,
                "epsilon": self.epsilon, "top_k": self.top_k,
                "weight_temperature": self.weight_temperature}
