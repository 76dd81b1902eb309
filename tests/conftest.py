"""Test configuration shared by the whole suite.

Two logical CPU devices are created before TensorFlow initialises, so any
test can build a 2-replica ``tf.distribute.MirroredStrategy`` on this
machine (see ``keras_distill.testing.two_replica_strategy``).
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import tensorflow as tf  # noqa: E402

_cpus = tf.config.list_physical_devices("CPU")
try:
    tf.config.set_logical_device_configuration(
        _cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2
    )
except RuntimeError:  # already initialised by an earlier import
    pass
