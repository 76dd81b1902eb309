"""The maths distillation methods share, as pure `keras.ops` functions.

Every function here is stateless and knows nothing of taps, configs or
trainers: a loss in `keras_distill.losses` reads its inputs, calls these,
and returns a per-example value. Each has a hand-derived golden test in
`tests/test_ops.py`.

* Softened KL: `log_softmax_kl` (KD, DML, TangKD), `kl_from_target`
  (an explicit target distribution: TangKD, ClassMask), and
  `kl_from_log_probabilities` underneath both (DKD's parts).
* Feature maps: `pool_factors` and `average_pool` bring two maps onto the
  smaller one's spatial size (AT, FSP, VID); `attention_map` (AT);
  `mean_per_example` (FitNet, VID).
* Batch relations: `flatten_examples`, `l2_normalize` (SP, CRD's heads),
  `pairwise_distances` (RKD), `cosine_similarity_matrix` (CC),
  `gram_matrix` (SP, PKT), `linear_cka` (DPK).
"""

from __future__ import annotations

import tensorflow as tf
from keras import ops


# ------------------------------------------------------------- softened KL
def kl_from_log_probabilities(log_p, log_q):
    """`KL(p || q) = sum_k p_k (log p_k - log q_k)` from log-probabilities.

    Args:
        log_p: `(batch, classes)` log-probabilities of the target `p`.
        log_q: `(batch, classes)` log-probabilities of `q`.

    Returns:
        `(batch,)` tensor.

    Example:

    ```python
    log_p = keras.ops.log_softmax(teacher_logits, axis=-1)
    log_q = keras.ops.log_softmax(student_logits, axis=-1)
    kl_from_log_probabilities(log_p, log_q)
    ```
    """
    return ops.sum(ops.exp(log_p) * (log_p - log_q), axis=-1)


def log_softmax_kl(teacher_logits, student_logits, temperature):
    """`T^2 * KL(softmax(z_t / T) || softmax(z_s / T))` per example.

    Computed from log-probabilities on both sides (stable at any `T`),
    summed over classes; the `T^2` factor keeps the gradient scale of
    Hinton et al.'s soft-target term independent of `T`.

    Args:
        teacher_logits: `(batch, classes)`.
        student_logits: `(batch, classes)`.
        temperature: Softening temperature `T` (float or scalar tensor).

    Returns:
        `(batch,)` tensor.

    Example:

    ```python
    log_softmax_kl(teacher_logits, student_logits, 4.0)  # KD's term
    ```

    Reference:
        Hinton, Vinyals, Dean. "Distilling the Knowledge in a Neural
        Network". 2015. arXiv:1503.02531.
    """
    log_p = ops.log_softmax(teacher_logits / temperature, axis=-1)
    log_q = ops.log_softmax(student_logits / temperature, axis=-1)
    return kl_from_log_probabilities(log_p, log_q) * (temperature ** 2)


def kl_from_target(target_probabilities, student_logits, temperature):
    """`T^2 * KL(target || softmax(z_s / T))` for an explicit target distribution.

    Zero-probability target entries contribute 0 (the `0 log 0 = 0` limit),
    so a one-hot target at `T = 1` gives the cross-entropy `-log q_y`.

    Args:
        target_probabilities: `(batch, classes)`, rows summing to 1.
        student_logits: `(batch, classes)`.
        temperature: Softening temperature `T`.

    Returns:
        `(batch,)` tensor.

    Example:

    ```python
    kl_from_target(keras.ops.one_hot(labels, 10), student_logits, 1.0)  # CE
    ```
    """
    log_q = ops.log_softmax(student_logits / temperature, axis=-1)
    safe = ops.where(target_probabilities > 0, target_probabilities, 1.0)
    entropy_terms = ops.where(
        target_probabilities > 0, target_probabilities * ops.log(safe), 0.0)
    kl = ops.sum(entropy_terms - target_probabilities * log_q, axis=-1)
    return kl * (temperature ** 2)


# -------------------------------------------------------------- feature maps
def pool_factors(shape_a, shape_b, what):
    """Integer average-pooling factors that bring two maps to the smaller size.

    The references (RepDistiller, mdistiller) `adaptive_avg_pool2d` the larger
    map onto the smaller one; with integer ratios this is plain average
    pooling. Works on static shapes, once, when a term is built.

    Args:
        shape_a: `(batch, H, W, C)` shape of one map.
        shape_b: `(batch, H, W, C)` shape of the other.
        what: Description of the pair, for the error message.

    Returns:
        `((fh_a, fw_a), (fh_b, fw_b))`, `(1, 1)` for the smaller map.

    Raises:
        ValueError: When a ratio is not an integer or the maps are not 4-D.

    Example:

    ```python
    pool_factors((None, 8, 8, 16), (None, 4, 4, 32), "pair")  # ((2, 2), (1, 1))
    ```
    """
    if len(shape_a) != 4 or len(shape_b) != 4:
        raise ValueError(
            f"{what}: expected 4-D feature maps (batch, H, W, C), got shapes "
            f"{tuple(shape_a)} and {tuple(shape_b)}. Tap convolutional stages.")
    factors_a, factors_b = [], []
    for size_a, size_b in zip(shape_a[1:3], shape_b[1:3]):
        if size_a is None or size_b is None:
            if size_a is not None or size_b is not None:
                raise ValueError(
                    f"{what}: spatial sizes {tuple(shape_a[1:3])} and {tuple(shape_b[1:3])} "
                    "are partly unknown; give the models a fixed input size.")
            factors_a.append(1)  # both unknown: assumed equal (same input, same strides)
            factors_b.append(1)
            continue
        big, small = max(size_a, size_b), min(size_a, size_b)
        if big % small:
            raise ValueError(
                f"{what}: spatial sizes {tuple(shape_a[1:3])} and {tuple(shape_b[1:3])} are "
                "not integer multiples of each other, so the larger map cannot be "
                "average-pooled onto the smaller. Tap stages of equal (or 2x, 4x, ...) size.")
        factors_a.append(size_a // small)
        factors_b.append(size_b // small)
    return tuple(factors_a), tuple(factors_b)


def average_pool(feature, factors):
    """Average-pools `(batch, H, W, C)` by integer `(fh, fw)`; identity for `(1, 1)`.

    Args:
        feature: `(batch, H, W, C)` map.
        factors: `(fh, fw)`, e.g. from `pool_factors`.

    Returns:
        `(batch, H / fh, W / fw, C)` map.
    """
    if tuple(factors) == (1, 1):
        return feature
    return ops.average_pool(feature, pool_size=factors, strides=factors, padding="valid")


def attention_map(feature, p=2.0):
    """Spatial attention `v / ||v||_2`, `v = vec(mean_c |F|^p)`: `(batch, H * W)`.

    Zagoruyko & Komodakis's attention map (as their code: the mean over
    channels, then `torch.nn.functional.normalize`, i.e. division by
    `max(||v||, 1e-12)`).

    Args:
        feature: `(batch, H, W, C)` map.
        p: Power (the paper's 2).

    Returns:
        `(batch, H * W)` tensor with unit L2 rows (zero rows stay zero).

    Reference:
        Zagoruyko, Komodakis. "Paying More Attention to Attention". ICLR
        2017. arXiv:1612.03928.
    """
    attention = ops.mean(ops.power(ops.abs(feature), p), axis=-1)
    attention = ops.reshape(attention, (ops.shape(attention)[0], -1))
    norm = ops.sqrt(ops.sum(ops.square(attention), axis=-1, keepdims=True))
    return attention / ops.maximum(norm, 1e-12)


def mean_per_example(values):
    """The mean of each example's entries: `(batch, ...)` -> `(batch,)`.

    Args:
        values: Tensor with the batch on axis 0.

    Returns:
        `(batch,)` tensor.
    """
    return ops.mean(ops.reshape(values, (ops.shape(values)[0], -1)), axis=-1)


# ----------------------------------------------------------- batch relations
def flatten_examples(features):
    """`(batch, ...)` -> `(batch, prod(...))` in float32.

    Args:
        features: Tensor with the batch on axis 0.

    Returns:
        `(batch, features)` float32 matrix.
    """
    features = ops.cast(features, "float32")
    return ops.reshape(features, (ops.shape(features)[0], -1))


def pairwise_distances(features, epsilon=1e-12):
    """Euclidean distances between the rows, `(b, b)`.

    Computed as `sqrt(max(|x_i|^2 + |x_j|^2 - 2 x_i.x_j, epsilon))` with the
    diagonal set to exactly 0 (RKD's reference code).

    Args:
        features: `(b, d)` matrix.
        epsilon: Floor of the squared distance (keeps the gradient finite).

    Returns:
        `(b, b)` symmetric matrix, zero diagonal.
    """
    squared = ops.sum(ops.square(features), axis=1)
    distances = squared[:, None] + squared[None, :] - 2.0 * ops.matmul(
        features, ops.transpose(features))
    distances = ops.sqrt(ops.maximum(distances, epsilon))
    return distances * (1.0 - ops.eye(ops.shape(features)[0], dtype=distances.dtype))


def gram_matrix(features):
    """`F F^T`: the `(b, b)` inner products of the rows of `(b, d)` features."""
    return ops.matmul(features, ops.transpose(features))


def l2_normalize(x, axis=-1):
    """`x / ||x||_2` along `axis`; a zero vector stays 0 (no NaN, no NaN gradient).

    Computed as `x * rsqrt(max(sum(x^2), 1e-24))`.

    Args:
        x: Tensor.
        axis: Axis of the vectors.

    Returns:
        Tensor of the shape of `x`.
    """
    squared = ops.sum(ops.square(x), axis=axis, keepdims=True)
    return x * ops.rsqrt(ops.maximum(squared, 1e-24))


def cosine_similarity_matrix(features):
    """`cos(f_i, f_j)` for every pair of rows, `(b, b)`.

    Rows are divided by `sqrt(max(|f|^2, 1e-24))` (a zero row stays 0).

    Args:
        features: `(b, d)` matrix.

    Returns:
        `(b, b)` symmetric matrix, ones on the diagonal for non-zero rows.
    """
    unit = l2_normalize(features, axis=1)
    return gram_matrix(unit)


def replica_context():
    """The `tf.distribute` replica context when there is more than one replica, else None."""
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return None
    return context


def gather_replicas(x):
    """`x` from every replica, concatenated along the batch axis.

    Inside a `tf.distribute` replica context (e.g. a `MirroredStrategy`
    train step) this is the global batch, in replica order; elsewhere it is
    `x` itself.

    Args:
        x: Tensor with the local batch on axis 0.

    Returns:
        The gathered tensor.
    """
    context = replica_context()
    if context is None:
        return x
    return context.all_gather(x, axis=0)


def linear_cka(x, y, across_replicas=False, epsilon=1e-12):
    """Linear CKA between two representations of the same examples.

    Linear centred kernel alignment (Kornblith et al., 2019) between `X`
    `(n, p)` and `Y` `(n, q)`, both centred over the examples:

        CKA(X, Y) = ||Y^T X||_F^2 / (||X^T X||_F * ||Y^T Y||_F)

    It lies in [0, 1], is 1 for `X == Y`, and is invariant to orthogonal
    transforms and isotropic scaling of either side; `p` and `q` may differ.
    The value is computed in the example space, `<K, L> / (||K||_F ||L||_F)`
    with `K = X X^T`, `L = Y Y^T` (the same number, since
    `||Y^T X||_F^2 = trace(X X^T Y Y^T)`), so it costs `n^2 (p + q)` and
    never builds a `p x p` matrix.

    Args:
        x: `(batch, ...)` tensor; trailing dimensions are flattened.
        y: `(batch, ...)` tensor with the same batch; its width may differ.
        across_replicas: If True, gather both from every replica first, so
            the value is the global batch's on any number of replicas.
        epsilon: Guards the division when a side is constant over the batch
            (the value is then 0).

    Returns:
        A float32 scalar in [0, 1].

    Example:

    ```python
    x = keras.random.normal((64, 8, 8, 16))
    linear_cka(x, 2.0 * x)  # 1.0
    ```

    Reference:
        Kornblith, Norouzi, Lee, Hinton. "Similarity of Neural Network
        Representations Revisited". ICML 2019. arXiv:1905.00414.
    """
    x, y = flatten_examples(x), flatten_examples(y)
    if across_replicas:
        x, y = gather_replicas(x), gather_replicas(y)
    x = x - ops.mean(x, axis=0, keepdims=True)
    y = y - ops.mean(y, axis=0, keepdims=True)
    gram_x, gram_y = gram_matrix(x), gram_matrix(y)
    similarity = ops.sum(gram_x * gram_y)
    norms = ops.sqrt(ops.sum(ops.square(gram_x))) * ops.sqrt(ops.sum(ops.square(gram_y)))
    return similarity / ops.maximum(norms, epsilon)
