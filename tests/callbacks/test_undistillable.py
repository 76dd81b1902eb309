"""UndistillableClasses: per-class accuracy against a reference, the mask, the report.

The constructed example: K = 4 classes, 10 validation samples each. A fake
"student" returns its input as logits, so its predictions are fixed by the
data: per class it is right on [9, 5, 7, 9] of 10 samples, i.e. accuracy
a = [0.9, 0.5, 0.7, 0.9]. The reference student's accuracy is
r = [0.8, 0.6, 0.7, 1.0]; the gains a - r = [+0.1, -0.1, 0.0, -0.1].
With delta = 0 a class is undistillable when a_k < r_k: classes {1, 3}
(class 2 is equal, not worse). With delta = 0.05 the same; with
delta = 0.15 none (no class lost more than 0.15).
"""

import json

import numpy as np
import keras
import pytest
import tensorflow as tf

from keras_distill.callbacks.undistillable import (
    REPORT_JSON, REPORT_PNG, PerClassAccuracyHistory, UndistillableClasses, per_class_accuracy,
    reference_per_class_accuracy)

NUM_CLASSES = 4
CORRECT = [9, 5, 7, 9]
REFERENCE = [0.8, 0.6, 0.7, 1.0]


def _validation(correct=CORRECT, per_class=10):
    labels, logits = [], []
    for k, right in enumerate(correct):
        for i in range(per_class):
            predicted = k if i < right else (k + 1) % NUM_CLASSES
            labels.append(k)
            logits.append(np.eye(NUM_CLASSES)[predicted])
    return np.asarray(logits, "float32"), np.asarray(labels)


def _fake_student():
    return keras.Sequential([keras.Input((NUM_CLASSES,)), keras.layers.Identity()])


def _callback(data=None, **kwargs):
    mask = keras.Variable(np.zeros(NUM_CLASSES, "float32"), trainable=False)
    callback = UndistillableClasses(mask, data if data is not None else _validation(),
                                    kwargs.pop("reference", REFERENCE), **kwargs)
    callback.set_model(_fake_student())
    callback.on_train_begin()
    return callback, mask


def test_per_class_accuracy_of_the_constructed_example():
    np.testing.assert_allclose(per_class_accuracy(_fake_student(), _validation(), NUM_CLASSES),
                               [0.9, 0.5, 0.7, 0.9])


def test_per_class_accuracy_from_a_dataset_with_side_inputs_and_one_hot_labels():
    x, y = _validation()
    data = tf.data.Dataset.from_tensor_slices(
        ({"inputs": x, "index": np.arange(len(y))}, np.eye(NUM_CLASSES)[y])).batch(7)
    np.testing.assert_allclose(per_class_accuracy(_fake_student(), data, NUM_CLASSES),
                               [0.9, 0.5, 0.7, 0.9])


@pytest.mark.parametrize("delta, expected", [(0.0, [1, 3]), (0.05, [1, 3]), (0.15, [])])
def test_picks_exactly_the_classes_whose_accuracy_dropped(delta, expected):
    callback, mask = _callback(delta=delta)
    logs = {}
    callback.on_epoch_end(0, logs)
    assert callback.undistillable == expected
    np.testing.assert_array_equal(np.asarray(mask), np.isin(range(4), expected).astype("float32"))
    assert logs["undistillable_classes"] == len(expected)


def test_update_every_and_freeze_epoch():
    callback, mask = _callback(update_every=2)
    callback.on_epoch_end(0, {})  # epoch 1: no update
    assert callback.undistillable == []
    callback.on_epoch_end(1, {})  # epoch 2: update
    assert callback.undistillable == [1, 3]

    callback, mask = _callback(freeze_epoch=1)
    callback.on_epoch_end(0, {})
    assert callback.undistillable == [1, 3]
    # The student changes (class 0 now 0.5 < 0.8), but the set is frozen after epoch 1.
    callback.validation_data = _validation([5, 9, 9, 10])
    logs = {}
    callback.on_epoch_end(1, logs)
    assert callback.undistillable == [1, 3] and logs["undistillable_classes"] == 2
    assert [h["epoch"] for h in callback.history] == [1]


def test_unfrozen_set_follows_the_student():
    callback, _ = _callback()
    callback.on_epoch_end(0, {})
    callback.validation_data = _validation([5, 9, 9, 10])  # a = [0.5, 0.9, 0.9, 1.0]
    callback.on_epoch_end(1, {})
    assert callback.undistillable == [0]


def test_absent_class_is_never_masked():
    x, y = _validation()
    keep = y != 1
    callback, _ = _callback(data=(x[keep], y[keep]))
    callback.on_epoch_end(0, {})
    assert callback.undistillable == [3]


def test_report_json_and_png_are_written(tmp_path):
    callback, _ = _callback(delta=0.05, class_names=["a", "b", "c", "d"],
                            report_dir=str(tmp_path))
    callback.on_epoch_end(0, {})
    callback.on_train_end()
    report = json.loads((tmp_path / REPORT_JSON).read_text())
    assert report["undistillable"] == [1, 3] and report["delta"] == 0.05
    np.testing.assert_allclose(report["gain"], [0.1, -0.1, 0.0, -0.1], atol=1e-9)
    np.testing.assert_allclose(report["student_accuracy"], [0.9, 0.5, 0.7, 0.9])
    assert report["reference_accuracy"] == REFERENCE
    assert report["class_names"] == ["a", "b", "c", "d"]
    assert report["history"][0]["epoch"] == 1
    png = (tmp_path / REPORT_PNG).read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 1000


def test_report_marks_absent_classes_as_null(tmp_path):
    x, y = _validation()
    callback, _ = _callback(data=(x[y != 2], y[y != 2]))
    callback.on_train_end()
    json_path, png_path = callback.write_report(str(tmp_path))
    report = json.loads(open(json_path).read())
    assert report["student_accuracy"][2] is None and report["gain"][2] is None


def test_reference_may_be_computed_lazily():
    calls = []

    def reference():
        calls.append(1)
        return REFERENCE

    callback, _ = _callback(reference=reference)
    assert calls == [1] and callback.reference_accuracy == REFERENCE


def test_reference_per_class_accuracy_trains_a_student_on_labels():
    keras.utils.set_random_seed(0)
    y = np.repeat(np.arange(NUM_CLASSES), 10)
    x = np.eye(NUM_CLASSES, dtype="float32")[y]  # separable: one-hot of the label

    def builder():
        return keras.Sequential([keras.Input((NUM_CLASSES,)), keras.layers.Dense(NUM_CLASSES)])

    accuracy = reference_per_class_accuracy(
        builder, (x, y), (x, y), epochs=30, batch_size=8,
        optimizer=lambda: keras.optimizers.Adam(0.1))
    assert accuracy == [1.0] * NUM_CLASSES


def test_a_reference_trajectory_is_compared_at_the_same_epoch():
    """Early in training the reference is weak too: compared epoch by epoch, the student
    (a = [0.9, 0.5, 0.7, 0.9] at every epoch) is worse than the reference only where the
    reference of *that* epoch is better. Epoch 1: r = [0.5, 0.4, 0.6, 0.8] -> nothing
    masked (a fixed final reference would have masked {1, 3} from the first epoch);
    epoch 2: r = [0.8, 0.6, 0.7, 1.0] -> {1, 3}; epoch 3, beyond the trajectory: its last
    row again -> {1, 3}."""
    trajectory = [[0.5, 0.4, 0.6, 0.8], REFERENCE]
    callback, mask = _callback(reference=trajectory)
    callback.on_epoch_end(0, {})
    assert callback.undistillable == []
    callback.on_epoch_end(1, {})
    assert callback.undistillable == [1, 3]
    np.testing.assert_array_equal(np.asarray(mask), [0, 1, 0, 1])
    callback.on_epoch_end(2, {})
    assert callback.undistillable == [1, 3]
    assert [h["reference_accuracy"] for h in callback.history] == [
        trajectory[0], REFERENCE, REFERENCE]
    # the report's gain is final student vs final reference
    callback.on_train_end()
    np.testing.assert_allclose(callback.report()["gain"], [0.1, -0.1, 0.0, -0.1], atol=1e-12)


def test_per_class_history_persists_and_replaces_retrained_epochs(tmp_path):
    path = str(tmp_path / "reference.json")
    recorder = PerClassAccuracyHistory(_validation(), NUM_CLASSES, path=path)
    recorder.set_model(_fake_student())
    recorder.on_epoch_end(0)
    recorder.on_epoch_end(1)
    assert recorder.history == [[0.9, 0.5, 0.7, 0.9]] * 2
    # a resumed training reads the finished epochs back; epoch 1 trained again replaces its row
    resumed = PerClassAccuracyHistory(_validation(correct=[1, 2, 3, 4]), NUM_CLASSES, path=path)
    resumed.set_model(_fake_student())
    assert resumed.history == [[0.9, 0.5, 0.7, 0.9]] * 2
    resumed.on_epoch_end(1)
    assert resumed.history == [[0.9, 0.5, 0.7, 0.9], [0.1, 0.2, 0.3, 0.4]]
    assert json.loads(open(path).read()) == resumed.history


def test_reference_per_class_accuracy_per_epoch_returns_the_trajectory():
    keras.utils.set_random_seed(0)
    y = np.repeat(np.arange(NUM_CLASSES), 10)
    x = np.eye(NUM_CLASSES, dtype="float32")[y]

    def builder():
        return keras.Sequential([keras.Input((NUM_CLASSES,)), keras.layers.Dense(NUM_CLASSES)])

    trajectory = reference_per_class_accuracy(
        builder, (x, y), (x, y), epochs=30, batch_size=8,
        optimizer=lambda: keras.optimizers.Adam(0.1), per_epoch=True)
    assert len(trajectory) == 30 and all(len(row) == NUM_CLASSES for row in trajectory)
    assert trajectory[-1] == [1.0] * NUM_CLASSES


def test_bad_arguments():
    data = _validation()
    with pytest.raises(ValueError, match="never the test set"):
        UndistillableClasses(keras.Variable(np.zeros(4)), None, REFERENCE)
    with pytest.raises(ValueError, match="reference student's per-class accuracy"):
        UndistillableClasses(keras.Variable(np.zeros(4)), data, None)
    with pytest.raises(ValueError, match="update_every must be >= 1"):
        UndistillableClasses(keras.Variable(np.zeros(4)), data, REFERENCE, update_every=0)
    with pytest.raises(ValueError, match="reference_accuracy has 3 values per row; the mask has 4"):
        _callback(reference=[0.5, 0.5, 0.5])
    callback = UndistillableClasses("not a variable", data, REFERENCE)
    callback.set_model(_fake_student())
    with pytest.raises(TypeError, match="names a term.*not a Distiller"):
        callback.on_train_begin()
    callback = UndistillableClasses(np.zeros(4), data, REFERENCE)
    callback.set_model(_fake_student())
    with pytest.raises(TypeError, match="mask must be a built ClassMask"):
        callback.on_train_begin()
