"""DML: Zhang et al. 2018, Deep Mutual Learning (the mimicry term of a cohort)."""

import keras

from keras_distill.losses.base import DistillationLoss
from keras_distill.ops import log_softmax_kl


@keras.saving.register_keras_serializable(package="keras_distill")
class DML(DistillationLoss):
    """The mimicry term of Deep Mutual Learning, for one (peer -> member) pair.

    In a `keras_distill.Cohort` of N students trained together, member `i`
    minimises

        L_i = CE(y, softmax(z_i))
              + w * 1/(N-1) * sum_{j != i} T^2 * KL(p_j || p_i),
        p_j = softmax(stop_gradient(z_j) / T),  p_i = softmax(z_i / T).

    This term computes one `T^2 * KL(p_j || p_i)`: the Cohort calls it with
    `teacher` = the peer `j`'s outputs (under stop-gradient) and `student` =
    member `i`'s, and averages over the peers. There is no fixed teacher.
    The paper uses `T = 1` (then `T^2 = 1` and this is its plain KL); other
    temperatures keep KD's `T^2` gradient scaling.

    Args:
        temperature: Softening temperature `T` (default 1.0, the paper's).
        **kwargs: `DistillationLoss` arguments (`name`, ...).

    Returns:
        Called as a Keras loss, the mean over the batch of the per-example
        `T^2 * KL(p_peer || p_member)`.

    Example:

    ```python
    peer = keras.models.clone_model(student)
    cohort = keras_distill.Cohort([student, peer],
                                  distillation_losses=[DML(temperature=1.0)])
    cohort.compile(optimizer="sgd",
                   loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    cohort.fit(train_ds, epochs=3)
    ```

    Reference:
        Zhang, Xiang, Hospedales, Lu. "Deep Mutual Learning". CVPR 2018.
        arXiv:1706.00384.
    """

    def __init__(self, temperature=1.0, name="dml", **kwargs):
        super().__init__(name=name, **kwargs)
        if not temperature > 0:
            raise ValueError(
                f"DML temperature must be > 0, got {temperature!r}. The paper uses 1.")
        self.temperature = float(temperature)

    def compute(self, teacher, student, labels, side_inputs, training=False):
        return log_softmax_kl(teacher["logits"], student["logits"], self.temperature)

    def get_config(self):
        return {**super().get_config(), "temperature": self.temperature}
