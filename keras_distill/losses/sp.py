"""SP: Tung & Mori ICCV 2019, similarity-preserving knowledge distillation."""

import keras
from keras import ops

from keras_distill.losses import _batch
from keras_distill.losses.base import DistillationLoss
from keras_distill.ops import flatten_examples, gram_matrix, l2_normalize


def similarity_matrix(features):
    """`normalize_rows(F F^T)` of the flattened `(b, ...)` features, `(b, b)`."""
    gram = gram_matrix(features)
    return l2_normalize(gram, axis=1)


@keras.saving.register_keras_serializable(package="keras_distill")
class SP(DistillationLoss):
    """Similarity-preserving distillation: match the batch's similarity matrices.

    With `F_t`, `F_s` the batch's feature maps flattened to `(b, chw)`:

        G = normalize_rows(F F^T)         (each row divided by its L2 norm)
        L = ||G_s - G_t||_F^2 / b^2

    Teacher and student maps may have any (different) shapes: only the
    `b x b` matrices are compared. The loss is 0 when the student's features
    equal the teacher's (or any rescaling of them).

    It is a batch-level loss: under a distribution strategy the features of
    all replicas are gathered first, so the value is the global batch's on
    any number of replicas; every example carries that value (the Keras mean
    is the batch loss; a sample weight scales it by the mean weight).

    Args:
        teacher_tap: Teacher feature tap (the recipe uses the last stage,
            as the reference does).
        student_tap: Student feature tap.
        **kwargs: `DistillationLoss` arguments (`name`, `input_view`, ...).

    Returns:
        Called as a Keras loss, the batch loss.

    Example:

    ```python
    sp = SP(teacher_tap="stage3", student_tap="stage3")
    distiller = keras_distill.Distiller(
        teacher, student, distillation_losses=[sp],
        distillation_loss_weights=[3000.0], student_loss_weight=1.0)
    ```

    Reference:
        Tung, Mori. "Similarity-Preserving Knowledge Distillation". ICCV 2019.
        Weight 3000 from HobbitLong/RepDistiller (`distiller_zoo/SP.py`,
        `scripts/run_cifar_distill.sh`).
    """

    def __init__(self, teacher_tap="stage3", student_tap="stage3", name="sp", **kwargs):
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
        g_t = similarity_matrix(ops.stop_gradient(t))
        g_s = similarity_matrix(s)
        batch = ops.cast(ops.shape(s)[0], "float32")
        loss = ops.sum(ops.square(g_s - g_t)) / (batch * batch)
        return _batch.broadcast_batch_loss(loss, local)

    def get_config(self):
        return {**super().get_config(), "teacher_tap": self.teacher_tap,
                "student_tap": self.student_tap}
