"""EpochAccuracy keeps the per-epoch test accuracy of a resumed run."""

import keras
import numpy as np
import tensorflow as tf

from recipes import common


def _constant_model(label, num_classes=3):
    inputs = keras.Input((2,))
    logits = keras.layers.Dense(num_classes, kernel_initializer="zeros",
                                bias_initializer=keras.initializers.Constant(
                                    np.eye(num_classes)[label]))(inputs)
    return keras.Model(inputs, logits)


def test_resumed_history_keeps_earlier_epochs_and_replaces_retrained_ones(tmp_path):
    csv = tmp_path / "history.csv"
    # An interrupted attempt: epochs 0..2 logged, but only 0..1 were committed to the
    # backup, so epoch 2 is trained again and its row must be replaced.
    csv.write_text("epoch,loss,test_accuracy\n0,1.0,0.25\n1,0.9,0.5\n2,0.8,0.125\n")
    labels = np.array([0, 0, 0, 1])  # a model that always says 0 is 75% right
    dataset = tf.data.Dataset.from_tensor_slices((np.zeros((4, 2), "float32"), labels)).batch(2)
    tracker = common.EpochAccuracy(lambda: _constant_model(0), dataset, history_csv=str(csv))
    assert tracker.history == [0.25, 0.5, 0.125]
    logs = {}
    tracker.on_epoch_end(2, logs)
    assert logs["test_accuracy"] == 0.75
    assert tracker.history == [0.25, 0.5, 0.75]
    summary = common.accuracy_summary(tracker, None, None)
    assert summary == {"best": 0.75, "last": 0.75, "best_epoch": 3,
                       "per_epoch": [0.25, 0.5, 0.75]}


def test_fresh_run_without_history_file(tmp_path):
    dataset = tf.data.Dataset.from_tensor_slices(
        (np.zeros((2, 2), "float32"), np.array([1, 1]))).batch(2)
    tracker = common.EpochAccuracy(lambda: _constant_model(1), dataset,
                                   history_csv=str(tmp_path / "missing.csv"))
    tracker.on_epoch_end(0, {})
    assert tracker.history == [1.0]
