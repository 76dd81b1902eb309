"""PKT: Passalis & Tefas ECCV 2018, probabilistic knowledge transfer."""

import keras
from keras import ops

from keras_distill.losses import _batch
from keras_distill.losses.base import DistillationLoss
from keras_distill.ops import flatten_examples, gram_matrix

_EPS = 1e-7


def conditional_probabilities(features):
    """`P[i, j] = K(i, j) / sum_j K(i, j)`, `K = (cos + 1) / 2`, `(b, b)`.

    Features are divided by `||f|| + 1e-7` (a zero vector stays 0), as in
    the authors' code.
    """
    norm = ops.sqrt(ops.maximum(ops.sum(ops.square(features), axis=1, keepdims=True), 1e-24))
    unit = features / (norm + _EPS)
    kernel = (gram_matrix(unit) + 1.0) / 2.0
    return kernel / ops.sum(kernel, axis=1, keepdims=True)


@keras.saving.register_keras_serializable(package="keras_distill")
class PKT(DistillationLoss):
    """Probabilistic knowledge transfer: match conditional distributions of the batch.

    The cosine-similarity kernel of the batch, mapped to `[0, 1]` and
    normalised per row, defines conditional probabilities
    `p_{j|i} = K(i, j) / sum_j K(i, j)`, `K(i, j) = (cos(f_i, f_j) + 1) / 2`,
    for the teacher (`p^t`) and the student (`p^s`). The loss is their KL
    divergence, averaged over all `b^2` entries as in the authors' code:

        L = (1 / b^2) sum_{i,j} p^t_{j|i} log((p^t_{j|i} + eps) / (p^s_{j|i} + eps))

    with `eps = 1e-7`. It is 0 when the student's features equal the
    teacher's (or any positive rescaling of them); dimensions may differ.

    It is a batch-level loss: under a distribution strategy the features of
    all replicas are gathered first, so the value is the global batch's on
    any number of replicas; every example carries that value (the Keras mean
    is the batch loss; a sample weight scales it by the mean weight).

    Args:
        teacher_tap: Teacher feature tap (default `"embedding"`).
        student_tap: Student feature tap (default `"embedding"`).
        **kwargs: `DistillationLoss` arguments (`name`, `input_view`, ...).

    Returns:
        Called as a Keras loss, the batch loss.

    Example:

    ```python
    distiller = keras_distill.Distiller(
        teacher, student, distillation_losses=[PKT()],
        distillation_loss_weights=[30000.0], student_loss_weight=1.0)
    ```

    Reference:
        Passalis, Tefas. "Learning Deep Representations with Probabilistic
        Knowledge Transfer". ECCV 2018. Code: passalis/probabilistic_kt, as
        copied in HobbitLong/RepDistiller `distiller_zoo/PKT.py` (weight 30000).
    """

    def __init__(self, teacher_tap="embedding", student_tap="embedding", name="pkt", **kwargs):
        super().__init__(name=name, **kwargs)
        self.teacher_tap = teacher_tap
        self.student_tap = student_tap

    @property
    def teacher_taps(self):
        return (self.teacher_tap,)

    @property
    def student_taps(self):
        return (self.student_tap,)

    def compute(self, teacher, student, labels, side_inputs, training=False):
        local = student[self.student_tap]
        t, s = _batch.gather_batch(flatten_examples(teacher[self.teacher_tap]),
                                   flatten_examples(local))
        p_t = conditional_probabilities(ops.stop_gradient(t))
        p_s = conditional_probabilities(s)
        loss = ops.mean(p_t * ops.log((p_t + _EPS) / (p_s + _EPS)))
        return _batch.broadcast_batch_loss(loss, local)

    def get_config(self):
        return {**super().get_config(), "teacher_tap": self.teacher_tap,
                "student_tap": self.student_tap}
