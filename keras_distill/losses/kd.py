"""KD: Hinton et al. 2015, the soft-target term."""

import keras

from keras_distill.losses.base import DistillationLoss
from keras_distill.ops import log_softmax_kl


@keras.saving.register_keras_serializable(package="keras_distill")
class KD(DistillationLoss):
    """Knowledge distillation with softened logits (Hinton et al., 2015).

    Per example:

        L = T^2 * KL(p || q) = T^2 * sum_k p_k (log p_k - log q_k),
        p = softmax(z_t / T),  q = softmax(z_s / T).

    KL is computed from `log_softmax` on both sides (stable at any T); the
    `T^2` factor keeps the gradient scale independent of `T`. The
    hard-label term `CE(y, softmax(z_s))` is the Distiller's supervised
    loss, weighted separately (`student_loss_weight`, default recipe 0.1
    against 0.9 for this term).

    Args:
        temperature: Softening temperature `T` (default 4.0).
        **kwargs: `DistillationLoss` arguments (`name`, `input_view`, ...).

    Returns:
        Called as a Keras loss, the mean over the batch.

    Example:

    ```python
    distiller = keras_distill.Distiller(
        teacher=teacher, student=student,
        distillation_losses=[keras_distill.losses.KD(temperature=4.0)],
        distillation_loss_weights=[0.9], student_loss_weight=0.1)
    ```

    Reference:
        Hinton, Vinyals, Dean. "Distilling the Knowledge in a Neural
        Network". NIPS Deep Learning Workshop, 2015. arXiv:1503.02531.
    """

    def __init__(self, temperature=4.0, name="kd", **kwargs):
        super().__init__(name=name, **kwargs)
        if not temperature > 0:
            raise ValueError(
                f"KD temperature must be > 0, got {temperature!r}. Typical "
                "values are 1 to 8 (4 on CIFAR-style recipes).")
        self.temperature = float(temperature)

    def compute(self, teacher, student, labels, side_inputs, training=False):
        return log_softmax_kl(teacher["logits"], student["logits"], self.temperature)

    def get_config(self):
        return {**super().get_config(), "temperature": self.temperature}
