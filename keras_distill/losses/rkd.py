"""RKD: Park et al. CVPR 2019, relational knowledge distillation."""

import keras
from keras import ops

from keras_distill.losses import _batch
from keras_distill.losses.base import DistillationLoss
from keras_distill.ops import flatten_examples, pairwise_distances

_EPS = 1e-12


def smooth_l1(difference):
    """Huber / smooth-L1 with threshold 1: `0.5 x^2` if `|x| < 1` else `|x| - 0.5`."""
    absolute = ops.abs(difference)
    return ops.where(absolute < 1.0, 0.5 * ops.square(difference), absolute - 0.5)


def normalized_distances(features):
    """Pairwise distances divided by the mean of the positive ones."""
    distances = pairwise_distances(features, _EPS)
    positive = ops.cast(distances > 0, distances.dtype)
    mean = ops.sum(distances * positive) / ops.maximum(ops.sum(positive), 1.0)
    return distances / ops.maximum(mean, _EPS)


def triplet_angles(features):
    """`A[i, j, k] = cos` of the angle at vertex `i` between `j` and `k`.

    `e_ij = (x_j - x_i) / ||x_j - x_i||` (0 when `j == i`); `A = <e_ij, e_ik>`.
    """
    differences = features[None, :, :] - features[:, None, :]
    squared_norm = ops.sum(ops.square(differences), axis=-1, keepdims=True)
    units = differences * ops.rsqrt(ops.maximum(squared_norm, _EPS * _EPS))
    return ops.matmul(units, ops.transpose(units, (0, 2, 1)))


@keras.saving.register_keras_serializable(package="keras_distill")
class RKD(DistillationLoss):
    """Relational knowledge distillation: distance and angle relations of the batch.

    On the (flattened) features `t_i`, `s_i` of the batch:

        L_D = mean_{i,j} smooth_l1(d(s_i, s_j) / mu_s - d(t_i, t_j) / mu_t),
        L_A = mean_{i,j,k} smooth_l1(<e^s_ij, e^s_ik> - <e^t_ij, e^t_ik>),
        L   = distance_weight * L_D + angle_weight * L_A,

    `d` the Euclidean distance, `mu` the mean of the non-zero distances,
    `e_ij = (x_j - x_i) / ||x_j - x_i||`. Means run over all `b^2` (`b^3`)
    entries, as in the reference implementation. The loss is invariant to a
    rescaling of either network's features and is 0 when the student's
    features are a scaled copy of the teacher's.

    It is a batch-level loss: under a distribution strategy the features of
    all replicas are gathered first, so the value is the global batch's on
    any number of replicas; every example carries that value (the Keras mean
    is the batch loss; a sample weight scales it by the mean weight).

    Args:
        teacher_tap: Teacher feature tap (default `"embedding"`, the pooled
            pre-logit vector, as in the reference).
        student_tap: Student feature tap (default `"embedding"`). Dimensions
            may differ from the teacher's.
        distance_weight: Weight of the distance term (25).
        angle_weight: Weight of the angle term (50).
        **kwargs: `DistillationLoss` arguments (`name`, `input_view`, ...).

    Returns:
        Called as a Keras loss, the batch loss.

    Example:

    ```python
    distiller = keras_distill.Distiller(
        teacher, student, distillation_losses=[RKD()],
        distillation_loss_weights=[1.0], student_loss_weight=1.0)
    ```

    Reference:
        Park, Kim, Lu, Cho. "Relational Knowledge Distillation". CVPR 2019.
        Defaults from HobbitLong/RepDistiller `distiller_zoo/RKD.py`.
    """

    def __init__(self, teacher_tap="embedding", student_tap="embedding",
                 distance_weight=25.0, angle_weight=50.0, name="rkd", **kwargs):
        super().__init__(name=name, **kwargs)
        if distance_weight < 0 or angle_weight < 0 or distance_weight + angle_weight == 0:
            raise ValueError(
                f"RKD needs distance_weight >= 0 and angle_weight >= 0, not both 0; got "
                f"distance_weight={distance_weight!r}, angle_weight={angle_weight!r} "
                "(reference: 25 and 50).")
        self.teacher_tap = teacher_tap
        self.student_tap = student_tap
        self.distance_weight = float(distance_weight)
        self.angle_weight = float(angle_weight)

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
        t = ops.stop_gradient(t)
        loss = 0.0
        if self.distance_weight:
            loss += self.distance_weight * ops.mean(
                smooth_l1(normalized_distances(s) - normalized_distances(t)))
        if self.angle_weight:
            loss += self.angle_weight * ops.mean(
                smooth_l1(triplet_angles(s) - triplet_angles(t)))
        return _batch.broadcast_batch_loss(loss, local)

    def get_config(self):
        return {**super().get_config(), "teacher_tap": self.teacher_tap,
                "student_tap": self.student_tap,
                "distance_weight": self.distance_weight, "angle_weight": self.angle_weight}
