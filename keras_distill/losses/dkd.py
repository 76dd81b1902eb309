"""DKD: Decoupled Knowledge Distillation (Zhao et al., CVPR 2022)."""

import keras
from keras import ops

from keras_distill.losses.base import DistillationLoss
from keras_distill.ops import kl_from_log_probabilities

# Subtracted from the target logit (after dividing by T) to remove it from
# the non-target distribution, as the reference (mdistiller) does.
_MASK_OFFSET = 1000.0


def _binary_logs(scaled_logits, gt_mask):
    """`log [p_target, 1 - p_target]` of `softmax(scaled_logits)`, stably."""
    log_all = ops.logsumexp(scaled_logits, axis=-1)
    log_target = ops.sum(scaled_logits * gt_mask, axis=-1) - log_all
    log_rest = ops.logsumexp(scaled_logits - _MASK_OFFSET * gt_mask, axis=-1) - log_all
    return ops.stack([log_target, log_rest], axis=-1)


def tckd(teacher_logits, student_logits, labels, temperature):
    """Target-class KD: `T^2 KL(b_t || b_s)` with `b = [p_target, 1 - p_target]`.

    Args:
        teacher_logits: `(batch, classes)`.
        student_logits: `(batch, classes)`.
        labels: Integer labels `(batch,)`.
        temperature: Softening temperature `T`.

    Returns:
        `(batch,)` tensor.
    """
    gt_mask = ops.one_hot(ops.cast(labels, "int32"), ops.shape(student_logits)[-1])
    log_b_t = _binary_logs(teacher_logits / temperature, gt_mask)
    log_b_s = _binary_logs(student_logits / temperature, gt_mask)
    return kl_from_log_probabilities(log_b_t, log_b_s) * temperature ** 2


def nckd(teacher_logits, student_logits, labels, temperature):
    """Non-target-class KD: `T^2 KL(p_hat_t || p_hat_s)` over the non-target classes.

    `p_hat = softmax(z / T - 1000 * onehot(y))`: the target class is masked out
    with a large negative logit, as in the reference.

    Args and Returns: as `tckd`.
    """
    gt_mask = ops.one_hot(ops.cast(labels, "int32"), ops.shape(student_logits)[-1])
    log_p = ops.log_softmax(teacher_logits / temperature - _MASK_OFFSET * gt_mask, axis=-1)
    log_q = ops.log_softmax(student_logits / temperature - _MASK_OFFSET * gt_mask, axis=-1)
    return kl_from_log_probabilities(log_p, log_q) * temperature ** 2


@keras.saving.register_keras_serializable(package="keras_distill")
class DKD(DistillationLoss):
    """Decoupled knowledge distillation (Zhao et al., 2022).

    KD's KL splits into a binary target-vs-rest part and a distribution over
    the non-target classes (the paper's Eq. 1):

        KD = TCKD + (1 - p^t_y) * NCKD,   p^t_y = softmax(z_t / T)_y,

    and DKD weights the two parts independently, per example:

        L = alpha * TCKD + beta * NCKD,
        TCKD = T^2 KL([p^t_y, 1 - p^t_y] || [p^s_y, 1 - p^s_y]),
        NCKD = T^2 KL(softmax(z_t / T)_{k != y} || softmax(z_s / T)_{k != y}),

    all at temperature `T`. The hard-label CE is the Distiller's supervised
    loss (weight 1 in the reference); the reference warms the DKD term up
    linearly over 20 epochs (see the `dkd` recipe, which uses
    `keras_distill.schedules.LinearWarmup` as the term's weight).
    `tckd` and `nckd` in this module compute the two parts separately; in a
    Distiller the last step's batch means are logged as `dkd_tckd` and
    `dkd_nckd` (through `extra_metrics`).

    Args:
        alpha: Weight of TCKD (default 1.0).
        beta: Weight of NCKD (default 8.0; the reference uses 2.0 for
            resnet56->resnet20 and resnet110->resnet32, 6.0 for vgg13->vgg8
            and wrn_40_2->wrn_16_2).
        temperature: Softening temperature `T` (default 4.0).
        **kwargs: `DistillationLoss` arguments (`name`, `input_view`, ...).

    Returns:
        Called as a Keras loss, the mean over the batch of `L`.

    Example:

    ```python
    steps = 20 * steps_per_epoch
    distiller = keras_distill.Distiller(
        teacher, student, [DKD(alpha=1.0, beta=8.0, temperature=4.0)],
        distillation_loss_weights=[keras_distill.schedules.LinearWarmup(1.0, steps)],
        student_loss_weight=1.0)
    ```

    Reference:
        Zhao, Cui, Song, Qiu, Liang. "Decoupled Knowledge Distillation".
        CVPR 2022. arXiv:2203.08679. Code: megvii-research/mdistiller.
    """

    requires_labels = True

    def __init__(self, alpha=1.0, beta=8.0, temperature=4.0, name="dkd", **kwargs):
        super().__init__(name=name, **kwargs)
        if not temperature > 0:
            raise ValueError(
                f"DKD temperature must be > 0, got {temperature!r}. The reference uses 4.0.")
        for label, value in (("alpha", alpha), ("beta", beta)):
            if not value >= 0:
                raise ValueError(
                    f"DKD {label} must be >= 0, got {value!r}. The reference uses "
                    "alpha=1.0 and beta=8.0 (2.0 to 8.0 depending on the pair).")
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.temperature = float(temperature)
        self.parts = {}

    def build(self, teacher_shapes, student_shapes):
        classes = (student_shapes.get("logits") or (None, None))[-1]
        if classes is not None and classes < 2:
            raise ValueError(
                f"DKD needs at least 2 classes (a target and a non-target), got {classes}.")
        self.parts = {key: self.add_state_variable(key, 0.0) for key in ("tckd", "nckd")}
        self.built = True

    def extra_metrics(self):
        """The last step's batch means of TCKD and NCKD (unweighted), logged as
        `<name>_tckd` and `<name>_nckd`."""
        return dict(self.parts)

    def compute(self, teacher, student, labels, side_inputs, training=False):
        z_t, z_s = teacher["logits"], student["logits"]
        target_part = tckd(z_t, z_s, labels, self.temperature)
        non_target_part = nckd(z_t, z_s, labels, self.temperature)
        if self.parts:  # built by a Distiller: record the parts for logging
            self.parts["tckd"].assign(ops.mean(target_part))
            self.parts["nckd"].assign(ops.mean(non_target_part))
        return self.alpha * target_part + self.beta * non_target_part

    def get_config(self):
        return {**super().get_config(), "alpha": self.alpha, "beta": self.beta,
                "temperature": self.temperature}
