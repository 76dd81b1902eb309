"""A `tf.distribute` strategy from a name, built before any model; worker roles.

Build the strategy first, then create every model, the Distiller, its
optimizer and metrics inside `strategy.scope()` (the recipes do). Under
`"multi_worker"` each worker runs the same program with its own `TF_CONFIG`
task index; `is_chief()` / `worker_dir()` keep non-chief workers from
writing over the chief's files. See docs/scale.md.
"""

from __future__ import annotations

import json
import os

import tensorflow as tf

from keras_distill import multi_worker

STRATEGIES = ("default", "mirrored", "multi_worker", "tpu")


def get_strategy(name="default", devices=None, tpu_address=None, communication=None):
    """Returns a `tf.distribute.Strategy` for a name.

    Build it before any model or variable, and create the Distiller, its
    optimizer and metrics inside `strategy.scope()`.

    Args:
        name: `"default"` (one device), `"mirrored"` (the given `devices`,
            else all local GPUs, else all logical CPU devices when the CPU was
            split into several with `tf.config.set_logical_device_configuration`),
            `"multi_worker"` (`MultiWorkerMirroredStrategy` configured by the
            `TF_CONFIG` environment variable), or `"tpu"`.
        devices: Optional device list for `"mirrored"`.
        tpu_address: TPU name or address for `"tpu"` (empty: the local TPU).
        communication: For `"multi_worker"`: `"auto"` (default), `"ring"`
            (gRPC, works on CPUs) or `"nccl"` (GPUs).

    Returns:
        The strategy. For `"multi_worker"` it also installs the Keras fixes
        of `keras_distill.multi_worker` (stock Keras 3.15 `fit()` fails with
        several workers without them); this and an explicit
        `keras_distill.multi_worker.enable()` are the only ways they are
        installed (building a model never does).

    Raises:
        ValueError: for an unknown name, or `"multi_worker"` without (or with a
            malformed) `TF_CONFIG`.

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
        if devices is None and not tf.config.list_logical_devices("GPU"):
            cpus = tf.config.list_logical_devices("CPU")
            if len(cpus) > 1:  # logical CPUs split on purpose (tests, CPU-only runs)
                devices = [cpu.name for cpu in cpus]
        return tf.distribute.MirroredStrategy(devices=devices)
    if name == "multi_worker":
        cluster = tf_config()
        if cluster is None:
            raise ValueError(
                "--strategy=multi_worker needs the TF_CONFIG environment variable, e.g. "
                + json.dumps({"cluster": {"worker": ["host1:12345", "host2:12345"]},
                              "task": {"type": "worker", "index": 0}})
                + ", set on every worker with its own task index.")
        implementation = {
            None: tf.distribute.experimental.CommunicationImplementation.AUTO,
            "auto": tf.distribute.experimental.CommunicationImplementation.AUTO,
            "ring": tf.distribute.experimental.CommunicationImplementation.RING,
            "nccl": tf.distribute.experimental.CommunicationImplementation.NCCL,
        }
        if communication not in implementation:
            raise ValueError(f"communication must be auto, ring or nccl, got {communication!r}.")
        strategy = tf.distribute.MultiWorkerMirroredStrategy(
            communication_options=tf.distribute.experimental.CommunicationOptions(
                implementation=implementation[communication]))
        multi_worker.enable()
        return strategy
    if name == "tpu":
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu_address or "")
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    raise ValueError(f"Unknown strategy {name!r}; choose one of {STRATEGIES}.")


def tf_config():
    """The parsed `TF_CONFIG` environment variable, or None when unset.

    Raises:
        ValueError: when it is set but is not JSON with `cluster` and `task`.
    """
    text = os.environ.get("TF_CONFIG")
    if not text:
        return None
    try:
        config = json.loads(text)
    except ValueError as error:
        raise ValueError(f"TF_CONFIG is not valid JSON ({error}): {text!r}") from error
    if not isinstance(config, dict) or "cluster" not in config or "task" not in config:
        raise ValueError(
            f"TF_CONFIG needs 'cluster' and 'task' keys, got {text!r}; e.g. "
            '{"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
            '"task": {"type": "worker", "index": 0}}.')
    return config


def task():
    """`(task_type, task_index)` of this process from `TF_CONFIG` (`(None, 0)` without it)."""
    config = tf_config()
    if config is None:
        return None, 0
    return config["task"].get("type"), int(config["task"].get("index", 0))


def is_chief(strategy=None):
    """True for the process that writes the run's files.

    That is every single-process run, the `chief` task when the cluster has
    one, else worker 0 (the MultiWorkerMirroredStrategy convention).
    """
    if strategy is not None and not multi_worker.is_multi_worker(strategy):
        return True
    config = tf_config()
    if config is None:
        return True
    task_type, index = task()
    if "chief" in config["cluster"]:
        return task_type == "chief"
    return task_type in (None, "worker") and index == 0


def worker_dir(path, strategy=None):
    """`path` on the chief; a private `path/workers/<type>-<index>` on other workers.

    Non-chief workers must still run callbacks that save (checkpointing can
    use collective ops); they write where nobody reads.
    """
    if is_chief(strategy):
        return path
    task_type, index = task()
    return os.path.join(path, "workers", f"{task_type or 'worker'}-{index}")
