"""Batch-level (relational) losses under a distribution strategy.

Relational terms (RKD, SP, PKT, CC) compare samples *with each other*, so
their value is one number per batch, not one per example. Two things follow:

1. The `DistillationLoss` contract wants a `(batch,)` vector, so that
   Keras's reduction and its `1 / num_replicas` scaling apply. A relational
   term returns its batch loss broadcast to every example
   (`broadcast_batch_loss`): the Keras mean (`sum_over_batch_size`) of that
   vector is the batch loss. A per-example sample weight then scales the
   batch loss by the mean weight; it cannot re-weight single pairs.
2. Under `MirroredStrategy` each replica sees only its local slice of the
   global batch, and a relation computed over a slice is not the relation
   over the batch. `gather_batch` concatenates the features of every
   replica (in replica order) before the relation is computed, so 1 and N
   replicas compute the same value on the same global batch.

Why the gradients are right: every replica computes the same global loss
`L`; Keras scales it by `1 / R`. The gradient of `all_gather` sums the
upstream gradients of all replicas and keeps the local rows, so replica `r`
receives `R * (1 / R) * dL/dX_r = dL/dX_r` for its own features, and the
optimizer's cross-replica sum gives `sum_r dL/dX_r dX_r/dtheta = dL/dtheta`,
the single-replica gradient.
"""

import tensorflow as tf
from keras import ops

from keras_distill.ops import replica_context


def gather_batch(*tensors):
    """Concatenates each tensor along axis 0 over all replicas (replica order).

    Identity with a single replica. Local batches may differ in size.
    Differentiable: each replica gets the gradient of its own rows.

    Note: on CPUs `MirroredStrategy` runs this as collective ops whose keys
    restart with every new strategy object, so a second `MirroredStrategy`
    in the same process that also runs collectives fails with "Shape
    mismatch in the collective instance" (the same holds for synchronized
    BatchNormalization). Create one strategy per process and reuse it.

    Args:
        *tensors: Tensors with the batch on axis 0.

    Returns:
        A tuple of the gathered tensors (one element if one tensor given).
    """
    context = replica_context()
    if context is None:
        return tuple(tensors)
    return tuple(context.all_gather(tensors, axis=0))


def replica_sum(value):
    """Sums a (non-differentiated) tensor over replicas; identity with one."""
    context = replica_context()
    value = tf.stop_gradient(value)
    if context is None:
        return value
    return context.all_reduce(tf.distribute.ReduceOp.SUM, value)


def broadcast_batch_loss(batch_loss, like):
    """A `(batch,)` vector whose mean is `batch_loss`.

    Args:
        batch_loss: Scalar loss of the (global) batch.
        like: Any local tensor with the local batch on axis 0.

    Returns:
        `(local_batch,)` tensor, every entry `batch_loss`.
    """
    return ops.broadcast_to(ops.reshape(batch_loss, ()), (ops.shape(like)[0],))
