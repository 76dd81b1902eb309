"""CRD: Tian et al. ICLR 2020, contrastive representation distillation."""

import keras
import tensorflow as tf
from keras import ops

from keras_distill.adapters import crd as crd_adapters
from keras_distill.losses import _batch
from keras_distill.losses.base import DistillationLoss

_EPS = 1e-7


def nce_loss(positive, negatives, num_examples):
    """CRD's NCE loss per anchor (RepDistiller `ContrastLoss`, Eq. 18).

    With `P` the normalised scores, `K` negatives and noise `Pn = 1 / N`:
    `-log(P_pos / (P_pos + K Pn + eps)) - sum_k log(K Pn / (P_k + K Pn + eps))`.

    Args:
        positive: `(b,)` normalised positive scores.
        negatives: `(b, K)` normalised negative scores.
        num_examples: `N`, the memory-bank size.

    Returns:
        `(b,)` loss.
    """
    noise = ops.cast(ops.shape(negatives)[-1], "float32") / float(num_examples)
    log_d1 = ops.log(positive / (positive + noise + _EPS))
    log_d0 = ops.log(noise / (negatives + noise + _EPS))
    return -(log_d1 + ops.sum(log_d0, axis=-1))


@keras.saving.register_keras_serializable(package="keras_distill")
class CRD(DistillationLoss):
    """Contrastive representation distillation with memory banks and NCE.

    Heads `g_s`, `g_t` (linear + L2 normalise, `feature_dim` wide) embed
    the student's and teacher's features: `v_s = g_s(s)`, `v_t = g_t(t)`.
    Two banks hold an embedding per training example: `M_t` (teacher side)
    and `M_s` (student side). With `i` the example's index (side input
    `"index"`), `K` negative rows drawn uniformly from `[0, N)` (one draw per
    step, shared by the batch), `tau` the temperature:

        P(v, m) = exp(v . m / tau) / Z
        L_s = NCE(P(v_s, M_t[i]), P(v_s, M_t[negatives]))
        L_t = NCE(P(v_t, M_s[i]), P(v_t, M_s[negatives]))
        L   = L_s + L_t            (per example)

    where `NCE(p, n) = -log(p / (p + K/N)) - sum_k log((K/N) / (n_k + K/N))`.
    `Z` (one per side) is set on the first training batch to
    `N * mean(exp(v . m / tau))` and then kept. After the loss, the rows of
    the batch are updated: `M_s[i] = normalize(m M_s[i] + (1 - m) v_s)`, and
    the same for `M_t` (momentum `m`). Only the heads and the student are
    trained; the teacher's features get no gradient. Evaluation computes the
    loss without touching banks or `Z`; the Distiller skips the term on
    validation batches that carry no `"index"`.

    Under a distribution strategy the banks and `Z` use `aggregation="none"`
    and every replica applies the same update from the indices and
    embeddings gathered from all replicas, so 1 and N replicas agree.

    Differences from the reference: the reference draws `K` negatives per
    example from other classes (its "exact" mode data loader); here one set
    is drawn uniformly per step (the reference memory's own sampler, minus
    the per-example draw, which would cost `b x K x feature_dim` memory).
    The index arrives as float32 through `keras.losses.Loss` and is cast
    back, exact up to 2^24 examples.

    Args:
        num_examples: `N`, the training-set size (bank rows).
        feature_dim: Embedding width (128).
        num_negatives: `K` (16384).
        temperature: `tau` (0.07).
        momentum: Bank momentum `m` (0.5).
        teacher_tap: Teacher feature tap (default `"embedding"`).
        student_tap: Student feature tap (default `"embedding"`).
        index_key: Side-input key of the example index (`"index"`).
        seed: Seed of the bank initialisation and the negative sampler.
        **kwargs: `DistillationLoss` arguments (`name`, ...).

    Returns:
        Called as a Keras loss, the mean of `L` over the batch.

    Example:

    ```python
    crd = CRD(num_examples=len(x_train))
    ds = tf.data.Dataset.from_tensor_slices(
        ({"inputs": x_train, "index": np.arange(len(x_train))}, y_train))
    distiller = keras_distill.Distiller(
        teacher, student, distillation_losses=[crd],
        distillation_loss_weights=[0.8], student_loss_weight=1.0)
    ```

    Reference:
        Tian, Krishnan, Isola. "Contrastive Representation Distillation".
        ICLR 2020. HobbitLong/RepDistiller `crd/criterion.py`, `crd/memory.py`.
    """

    def __init__(self, num_examples, feature_dim=128, num_negatives=16384, temperature=0.07,
                 momentum=0.5, teacher_tap="embedding", student_tap="embedding",
                 index_key="index", seed=None, name="crd", **kwargs):
        super().__init__(name=name, **kwargs)
        checks = [(int(num_examples) >= 1, "num_examples must be >= 1 (the training-set "
                   "size; the recipe takes it from MethodContext.num_train_examples)"),
                  (int(feature_dim) >= 1, "feature_dim must be >= 1 (reference: 128)"),
                  (int(num_negatives) >= 1, "num_negatives must be >= 1 (reference: 16384)"),
                  (temperature > 0, "temperature must be > 0 (reference: 0.07)"),
                  (0 <= momentum < 1, "momentum must be in [0, 1) (reference: 0.5)")]
        for ok, message in checks:
            if not ok:
                raise ValueError(
                    f"CRD {message}; got num_examples={num_examples!r}, feature_dim="
                    f"{feature_dim!r}, num_negatives={num_negatives!r}, temperature="
                    f"{temperature!r}, momentum={momentum!r}.")
        self.num_examples, self.feature_dim = int(num_examples), int(feature_dim)
        self.num_negatives, self.temperature = int(num_negatives), float(temperature)
        self.momentum, self.seed = float(momentum), seed
        self.teacher_tap, self.student_tap, self.index_key = teacher_tap, student_tap, index_key

    @property
    def teacher_taps(self):
        return (self.teacher_tap,)

    @property
    def student_taps(self):
        return (self.student_tap,)

    @property
    def side_inputs(self):
        return (self.index_key,)

    def build(self, teacher_shapes, student_shapes):
        heads = {}
        for role, shapes, tap in (("student", student_shapes, self.student_tap),
                                  ("teacher", teacher_shapes, self.teacher_tap)):
            if shapes.get(tap) is None:
                raise ValueError(
                    f"CRD {self.name!r} needs the shape of {role} tap {tap!r} to build its "
                    "embedding head: use a Functional or Sequential model.")
            heads[role] = self.add_adapter(crd_adapters.EmbeddingHead(
                self.feature_dim, name=f"{self.name}_{role}_head", dtype="float32"))
            heads[role].build(tuple(shapes[tap]))
        self.student_head, self.teacher_head = heads["student"], heads["teacher"]
        shape = (self.num_examples, self.feature_dim)
        seed = self.seed
        self.student_bank = self.add_state_variable(
            "student_bank", crd_adapters.memory_bank_initializer(seed), shape, aggregation="none")
        teacher_seed = None if seed is None else seed + 1
        self.teacher_bank = self.add_state_variable(
            "teacher_bank", crd_adapters.memory_bank_initializer(teacher_seed), shape,
            aggregation="none")
        # Z of the student-anchor scores (v_s . M_t) and of the teacher-anchor ones.
        self.student_anchor_z = self.add_state_variable("student_anchor_z", -1.0,
                                                        aggregation="none")
        self.teacher_anchor_z = self.add_state_variable("teacher_anchor_z", -1.0,
                                                        aggregation="none")
        self.seed_generator = keras.random.SeedGenerator(seed, name=f"{self.name}_sampler")
        self.state_variables["sampler_state"] = self.seed_generator.state
        self.built = True

    def _side(self, anchor, bank, normalizer, index, negatives, training):
        """Normalised NCE loss of `anchor` against `bank`; updates `Z` when training."""
        positive = ops.exp(ops.sum(anchor * ops.take(bank.value, index, axis=0), axis=-1)
                           / self.temperature)
        noise = ops.exp(ops.matmul(anchor, ops.transpose(ops.take(bank.value, negatives, axis=0)))
                        / self.temperature)
        count = ops.cast(ops.size(noise) + ops.size(positive), "float32")
        totals = _batch.replica_sum(ops.stack([ops.sum(noise) + ops.sum(positive), count]))
        estimate = totals[0] / ops.maximum(totals[1], 1.0) * self.num_examples
        z = ops.where(normalizer < 0, estimate, normalizer)
        if training:
            normalizer.assign(z)
        z = ops.stop_gradient(z)
        return nce_loss(positive / z, noise / z, self.num_examples)

    def compute(self, teacher, student, labels, side_inputs, training=False):
        index = ops.cast(ops.reshape(side_inputs[self.index_key], (-1,)), "int32")
        tf.debugging.assert_less(index, self.num_examples, message=(
            f"CRD {self.name!r}: side input {self.index_key!r} must be each example's "
            f"position in the training set, in [0, num_examples={self.num_examples})."))
        v_s = self.student_head(student[self.student_tap])
        v_t = self.teacher_head(ops.stop_gradient(teacher[self.teacher_tap]))
        negatives = keras.random.randint((self.num_negatives,), 0, self.num_examples,
                                         seed=self.seed_generator)
        loss = (self._side(v_s, self.teacher_bank, self.student_anchor_z, index, negatives,
                           training)
                + self._side(v_t, self.student_bank, self.teacher_anchor_z, index, negatives,
                             training))
        if training:
            all_index, all_s, all_t = _batch.gather_batch(
                index, ops.stop_gradient(v_s), ops.stop_gradient(v_t))
            crd_adapters.momentum_update(self.student_bank, all_index, all_s, self.momentum)
            crd_adapters.momentum_update(self.teacher_bank, all_index, all_t, self.momentum)
        return loss

    def get_config(self):
        return {**super().get_config(), "num_examples": self.num_examples,
                "feature_dim": self.feature_dim, "num_negatives": self.num_negatives,
                "temperature": self.temperature, "momentum": self.momentum,
                "teacher_tap": self.teacher_tap, "student_tap": self.student_tap,
                "index_key": self.index_key, "seed": self.seed}
