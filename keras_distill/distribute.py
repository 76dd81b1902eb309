"""A `tf.distribute` strategy from a name, built before any model."""

import json
import os

import tensorflow as tf

STRATEGIES = ("default", "mirrored", "multi_worker", "tpu")


def get_strategy(name="default", devices=None, tpu_address=None):
    """Returns a `tf.distribute.Strategy` for a name.

    Build it before any model or variable, and create the Distiller, its
    optimizer and metrics inside `strategy.scope()`.

    Args:
        name: `"default"` (one device), `"mirrored"` (all local GPUs, or the
            given `devices`), `"multi_worker"` (`MultiWorkerMirroredStrategy`
            configured by the `TF_CONFIG` environment variable), or `"tpu"`.
        devices: Optional device list for `"mirrored"`.
        tpu_address: TPU name or address for `"tpu"` (empty: the local TPU).

    Returns:
        The strategy.

    Raises:
        ValueError: for an unknown name, or `"multi_worker"` without `TF_CONFIG`.

    Example:

    ```python
    strategy = get_strategy("mirrored")
    with strategy.scope():
        distiller = Distiller(...)
        distiller.compile(...)
    ```
    """
    if name in (None, "", "default"):
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy(devices=devices)
    if name == "multi_worker":
        if "TF_CONFIG" not in os.environ:
            raise ValueError(
                "--strategy=multi_worker needs the TF_CONFIG environment variable, e.g. "
                + json.dumps({"cluster": {"worker": ["host1:12345", "host2:12345"]},
                              "task": {"type": "worker", "index": 0}})
                + ", set on every worker with its own task index.")
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "tpu":
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu_address or "")
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    raise ValueError(f"Unknown strategy {name!r}; choose one of {STRATEGIES}.")
