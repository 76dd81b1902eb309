"""CC: Peng et al. ICCV 2019, correlation congruence."""

import math

import keras
from keras import ops

from keras_distill.adapters.crd import EmbeddingHead
from keras_distill.losses import _batch
from keras_distill.losses.base import DistillationLoss
from keras_distill.ops import cosine_similarity_matrix, flatten_examples


def taylor_rbf_correlation(features, gamma, order):
    """Correlation matrix `(b, b)` with a Taylor-expanded Gaussian RBF kernel.

    On L2-normalised features `||f_i - f_j||^2 = 2 - 2 f_i.f_j`, so
    `exp(-gamma ||f_i - f_j||^2) = exp(-2 gamma) exp(2 gamma f_i.f_j)
    ~= exp(-2 gamma) sum_{p=0}^{order} (2 gamma f_i.f_j)^p / p!`.
    """
    cosine = cosine_similarity_matrix(features)
    correlation = ops.zeros_like(cosine)
    for p in range(order + 1):
        coefficient = math.exp(-2.0 * gamma) * (2.0 * gamma) ** p / math.factorial(p)
        correlation = correlation + coefficient * cosine ** p
    return correlation


@keras.saving.register_keras_serializable(package="keras_distill")
class CC(DistillationLoss):
    """Correlation congruence: match the batch's kernel correlation matrices.

    With `k(x, y) = exp(-gamma ||x - y||^2)` on L2-normalised embeddings,
    approximated by its Taylor series of order `P`
    (`k ~= e^{-2 gamma} sum_{p<=P} (2 gamma x.y)^p / p!`), and
    `C[i, j] = k(f_i, f_j)` over the batch:

        L = ||C_s - C_t||_F^2 / b^2          (the mean over the b^2 entries)

    This is the correlation-congruence term of the paper; the instance
    term is KD, which the recipe can add (`kd_weight`). It is 0 when the
    student's embeddings equal the teacher's (up to a positive scale).
    Optionally the student's embedding first goes through a learned linear
    head (`embed_dim`), a training-only adapter; the teacher's never does
    (a trainable teacher-side head could simply move the teacher's
    correlations to the student's).

    It is a batch-level loss: under a distribution strategy the features of
    all replicas are gathered first, so the value is the global batch's on
    any number of replicas; every example carries that value (the Keras mean
    is the batch loss; a sample weight scales it by the mean weight).

    Args:
        teacher_tap: Teacher feature tap (default `"embedding"`).
        student_tap: Student feature tap (default `"embedding"`).
        gamma: RBF kernel parameter (0.4).
        order: Taylor expansion order `P` (2).
        embed_dim: If set, width of a learned linear head on the student
            embedding (RepDistiller uses 128); None (default) uses the
            embedding itself.
        **kwargs: `DistillationLoss` arguments (`name`, `input_view`, ...).

    Returns:
        Called as a Keras loss, the batch loss.

    Example:

    ```python
    distiller = keras_distill.Distiller(
        teacher, student, distillation_losses=[CC(gamma=0.4, order=2)],
        distillation_loss_weights=[100.0], student_loss_weight=1.0)
    ```

    Reference:
        Peng et al. "Correlation Congruence for Knowledge Distillation".
        ICCV 2019. Kernel, `gamma = 0.4`, `P = 2` and weight 100 as in
        AberHu/Knowledge-Distillation-Zoo `kd_losses/cc.py`.
    """

    def __init__(self, teacher_tap="embedding", student_tap="embedding", gamma=0.4, order=2,
                 embed_dim=None, name="cc", **kwargs):
        super().__init__(name=name, **kwargs)
        if not gamma > 0:
            raise ValueError(f"CC gamma must be > 0, got {gamma!r} (reference: 0.4).")
        if int(order) != order or order < 0:
            raise ValueError(
                f"CC order must be an integer >= 0 (Taylor order P), got {order!r} "
                "(reference: 2).")
        if embed_dim is not None and int(embed_dim) < 1:
            raise ValueError(f"CC embed_dim must be a positive integer or None, got {embed_dim!r}.")
        self.teacher_tap = teacher_tap
        self.student_tap = student_tap
        self.gamma = float(gamma)
        self.order = int(order)
        self.embed_dim = None if embed_dim is None else int(embed_dim)
        self.student_head = None

    @property
    def teacher_taps(self):
        return (self.teacher_tap,)

    @property
    def student_taps(self):
        return (self.student_tap,)

    def build(self, teacher_shapes, student_shapes):
        if self.embed_dim is not None:
            shape = student_shapes.get(self.student_tap)
            if shape is None:
                raise ValueError(
                    f"CC {self.name!r} with embed_dim needs the shape of student tap "
                    f"{self.student_tap!r}: use a Functional or Sequential student.")
            self.student_head = self.add_adapter(
                EmbeddingHead(self.embed_dim, name=f"{self.name}_student_head", dtype="float32"))
            self.student_head.build(tuple(shape))
        self.built = True

    def compute(self, teacher, student, labels, side_inputs, training=False):
        local = student[self.student_tap]
        s = flatten_examples(local)
        if self.student_head is not None:
            s = self.student_head(s)
        t, s = _batch.gather_batch(flatten_examples(teacher[self.teacher_tap]), s)
        c_t = taylor_rbf_correlation(ops.stop_gradient(t), self.gamma, self.order)
        c_s = taylor_rbf_correlation(s, self.gamma, self.order)
        return _batch.broadcast_batch_loss(ops.mean(ops.square(c_s - c_t)), local)

    def get_config(self):
        return {**super().get_config(), "teacher_tap": self.teacher_tap,
                "student_tap": self.student_tap, "gamma": self.gamma, "order": self.order,
                "embed_dim": self.embed_dim}
