"""CRD's training-only parts: embedding heads and memory-bank updates.

The heads are learned layers (trained with the student, never exported).
The memory banks themselves are non-trainable state variables that the
`CRD` term creates with `add_state_variable`; the functions here
initialise and update them.
"""

import math

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from keras_distill.ops import l2_normalize


@keras.saving.register_keras_serializable(package="keras_distill")
class EmbeddingHead(keras.layers.Layer):
    """Flatten, linear projection to `feature_dim`, L2 normalisation (CRD's `Embed`).

    Args:
        feature_dim: Output width (128 in CRD).
        **kwargs: `keras.layers.Layer` arguments.

    Example:

    ```python
    head = EmbeddingHead(128)
    z = head(features)  # (batch, 128), unit rows
    ```

    Reference:
        Tian, Krishnan, Isola. "Contrastive Representation Distillation".
        ICLR 2020 (HobbitLong/RepDistiller `crd/criterion.py`, `Embed`).
    """

    def __init__(self, feature_dim=128, **kwargs):
        super().__init__(**kwargs)
        if int(feature_dim) < 1:
            raise ValueError(f"EmbeddingHead feature_dim must be >= 1, got {feature_dim!r}.")
        self.feature_dim = int(feature_dim)
        self.dense = keras.layers.Dense(self.feature_dim, name="linear",
                                        dtype=self.dtype_policy)

    def build(self, input_shape):
        dims = [d for d in tuple(input_shape)[1:]]
        if any(d is None for d in dims):
            raise ValueError(
                f"EmbeddingHead {self.name!r} needs a fully known feature shape, got "
                f"{tuple(input_shape)}.")
        self.dense.build((None, int(np.prod(dims))))
        self.built = True

    def call(self, inputs):
        flat = ops.reshape(inputs, (ops.shape(inputs)[0], -1))
        return l2_normalize(self.dense(ops.cast(flat, self.compute_dtype)))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.feature_dim)

    def get_config(self):
        return {**super().get_config(), "feature_dim": self.feature_dim}


def memory_bank_initializer(seed=None):
    """Uniform in `[-s, s]`, `s = 1 / sqrt(dim / 3)` (rows of about unit norm), as CRD.

    Args:
        seed: Integer seed, or None.

    Returns:
        A callable `(shape, dtype) -> tensor` for `add_state_variable`.
    """
    def initialize(shape, dtype="float32"):
        limit = 1.0 / math.sqrt(shape[-1] / 3.0)
        return keras.random.uniform(shape, -limit, limit, dtype=dtype, seed=seed)
    return initialize


def momentum_update(bank, indices, embeddings, momentum):
    """`bank[i] = normalize(m * bank[i] + (1 - m) * v)` for the given rows only.

    A sparse scatter: rows not in `indices` are untouched. Under a
    distribution strategy give the bank `aggregation="none"` and pass the
    indices and embeddings gathered from every replica, so each replica
    applies the same global update to its own copy. Duplicate indices in one
    call keep one of the updates (unspecified which).

    Args:
        bank: A `keras.Variable` of shape `(num_examples, dim)`.
        indices: Integer row indices `(n,)`.
        embeddings: `(n, dim)` new values (no gradient flows).
        momentum: `m` in `[0, 1)`.

    Returns:
        The scatter-update op's result (the updated variable).
    """
    indices = ops.cast(ops.reshape(indices, (-1,)), "int32")
    embeddings = ops.cast(ops.stop_gradient(embeddings), bank.dtype)
    old = ops.take(bank.value, indices, axis=0)
    new = l2_normalize(momentum * old + (1.0 - momentum) * embeddings)
    return bank.value.scatter_update(tf.IndexedSlices(new, indices))
