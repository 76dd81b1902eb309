"""Reliability: bad input gives a clear error naming the fix; faults lose nothing.

The Distiller's and the callbacks' behaviour on tiny nets, then the recipes'
refusals (which run before any training). Kill-and-resume with real
processes is in tests/recipes/test_resume.py. docs/reliability.md lists
every case with its test.
"""

import errno
import json
import os
import subprocess

import numpy as np
import keras
import pytest
import tensorflow as tf
from keras import ops

import keras_distill as kd
from keras_distill import losses
from keras_distill.callbacks import TrainedStateCheckpoint
from keras_distill.callbacks.guards import (AtomicBackupAndRestore, NonFiniteGuard,
                                            NonFiniteLossError)
from keras_distill.checks import TrackedOptions, output_activation
from keras_distill.data import make_dataset
from keras_distill.losses.base import DistillationLoss
from keras_distill.testing import conv_net

SCE = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def _data(n=24, classes=3, seed=0, size=8):
    rng = np.random.default_rng(seed)
    return rng.random((n, size, size, 1)).astype("float32"), rng.integers(0, classes, n)


def _distiller(teacher=None, student=None, terms=None, lr=0.1, **kwargs):
    distiller = kd.Distiller(teacher or conv_net("t", 4, seed=1),
                             student or conv_net("s", 4, seed=2),
                             terms or [losses.KD(4.0)], **kwargs)
    distiller.compile(optimizer=keras.optimizers.SGD(lr), loss=SCE)
    return distiller


def _with_head(base, head, name):
    """`base`'s logits followed by `head` (a layer), as one functional model."""
    return keras.Model(base.input, head(base.output), name=name)


# ==================================================================== bad input
# Class-count and input-shape mismatches, one-hot labels for label-reading terms,
# unlabeled data for such terms, unknown taps: tests/test_distiller.py.

SOFTMAX_HEADS = {
    "softmax_layer": lambda: keras.layers.Softmax(name="probs"),
    "activation_layer": lambda: keras.layers.Activation("softmax", name="probs"),
}


@pytest.mark.parametrize("head", sorted(SOFTMAX_HEADS))
def test_softmax_teacher_is_refused_with_the_fix(head):
    teacher = _with_head(conv_net("t", 4), SOFTMAX_HEADS[head](), "soft_teacher")
    with pytest.raises(ValueError, match=r"teacher 'soft_teacher' ends in a softmax \(layer "
                       r"'probs'\).*teacher_outputs='probabilities'.*classifier_activation=None"):
        kd.Distiller(teacher, conv_net("s", 4), [losses.KD()])


def test_softmax_detected_in_dense_activation_and_nested_models():
    inputs = keras.Input((8, 8, 1))
    flat = keras.layers.Flatten()(inputs)
    dense = keras.Model(inputs, keras.layers.Dense(3, activation="softmax", name="head")(flat))
    assert output_activation(dense) == ("softmax", "head")
    outer = keras.Model(dense.input, dense(dense.input))  # the softmax is inside `dense`
    assert output_activation(outer) == ("softmax", "head")
    assert output_activation(conv_net("s", 4)) == ("linear", "logits")


def test_softmax_student_is_refused_with_the_fix():
    student = _with_head(conv_net("s", 4), keras.layers.Softmax(name="probs"), "soft_student")
    with pytest.raises(ValueError, match=r"student 'soft_student' ends in a softmax.*"
                       r"keras.Sequential\(\[student, keras.layers.Softmax\(\)\]\)"):
        kd.Distiller(conv_net("t", 4), student, [losses.KD()])


def test_probabilities_teacher_gives_the_same_kd_as_its_logits():
    """With `teacher_outputs="probabilities"` the Distiller uses `log p` as the logits.

    `log softmax(z) = z - logsumexp(z)` differs from `z` by one constant per
    row, and `softmax((z - c) / T) = softmax(z / T)` for every T, so KD (T=4)
    on the softmax teacher equals KD on the logits teacher, up to float error.
    """
    x, y = _data(n=16)
    logits_teacher = conv_net("t", 8, seed=1)
    soft_teacher = _with_head(logits_teacher, keras.layers.Softmax(), "soft")
    student = conv_net("s", 4, seed=2)
    plain = _distiller(logits_teacher, student, [losses.KD(4.0)], lr=0.0)
    converted = _distiller(soft_teacher, student, [losses.KD(4.0)], lr=0.0,
                           teacher_outputs="probabilities")
    a = plain.evaluate(x, y, verbose=0, return_dict=True)
    b = converted.evaluate(x, y, verbose=0, return_dict=True)
    assert a["kd"] > 0
    assert b["kd"] == pytest.approx(a["kd"], rel=1e-4)
    assert b["agreement"] == pytest.approx(a["agreement"])
    restored = kd.Distiller.from_config(converted.get_config())
    assert restored.teacher_outputs == "probabilities"


def test_probabilities_flag_on_a_logits_teacher_or_a_bad_value_is_refused():
    with pytest.raises(ValueError, match=r"teacher_outputs='probabilities', but the teacher 't' "
                       r"ends in layer 'logits' with activation 'linear'.*Drop teacher_outputs"):
        kd.Distiller(conv_net("t", 4), conv_net("s", 4), [losses.KD()],
                     teacher_outputs="probabilities")
    with pytest.raises(ValueError, match=r"teacher_outputs must be one of \('logits', "
                       r"'probabilities'\), got 'probs'"):
        kd.Distiller(conv_net("t", 4), conv_net("s", 4), [losses.KD()], teacher_outputs="probs")


LABEL_MESSAGE = r"Labels must be class indices in \[0, 3\).*Remap the labels to 0..2"


def test_labels_out_of_range_stop_the_step_with_a_clear_message():
    x, y = _data(n=8)
    with pytest.raises(tf.errors.InvalidArgumentError, match=LABEL_MESSAGE):
        _distiller().fit(x, y + 3, batch_size=8, verbose=0)  # read by the supervised loss
    # A term that reads labels, no supervised loss: one-hot / gather would be silently wrong.
    masked = kd.Distiller(conv_net("t", 4), conv_net("s", 4),
                          [losses.ClassMask(losses.KD(), num_classes=3)])
    masked.compile(optimizer="sgd")
    with pytest.raises(tf.errors.InvalidArgumentError, match=LABEL_MESSAGE):
        masked.fit(x, y - 3, batch_size=8, verbose=0)
    # Labels nothing reads are not checked: distilling without labels stays possible.
    unread = kd.Distiller(conv_net("t", 4), conv_net("s", 4), [losses.KD()])
    unread.compile(optimizer="sgd")
    assert np.isfinite(unread.fit(x, y + 3, batch_size=8, verbose=0).history["kd"][0])


@pytest.mark.slow  # XLA compilation: ~8 s
def test_labels_out_of_range_under_xla_are_caught_by_the_guard():
    """XLA drops assert ops, so out-of-range labels give a NaN loss; the guard stops at step 0."""
    x, y = _data(n=8)
    distiller = kd.Distiller(conv_net("t", 4), conv_net("s", 4), [losses.KD()])
    distiller.compile(optimizer="sgd", loss=SCE, jit_compile=True)
    with pytest.raises(NonFiniteLossError, match=r"training step 0 .*student_loss=nan.*XLA"):
        distiller.fit(x, y + 3, batch_size=8, verbose=0, callbacks=[NonFiniteGuard()])


def test_empty_training_data_is_refused(tmp_path):
    x, y = _data(n=8)
    empty = tf.data.Dataset.from_tensor_slices((x[:0], y[:0])).batch(4)
    with pytest.raises(ValueError, match=r"training data is empty: it yields no batch"):
        _distiller().fit(empty, verbose=0)
    with pytest.raises(ValueError, match=r"training data is empty"):
        _distiller().fit(x[:0], y[:0], verbose=0)
    # Unknown size (a filter that keeps nothing): refused at the end of epoch 1, before the
    # backup (last in the list) can record an epoch that trained nothing.
    filtered = tf.data.Dataset.from_tensor_slices((x, y)).filter(lambda a, b: b > 5).batch(4)
    backup = AtomicBackupAndRestore(str(tmp_path / "backup"))
    with pytest.raises(ValueError, match=r"training data is empty.*Epoch 1 ran 0 training steps"):
        _distiller().fit(filtered, epochs=2, verbose=0, callbacks=[backup])
    assert not (tmp_path / "backup" / "backup.json").exists()


def test_images_of_a_size_the_models_do_not_take_are_refused():
    x, y = _data(n=8, size=12)
    with pytest.raises(ValueError, match=r"inputs have shape \(12, 12, 1\).*student 's' takes "
                       r"\(8, 8, 1\).*keras.layers.Resizing"):
        _distiller().fit(x, y, batch_size=8, verbose=0)
    rgb = np.repeat(_data(n=8)[0], 3, axis=-1)
    with pytest.raises(ValueError, match=r"inputs have shape \(8, 8, 3\).*takes \(8, 8, 1\)"):
        _distiller().evaluate(rgb, y, verbose=0)


def test_tracked_options_report_unread_keys():
    options = TrackedOptions({"temperature": "2", "temprature": "3"})
    context = kd.methods.MethodContext(teacher=None, student=None, num_classes=3,
                                       options=options)
    assert context.option("temperature", 4.0) == 2.0
    assert context.option("alpha", 0.5) == 0.5
    assert options.unused() == ["temprature"]
    assert options.asked() == ["alpha", "temperature"]
    assert TrackedOptions(dict(options)).unused() == ["temperature", "temprature"]
    copied = dict(options)  # a builder that copies every option reads them all
    assert copied and options.unused() == []


# ======================================================================= faults
class NanAtStep(DistillationLoss):
    """KD times NaN at one training step (0-based, counted by a state variable): the loss
    and its gradient are NaN there, so that step also turns the student's weights to NaN."""

    def __init__(self, step, name="nan_at_step", **kwargs):
        super().__init__(name=name, **kwargs)
        self.step = step

    def build(self, teacher_shapes, student_shapes):
        self.calls = self.add_state_variable("calls", 0.0)
        super().build(teacher_shapes, student_shapes)

    def compute(self, teacher, student, labels, side_inputs):
        self.calls.assign_add(1.0)
        value = losses.KD(4.0).compute(teacher, student, labels, side_inputs)
        poison = ops.where(ops.equal(ops.convert_to_tensor(self.calls), self.step + 1.0),
                           float("nan"), 1.0)
        return value * poison


class WeightsAtEpochEnd(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.weights = {}

    def on_epoch_end(self, epoch, logs=None):
        self.weights[epoch + 1] = [w.copy() for w in self.model.student.get_weights()]


def test_nan_term_stops_with_its_name_and_step_keeping_the_last_good_state(tmp_path):
    """24 examples / batch 8 = 3 steps per epoch: step 4 is epoch 2, batch 2."""
    x, y = _data(n=24)
    distiller = _distiller(terms=[losses.KD(4.0), NanAtStep(4)])
    recorder = WeightsAtEpochEnd()
    callbacks = [NonFiniteGuard(hint="(hint)"), recorder,
                 TrainedStateCheckpoint(str(tmp_path / "checkpoints")),
                 AtomicBackupAndRestore(str(tmp_path / "backup"))]
    with pytest.raises(NonFiniteLossError, match=r"at training step 4 \(epoch 2, batch 2\): term "
                       r"nan_at_step=nan \(also non-finite: loss=nan\).*intact.*\(hint\)"):
        distiller.fit(x, y, batch_size=8, epochs=3, shuffle=False, verbose=0,
                      callbacks=callbacks)
    # The NaN step was applied in memory, but nothing of epoch 2 was saved: the backup and
    # the checkpoints hold epoch 1.
    assert not all(np.isfinite(w).all() for w in distiller.student.get_weights())
    assert json.loads((tmp_path / "backup" / "backup.json").read_text())["epoch"] == 1
    student = conv_net("s", 4, seed=9)
    assert TrainedStateCheckpoint.restore_student(student, str(tmp_path / "checkpoints")) \
        == "trained-1"
    for restored, good in zip(student.get_weights(), recorder.weights[1]):
        np.testing.assert_array_equal(restored, good)
    resumed = _distiller(terms=[losses.KD(4.0), NanAtStep(1000)])  # same variables
    backup = AtomicBackupAndRestore(str(tmp_path / "backup"))
    history = resumed.fit(x, y, batch_size=8, epochs=3, verbose=0, callbacks=[backup])
    assert backup.restored_epoch == 1 and len(history.history["loss"]) == 2


def test_half_written_trained_checkpoint_is_never_loaded(tmp_path):
    """TrainedStateCheckpoint: tf.train.CheckpointManager writes the data files first and the
    `checkpoint` index last (atomically), so files of an interrupted save are ignored."""
    x, y = _data(n=16)
    distiller = _distiller()
    distiller.fit(x, y, batch_size=8, verbose=0,
                  callbacks=[TrainedStateCheckpoint(str(tmp_path))])
    good = [w.copy() for w in distiller.student.get_weights()]
    for suffix in (".index", ".data-00000-of-00001"):  # a save of epoch 2, killed midway
        (tmp_path / f"trained-2{suffix}").write_bytes(b"half")
    student = conv_net("s", 4, seed=9)
    assert TrainedStateCheckpoint.restore_student(student, str(tmp_path)) == "trained-1"
    for restored, expected in zip(student.get_weights(), good):
        np.testing.assert_array_equal(restored, expected)


def test_keras_terminate_on_nan_lets_backup_save_the_nan_epoch(tmp_path):
    """Why the guard raises: TerminateOnNaN only sets stop_training, so Keras still calls
    on_epoch_end and its BackupAndRestore overwrites the good state with NaN weights."""
    x, y = _data(n=24)
    distiller = _distiller(terms=[NanAtStep(4)])
    distiller.fit(x, y, batch_size=8, epochs=3, shuffle=False, verbose=0, callbacks=[
        keras.callbacks.TerminateOnNaN(),
        keras.callbacks.BackupAndRestore(str(tmp_path / "keras"), delete_checkpoint=False)])
    saved = json.loads((tmp_path / "keras" / "training_metadata.json").read_text())
    assert saved["epoch"] == 2  # the NaN epoch was backed up as complete
    fresh = _distiller(terms=[NanAtStep(4)])
    fresh.optimizer.build(fresh.trainable_variables)
    fresh.load_weights(str(tmp_path / "keras" / "latest.weights.h5"))
    assert not all(np.isfinite(w).all() for w in fresh.student.get_weights())


def _resume_run(backup_dir, epochs, track=True, fail=None, strategy=None):
    """KD on seeded, shuffled, crop_flip-augmented data: the data order matters."""
    x, y = _data(n=48)
    keras.utils.set_random_seed(0)  # the global seed enters tf.data's seeds: fix it, as recipes do
    train = make_dataset((x * 255).astype("uint8"), y, batch_size=16, training=True,
                         augment="crop_flip", seed=0, num_classes=3)
    with (strategy or tf.distribute.get_strategy()).scope():
        distiller = _distiller(conv_net("t", 8, seed=1), conv_net("s", 4, seed=2),
                               [losses.KD(4.0)], lr=0.2)
    backup = AtomicBackupAndRestore(str(backup_dir), delete_checkpoint=False)
    if track:
        train = backup.track(train)
    if fail is not None:
        backup._write_weights = fail(backup._write_weights)
    history = distiller.fit(train, epochs=epochs, verbose=0, callbacks=[backup])
    return distiller.student.get_weights(), history.history, backup


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """Student weights after 3 uninterrupted epochs of `_resume_run`."""
    return _resume_run(tmp_path_factory.mktemp("reference"), epochs=3)[0]


def test_atomic_backup_skips_an_uncommitted_write_and_resumes_exactly(tmp_path, reference):
    _resume_run(tmp_path / "run", epochs=1)  # epoch 1 committed; then, as if killed writing
    (tmp_path / "run" / "state-000002.weights.h5").write_bytes(b"\x89HDF half written")
    (tmp_path / "run" / "backup.json.tmp").write_text('{"epoch": 2')
    weights, history, backup = _resume_run(tmp_path / "run", epochs=3)
    assert backup.restored_epoch == 1 and len(history["loss"]) == 2
    for a, b in zip(reference, weights):
        np.testing.assert_array_equal(a, b)  # exact: same weights, optimizer state, data order
    assert sorted(os.listdir(tmp_path / "run")) == ["backup.json", "state-000003.weights.h5"]
    # Without track() the resumed run reads epoch 1's shuffle and crops again: not exact.
    _resume_run(tmp_path / "untracked", epochs=1, track=False)
    untracked, _, _ = _resume_run(tmp_path / "untracked", epochs=3, track=False)
    assert any(not np.array_equal(a, b) for a, b in zip(reference, untracked))


@pytest.mark.slow  # three fits on 2 replicas
def test_atomic_backup_resumes_exactly_on_two_replicas(tmp_path):
    from keras_distill.testing import two_replica_strategy

    strategy = two_replica_strategy()
    reference, _, _ = _resume_run(tmp_path / "reference", epochs=3, strategy=strategy)
    _resume_run(tmp_path / "run", epochs=1, strategy=strategy)
    weights, history, _ = _resume_run(tmp_path / "run", epochs=3, strategy=strategy)
    assert len(history["loss"]) == 2
    for a, b in zip(reference, weights):
        np.testing.assert_array_equal(a, b)


def test_track_keeps_elements_and_cardinality_and_leaves_repeated_data_alone(tmp_path):
    backup = AtomicBackupAndRestore(str(tmp_path))

    def data():
        return tf.data.Dataset.range(10).shuffle(10, seed=0).batch(4)

    tracked = backup.track(data())
    assert int(tracked.cardinality()) == 3
    assert [b.tolist() for b in tracked.as_numpy_iterator()] == \
        [b.tolist() for b in data().as_numpy_iterator()]  # the same first order
    repeated = data().repeat()
    with pytest.warns(UserWarning, match="infinite.*restarts its data stream"):
        assert backup.track(repeated) is repeated


def test_keras_backup_cannot_resume_from_a_truncated_file(tmp_path):
    """Why the atomic version: Keras 3.15 overwrites latest.weights.h5 in place, so a kill
    during that write leaves a file the next run cannot load (no double_checkpoint)."""
    x, y = _data(n=16)
    folder = tmp_path / "keras"
    _distiller().fit(x, y, batch_size=8, verbose=0, callbacks=[
        keras.callbacks.BackupAndRestore(str(folder), delete_checkpoint=False)])
    path = folder / "latest.weights.h5"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(OSError):
        _distiller().fit(x, y, batch_size=8, epochs=2, verbose=0, callbacks=[
            keras.callbacks.BackupAndRestore(str(folder))])


def test_backup_of_another_model_is_refused_clearly(tmp_path):
    x, y = _data(n=16)
    _distiller().fit(x, y, batch_size=8, verbose=0,
                     callbacks=[AtomicBackupAndRestore(str(tmp_path), delete_checkpoint=False)])
    wider = _distiller(student=conv_net("s", 6, seed=2))
    with pytest.raises(ValueError, match=r"(?s)Cannot resume from the backup .*state-000001"
                       r".*another model, method or optimizer.*start over"):
        wider.fit(x, y, batch_size=8, epochs=2, verbose=0,
                  callbacks=[AtomicBackupAndRestore(str(tmp_path))])


def test_disk_full_while_backing_up_keeps_the_previous_backup(tmp_path, reference):
    """ENOSPC is simulated (the weights writer raises it at the 2nd save)."""
    def fail_second(write):
        calls = []

        def failing(path):
            calls.append(path)
            if len(calls) == 2:
                with open(path, "wb") as handle:
                    handle.write(b"partial")
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)
            write(path)
        return failing

    with pytest.raises(OSError, match=r"Could not write the training backup.*No space left on "
                       r"device.*previous backup is intact.*rerun the same command"):
        _resume_run(tmp_path / "run", epochs=3, fail=fail_second)
    assert json.loads((tmp_path / "run" / "backup.json").read_text())["epoch"] == 1
    weights, history, _ = _resume_run(tmp_path / "run", epochs=3)
    assert len(history["loss"]) == 2
    for a, b in zip(reference, weights):
        np.testing.assert_array_equal(a, b)


# ====================================================================== recipes
def _config(tmp_path, **overrides):
    from recipes.config import RunConfig

    values = dict(limit=200, epochs=1, teacher_epochs=1, batch_size=64, verbose=0,
                  baseline=False, model_dir=str(tmp_path / "run"),
                  teacher_dir=str(tmp_path / "teachers"))
    values.update(overrides)
    return RunConfig(**values)


@pytest.fixture(scope="module")
def saved_teacher(tmp_path_factory):
    """An (untrained) Fashion-MNIST teacher saved as .keras: runs load it, never train one."""
    from keras_distill import models

    path = tmp_path_factory.mktemp("teacher") / "teacher.keras"
    models.get("fmnist_teacher_small", num_classes=10, input_shape=(28, 28, 1)).save(path)
    return str(path)


def test_recipe_callbacks_put_the_guard_first_and_the_atomic_backup_last(tmp_path):
    from recipes import common

    marker = keras.callbacks.Callback()
    callbacks, _ = common.standard_callbacks(_config(tmp_path).resolve(), str(tmp_path),
                                             extra=[marker])
    assert isinstance(callbacks[0], NonFiniteGuard) and callbacks[1] is marker
    assert isinstance(callbacks[-1], AtomicBackupAndRestore)
    assert isinstance(callbacks[-2], TrainedStateCheckpoint)


@pytest.mark.parametrize("overrides, message", [
    (dict(teacher="resnet9000"), r"--teacher: .*resnet9000"),
    (dict(augment="crop_flop"), r"--augment: Unknown augmentation 'crop_flop'"),
    (dict(export=("tflite_int4",)), r"--export: unknown format\(s\) \['tflite_int4'\]"),
    (dict(teacher_cache="on", augment="crop_flip"),
     r"--teacher_cache=on with --augment=crop_flip: .*augments its inputs"),
    (dict(teacher_cache="on", method="scratch"), r"--teacher_cache=on, but --method=scratch "
     r"distils from no teacher"),
    (dict(teacher_weights="t.weights.h5", method="dml"),
     r"--teacher_weights is given, but --method=dml uses no teacher"),
])
def test_recipe_refuses_bad_names_and_conflicting_flags_before_any_work(tmp_path, overrides,
                                                                        message):
    from recipes import common, distill

    with pytest.raises(common.ConfigError, match=message):
        distill.run(_config(tmp_path, **overrides))
    assert not (tmp_path / "run" / "config.json").exists()  # refused before the run started


def test_recipe_refuses_an_export_folder_holding_an_artifact_before_training(tmp_path):
    from recipes import common, distill

    (tmp_path / "run" / "export" / "tflite_float32").mkdir(parents=True)
    (tmp_path / "run" / "export" / "tflite_float32" / "model.tflite").write_bytes(b"old")
    with pytest.raises(common.ConfigError, match=r"--export: Export directory .* already holds an "
                       r"export \(tflite_float32\).*--overwrite"):
        distill.run(_config(tmp_path, export=("tflite_float32",)))
    assert (tmp_path / "run" / "export" / "tflite_float32" / "model.tflite").read_bytes() == b"old"


def test_recipe_refuses_teacher_checkpoints_that_do_not_load(tmp_path):
    from recipes import common, distill

    with pytest.raises(common.ConfigError, match=r"--teacher_weights '.*missing.keras' does not "
                       r"exist"):
        distill.run(_config(tmp_path, teacher_weights=str(tmp_path / "missing.keras")))
    corrupt = tmp_path / "corrupt.keras"
    corrupt.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(common.ConfigError, match=r"--teacher '.*corrupt.keras' could not be "
                       r"loaded as a Keras model"):
        distill.run(_config(tmp_path, teacher=str(corrupt)))
    wrong = tmp_path / "wrong.weights.h5"
    conv_net("other", 4).save_weights(wrong)
    with pytest.raises(common.ConfigError, match=r"--teacher_weights '.*wrong.weights.h5' does "
                       r"not fit --teacher=fmnist_teacher_small"):
        distill.run(_config(tmp_path, teacher="fmnist_teacher_small", teacher_weights=str(wrong)))
    config = _config(tmp_path, teacher="fmnist_teacher_small").resolve()
    cached = distill.teacher_cache_path(config)
    os.makedirs(os.path.dirname(cached))
    with open(cached, "wb") as handle:
        handle.write(b"garbage")
    with pytest.raises(common.ConfigError, match=r"teacher cached at .* cannot be loaded.*Delete"):
        distill.run(_config(tmp_path, teacher="fmnist_teacher_small"))


def test_recipe_refuses_a_student_for_other_images(tmp_path, saved_teacher):
    from keras_distill import models
    from recipes import common, distill

    path = tmp_path / "student32.keras"
    models.get("fmnist_student", num_classes=10, input_shape=(32, 32, 1)).save(path)
    with pytest.raises(common.ConfigError, match=r"takes images of shape \(32, 32, 1\) but "
                       r"fashion_mnist has \(28, 28, 1\)"):
        distill.run(_config(tmp_path, teacher=saved_teacher, student=str(path)))


def test_recipe_refuses_misspelled_method_options_and_soft_labels_for_label_terms(
        tmp_path, saved_teacher):
    from recipes import common, distill

    with pytest.raises(common.ConfigError, match=r"--method_options \['temprature'\] are not "
                       r"read by --method=kd, which reads \[.*'temperature'.*check the spelling"):
        distill.run(_config(tmp_path, teacher=saved_teacher,
                            method_options={"temprature": "2"}))
    with pytest.raises(common.ConfigError, match=r"--augment=mixup mixes labels .* --method=dkd's "
                       r"term\(s\) \['dkd'\] read integer class labels"):
        distill.run(_config(tmp_path, teacher=saved_teacher, method="dkd", augment="mixup"))


def test_recipe_stops_a_diverging_run_with_the_guard(tmp_path, saved_teacher):
    from recipes import distill

    with pytest.raises(NonFiniteLossError, match=r"Non-finite loss at training step \d+.*"
                       r"backed up in .*backup"):
        distill.run(_config(tmp_path, teacher=saved_teacher, learning_rate=1e30,
                            lr_schedule="constant", epochs=2))
    assert not (tmp_path / "run" / "student.keras").exists()


def test_recipe_empty_data_is_a_clear_error(tmp_path):
    from keras_distill.data import DataError
    from recipes import distill

    with pytest.raises(DataError, match=r"fewer than 2 examples: cannot carve a validation split"):
        distill.run(_config(tmp_path, limit=1))


def test_recipe_main_prints_user_errors_as_one_line(tmp_path):
    from absl import flags

    from recipes import distill
    from recipes.flags import define_flags

    define_flags()
    argv = ["distill", f"--model_dir={tmp_path / 'run'}", "--teacher_cache=on",
            "--augment=crop_flip"]
    flags.FLAGS(argv)
    try:
        with pytest.raises(SystemExit, match=r"^error: --teacher_cache=on with --augment"):
            distill.main(argv)
    finally:
        flags.FLAGS.unparse_flags()


def _mount_tmpfs(path, size):
    path.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                            capture_output=True, text=True)
    return result.returncode == 0


def test_recipe_refuses_a_full_disk_before_training(tmp_path):
    """A real full disk: a 32 KiB tmpfs (needs root), else skipped; see the ENOSPC twin."""
    from recipes import common, distill

    disk = tmp_path / "disk"
    if not _mount_tmpfs(disk, "32k"):
        pytest.skip("cannot mount a tmpfs here (needs root); the simulated disk-full test covers the same path")
    try:
        with pytest.raises(common.ConfigError, match=r"--model_dir '.*' is not writable \(No space "
                           r"left on device\)"):
            distill.run(_config(tmp_path, model_dir=str(disk / "run")))
    finally:
        subprocess.run(["umount", str(disk)], check=False)


def test_recipe_refuses_a_full_disk_simulated(tmp_path, monkeypatch):
    """The same refusal with ENOSPC simulated (monkeypatched open), for non-root machines."""
    from recipes import common

    def full(path, *args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)

    monkeypatch.setattr(common, "open", full, raising=False)
    with pytest.raises(common.ConfigError, match=r"not writable \(No space left on device\)"):
        common.prepare_model_dir(str(tmp_path / "run"))
