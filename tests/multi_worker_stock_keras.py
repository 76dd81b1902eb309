"""One worker of the stock-Keras multi-worker probe (tests/test_distribute.py).

Run by the test as a subprocess with `TF_CONFIG` set:

    TF_CONFIG='{"cluster": {"worker": ["127.0.0.1:P0", "127.0.0.1:P1"]},
                "task": {"type": "worker", "index": I}}' \
        python tests/multi_worker_stock_keras.py OUTPUT.json

It builds a `MultiWorkerMirroredStrategy` by hand (so `keras_distill.multi_worker`
is NOT enabled), fits a plain `Sequential` model with stock Keras `fit()` for
two global batches, and writes what happened to OUTPUT.json:
`{"shim_enabled": bool, "outcome": "trained" | "failed", "error": type, "message": str}`.
Keras 3.15.1 fails in `_maybe_symbolic_build` ("Attempt to convert a value
(PerReplica...) to a Tensor"), and would next fail reducing the scalar logs with
`axis=0`: the bug `keras_distill.multi_worker` works around.
"""

import json
import sys

import keras
import numpy as np
import tensorflow as tf

from keras_distill import multi_worker

GLOBAL_BATCH = 8


def fit_plain_model(strategy):
    """Stock Keras: a Dense model, MSE, SGD, 2 global batches of 8."""
    rng = np.random.default_rng(0)
    x = rng.random((2 * GLOBAL_BATCH, 4)).astype("float32")
    y = rng.random((2 * GLOBAL_BATCH, 1)).astype("float32")
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = \
        tf.data.experimental.AutoShardPolicy.DATA
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(GLOBAL_BATCH).with_options(options)
    with strategy.scope():
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
        model.compile(optimizer="sgd", loss="mse")
    model.fit(data, epochs=1, verbose=0)


def main(output):
    strategy = tf.distribute.MultiWorkerMirroredStrategy(
        communication_options=tf.distribute.experimental.CommunicationOptions(
            implementation=tf.distribute.experimental.CommunicationImplementation.RING))
    result = {"shim_enabled": multi_worker.is_enabled(),
              "replicas": strategy.num_replicas_in_sync}
    try:
        fit_plain_model(strategy)
        result["outcome"] = "trained"
    except Exception as error:  # noqa: BLE001  (any failure is the finding)
        result.update(outcome="failed", error=type(error).__name__, message=str(error)[:2000])
    with open(output, "w") as file:
        json.dump(result, file)


if __name__ == "__main__":
    main(sys.argv[1])
