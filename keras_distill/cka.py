"""Linear CKA: how similar two representations of the same batch are.

Linear centered kernel alignment (Kornblith et al., 2019) between two
representations `X` (n, p) and `Y` (n, q) of the same `n` examples, both
centred over the examples:

    CKA(X, Y) = ||Y^T X||_F^2 / (||X^T X||_F * ||Y^T Y||_F)

It lies in [0, 1], is 1 for `X == Y`, and is invariant to orthogonal
transforms and isotropic scaling of either side; `p` and `q` may differ.
Feature maps are flattened per example. The value is computed in the
example space, `<K, L> / (||K||_F ||L||_F)` with `K = X X^T` and
`L = Y Y^T` (the same number, since `||Y^T X||_F^2 = trace(X X^T Y Y^T)`),
so its cost is `n^2 (p + q)` and never builds a `p x p` matrix.

DPK (`keras_distill.losses.dpk`) uses it to measure the student/teacher gap.
"""

import tensorflow as tf
from keras import ops


def _as_matrix(x):
    x = ops.cast(x, "float32")
    return ops.reshape(x, (ops.shape(x)[0], -1))


def gather_replicas(x):
    """`x` from every replica, concatenated along the batch axis.

    Inside a `tf.distribute` replica context (e.g. a `MirroredStrategy`
    train step) this is the global batch, in replica order; elsewhere it is
    `x` itself.
    """
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return x
    return context.all_gather(x, axis=0)


def linear_cka(x, y, across_replicas=False, epsilon=1e-12):
    """Linear CKA between two representations of the same examples.

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
    x, y = _as_matrix(x), _as_matrix(y)
    if across_replicas:
        x, y = gather_replicas(x), gather_replicas(y)
    x = x - ops.mean(x, axis=0, keepdims=True)
    y = y - ops.mean(y, axis=0, keepdims=True)
    gram_x = ops.matmul(x, ops.transpose(x))
    gram_y = ops.matmul(y, ops.transpose(y))
    similarity = ops.sum(gram_x * gram_y)
    norms = ops.sqrt(ops.sum(ops.square(gram_x))) * ops.sqrt(ops.sum(ops.square(gram_y)))
    return similarity / ops.maximum(norms, epsilon)
