"""Makes Keras 3 `fit`/`evaluate` run under `MultiWorkerMirroredStrategy`.

Stock Keras 3.15.1 `Model.fit()` fails with 2 or more workers (measured on
127.0.0.1 with a plain `Sequential` model), in two places of
`keras/src/backend/tensorflow/trainer.py`:

1. `_maybe_symbolic_build` averages the first distributed batch across
   workers with `strategy.reduce("MEAN", (x, y, w), axis=None)` to get a
   batch to build the model from. `reduce` takes one tensor, not a
   structure: it fails with "Attempt to convert a value (PerReplica...) to a
   Tensor". A batch is only needed for its shapes and dtypes, so we build
   from this worker's local batch (its first replica's values) instead.
2. `reduce_per_replica` reduces every log of the step with
   `strategy.reduce("MEAN", value, axis=0)` in multi-worker mode; the logs
   are scalars, which have no axis 0. We reduce scalars with `axis=None`
   (the mean over replicas, which is what `axis=0` means for the rank-1
   values it expects).

`enable()` wraps those two Keras functions. The wrappers change nothing
unless the model's strategy is a `MultiWorkerMirroredStrategy` running with
more than one worker, where stock Keras fails anyway: every other strategy
goes straight to Keras's own code. Only two things install them:
`keras_distill.distribute.get_strategy("multi_worker")`, and a call to
`enable()` yourself (e.g. under a strategy you built by hand); building a
model (a `Distiller`, ...) never patches Keras. `enable()` is idempotent, and
`disable()` restores Keras. `tests/test_distribute.py` checks that stock
Keras still fails without them: when that test fails, Keras has fixed the
bug and this module can go.

Logged values are each worker's local metric values averaged over workers
(the per-step logs), and the epoch logs read the metrics' variables, which
`tf.distribute` sums over workers (global averages). Gradients are summed
across workers by the optimizer as with `MirroredStrategy`, so training
matches one process on the same global batches (tested in
`tests/test_distribute.py`).
"""

from __future__ import annotations

import functools

import tensorflow as tf

_ORIGINALS = {}


def is_multi_worker(strategy=None):
    """True when `strategy` (default: the current one) spans several workers."""
    strategy = strategy or tf.distribute.get_strategy()
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return False
    in_multi_worker_mode = getattr(strategy.extended, "_in_multi_worker_mode", None)
    return bool(in_multi_worker_mode()) if in_multi_worker_mode else True


def local_values(structure, strategy):
    """This worker's values of a (nested) distributed batch: its first local replica's."""
    def local(value):
        if isinstance(value, tf.distribute.DistributedValues):
            return strategy.experimental_local_results(value)[0]
        return value

    return tf.nest.map_structure(local, structure)


def _trainer_module():
    from keras.src.backend.tensorflow import trainer

    return trainer


def enable():
    """Installs the two multi-worker fixes into Keras's TensorFlow trainer (idempotent).

    Returns:
        True when installed (now or earlier); False when this Keras version
        lacks the functions (then nothing is changed).
    """
    if _ORIGINALS:
        return True
    trainer = _trainer_module()
    trainer_class = getattr(trainer, "TensorFlowTrainer", None)
    build = getattr(trainer_class, "_maybe_symbolic_build", None)
    reduce = getattr(trainer, "reduce_per_replica", None)
    if build is None or reduce is None:
        return False

    @functools.wraps(build)
    def maybe_symbolic_build(self, iterator=None, data_batch=None):
        strategy = self._distribute_strategy
        if strategy is None or iterator is None or not is_multi_worker(strategy):
            return build(self, iterator=iterator, data_batch=data_batch)
        for _, _, batches in iterator:
            data_batch = local_values(next(batches), strategy)
            break
        return build(self, iterator=None, data_batch=data_batch)

    @functools.wraps(reduce)
    def reduce_per_replica(values, strategy, reduction):
        if not is_multi_worker(strategy) or reduction not in ("auto", "mean"):
            return reduce(values, strategy, reduction)

        def mean(value):
            local = strategy.experimental_local_results(value)[0] \
                if isinstance(value, tf.distribute.DistributedValues) else value
            if getattr(getattr(local, "shape", None), "rank", None) == 0:
                return strategy.reduce("MEAN", value, axis=None)
            return reduce(value, strategy, reduction)

        return tf.nest.map_structure(mean, values)

    _ORIGINALS["build"] = build
    _ORIGINALS["reduce"] = reduce
    trainer_class._maybe_symbolic_build = maybe_symbolic_build
    trainer.reduce_per_replica = reduce_per_replica
    return True


def disable():
    """Restores Keras's own functions."""
    if not _ORIGINALS:
        return
    trainer = _trainer_module()
    trainer.TensorFlowTrainer._maybe_symbolic_build = _ORIGINALS.pop("build")
    trainer.reduce_per_replica = _ORIGINALS.pop("reduce")


def is_enabled():
    return bool(_ORIGINALS)
