"""The Distiller: one student forward, frozen teacher, variables, replicas, errors."""

import numpy as np
import keras
import pytest
import tensorflow as tf

import keras_distill as kd
from keras_distill import losses
from keras_distill.callbacks import VariableSchedule
from keras_distill.testing import assert_replica_equivalence, conv_net

SCE = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def _data(n=32, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, 8, 8, 1)).astype("float32"), rng.integers(0, classes, n)


@keras.saving.register_keras_serializable(package="tests")
class CallCounter(keras.layers.Layer):
    """Identity that counts how many times the graph runs it."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.calls = self.add_weight(shape=(), initializer="zeros", trainable=False,
                                     name="calls")

    def call(self, inputs):
        self.calls.assign_add(1.0)
        return inputs


def _counted_net(name, width):
    inputs = keras.Input((8, 8, 1))
    counted = CallCounter(name="counter")(inputs)
    hidden = keras.layers.Conv2D(width, 3, padding="same", name="conv1")(counted)
    hidden = keras.layers.ReLU(name="stage1")(hidden)
    hidden = keras.layers.Conv2D(width, 3, padding="same", name="conv2")(hidden)
    hidden = keras.layers.ReLU(name="stage2")(hidden)
    pooled = keras.layers.GlobalAveragePooling2D(name="embedding")(hidden)
    return keras.Model(inputs, keras.layers.Dense(3, name="logits")(pooled), name=name)


def _feature_mse(tap):
    return keras.distillation.FeatureDistillation(
        loss="mse", teacher_layer_name=tap, student_layer_name=tap)


def test_readme_snippet_runs_and_student_is_saved(tmp_path):
    x, y = _data()
    teacher, student = conv_net("teacher", 8), conv_net("student", 4)
    train = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
    distiller = kd.Distiller(
        teacher=teacher, student=student,
        distillation_losses=[kd.losses.KD(temperature=4.0)],
        distillation_loss_weights=[0.9], student_loss_weight=0.1)
    distiller.compile(optimizer="sgd", loss=SCE, metrics=["accuracy"])
    history = distiller.fit(train, validation_data=train, epochs=2, verbose=0)
    assert {"loss", "kd", "student_loss", "accuracy", "agreement", "val_kd",
            "val_accuracy"} <= set(history.history)
    distiller.student.save(tmp_path / "student.keras")
    restored = keras.saving.load_model(tmp_path / "student.keras")
    np.testing.assert_allclose(restored.predict(x, verbose=0), student.predict(x, verbose=0),
                               atol=1e-6)
    # evaluate/predict describe the student.
    np.testing.assert_allclose(distiller.predict(x, verbose=0), student.predict(x, verbose=0),
                               atol=1e-6)


def test_validation_logs_only_the_terms_it_computes():
    from keras_distill.views import Mixup

    x, y = _data()
    train = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
    distiller = kd.Distiller(conv_net("t", 8), conv_net("s", 4),
                             [losses.KD(4.0), losses.KD(4.0, input_view=Mixup(), name="kd_mix")],
                             [0.5, 0.5], student_loss_weight=0.1)
    distiller.compile(optimizer="sgd", loss=SCE)
    history = distiller.fit(train, validation_data=train, epochs=1, verbose=0).history
    # The mixup term runs on training-only views: it is logged in training, not in validation
    # (it used to read a tracker never updated there: 0).
    assert history["kd_mix"][0] > 0
    assert "val_kd_mix" not in history
    assert history["val_kd"][0] > 0
    logs = distiller.evaluate(x, y, verbose=0, return_dict=True)
    assert "kd_mix" not in logs and logs["kd"] > 0


def test_logged_loss_is_weighted_sum_of_terms():
    x, y = _data()
    distiller = kd.Distiller(conv_net("t", 8), conv_net("s", 4), [losses.KD(4.0)], [0.9],
                             student_loss_weight=0.1)
    distiller.compile(optimizer=keras.optimizers.SGD(0.0), loss=SCE)
    logs = distiller.evaluate(x, y, batch_size=32, verbose=0, return_dict=True)
    assert logs["loss"] == pytest.approx(0.1 * logs["student_loss"] + 0.9 * logs["kd"], rel=1e-5)


def test_student_and_teacher_run_once_per_step_with_several_taps():
    x, y = _data(n=24)
    teacher, student = _counted_net("t", 4), _counted_net("s", 4)
    terms = [losses.KD(4.0), _feature_mse("stage1"), _feature_mse("stage2")]
    distiller = kd.Distiller(teacher, student, terms)
    distiller.compile(optimizer="sgd", loss=SCE)
    distiller.fit(x, y, batch_size=8, epochs=1, verbose=0)  # 3 steps
    assert float(student.get_layer("counter").calls) == 3.0
    assert float(teacher.get_layer("counter").calls) == 3.0


def test_teacher_is_frozen_and_its_batchnorm_statistics_never_change():
    x, y = _data()
    teacher, student = conv_net("t", 4, batch_norm=True, seed=1), conv_net("s", 4)
    before = [w.copy() for w in teacher.get_weights()]
    distiller = kd.Distiller(teacher, student, [losses.KD(4.0), _feature_mse("stage2")])
    distiller.compile(optimizer=keras.optimizers.SGD(0.5), loss=SCE)
    assert not any(v is w for v in distiller.trainable_variables for w in teacher.weights)
    student_before = [w.copy() for w in student.get_weights()]
    distiller.fit(x, y, batch_size=8, epochs=2, verbose=0)
    for a, b in zip(before, teacher.get_weights()):
        np.testing.assert_array_equal(a, b)  # includes moving_mean / moving_variance
    assert any(not np.allclose(a, b) for a, b in zip(student_before, student.get_weights()))


def test_callback_assigning_weight_variable_changes_epoch_two_loss():
    x, y = _data()
    distiller = kd.Distiller(conv_net("t", 8), conv_net("s", 4), [losses.KD(4.0)], [0.9],
                             student_loss_weight=0.1)
    # lr 0: weights never move, so only the weight variable can change the loss.
    distiller.compile(optimizer=keras.optimizers.SGD(0.0), loss=SCE)
    switch_off = VariableSchedule("kd", lambda epoch: 0.9 if epoch < 1 else 0.0)
    history = distiller.fit(x, y, batch_size=8, epochs=2, verbose=0, callbacks=[switch_off])
    loss, student_loss, kd_value = (history.history[k] for k in ("loss", "student_loss", "kd"))
    assert loss[0] == pytest.approx(0.1 * student_loss[0] + 0.9 * kd_value[0], rel=1e-5)
    assert loss[1] == pytest.approx(0.1 * student_loss[1], rel=1e-5)
    assert kd_value[1] == pytest.approx(kd_value[0], rel=1e-5) and kd_value[0] > 0


def test_schedule_weight_is_evaluated_at_the_optimizer_step():
    x, y = _data(n=8)
    x, y = np.concatenate([x, x]), np.concatenate([y, y])  # the same batch twice
    warmup = kd.schedules.LinearWarmup(1.0, warmup_steps=100)
    distiller = kd.Distiller(conv_net("t", 8), conv_net("s", 4), [losses.KD(4.0)], [warmup],
                             student_loss_weight=0.0)
    distiller.compile(optimizer=keras.optimizers.SGD(0.0), loss=SCE)
    history = distiller.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False)
    # steps 0 and 1: weights 0.00 and 0.01 -> mean logged total = 0.005 * kd
    assert history.history["loss"][0] == pytest.approx(0.005 * history.history["kd"][0], rel=1e-4)


def test_one_and_two_replicas_give_the_same_losses_and_weights():
    x, y = _data(n=16)

    def make():
        teacher = conv_net("t", 4, batch_norm=True, seed=1)
        student = conv_net("s", 4, batch_norm=False, seed=2)
        return kd.Distiller(teacher, student, [losses.KD(4.0), _feature_mse("stage2")],
                            [0.9, 0.5], student_loss_weight=0.1)

    single, double = assert_replica_equivalence(make, x, y, batch_size=8, steps=2)
    assert single["kd"][0] > 0


def test_nested_functional_model_tap():
    backbone = conv_net("backbone", 4)
    # The backbone is called on its OWN input: its layers stay reachable from outer's input.
    outer = keras.Model(backbone.input, keras.layers.Activation("linear", name="out")(
        backbone(backbone.input)), name="outer")
    assert "backbone" in [layer.name for layer in outer.layers]
    teacher = conv_net("t", 4, seed=3)
    distiller = kd.Distiller(teacher, outer, [keras.distillation.FeatureDistillation(
        "mse", "embedding", "backbone/embedding")])
    distiller.compile(optimizer="sgd", loss=SCE)
    x, y = _data(n=8)
    history = distiller.fit(x, y, batch_size=8, verbose=0)
    assert history.history["feature_distillation"][0] > 0


# ------------------------------------------------------------------ bad input
def test_different_class_counts_are_refused():
    with pytest.raises(ValueError, match=r"teacher predicts 3 classes but the student predicts 5.*num_classes=3"):
        kd.Distiller(conv_net("t", 8, num_classes=3), conv_net("s", 4, num_classes=5),
                     [losses.KD()])


def test_different_input_shapes_are_refused():
    with pytest.raises(ValueError, match="Resizing"):
        kd.Distiller(conv_net("t", 8, input_shape=(8, 8, 1)),
                     conv_net("s", 4, input_shape=(16, 16, 1)), [losses.KD()])


def test_feature_shape_mismatch_is_refused_at_construction():
    with pytest.raises(ValueError, match=r"teacher tap 'stage1' of shape \(8, 8, 8\).*\(8, 8, 4\).*FitNet"):
        kd.Distiller(conv_net("t", 8), conv_net("s", 4), [_feature_mse("stage1")])


def test_unknown_tap_lists_available_layers():
    with pytest.raises(ValueError, match=r"no layer named 'stage9'.*Available layers: \[.*'stage1'"):
        kd.Distiller(conv_net("t", 8), conv_net("s", 4), [_feature_mse("stage9")])


def test_subclassed_model_with_taps_is_refused():
    class Net(keras.Model):
        def __init__(self):
            super().__init__(name="subclassed")
            self.dense = keras.layers.Dense(3)

        def call(self, x):
            return self.dense(keras.ops.reshape(x, (-1, 64)))

    student = Net()
    student(np.zeros((1, 8, 8, 1), "float32"))
    with pytest.raises(ValueError, match="subclassed model.*Functional or Sequential"):
        kd.Distiller(conv_net("t", 8), student, [_feature_mse("stage1")])
    # Logits-only methods work with a subclassed student.
    distiller = kd.Distiller(conv_net("t", 8), student, [losses.KD()])
    distiller.compile(optimizer="sgd", loss=SCE)
    x, y = _data(n=8)
    assert np.isfinite(distiller.fit(x, y, verbose=0).history["kd"][0])


def test_nested_model_called_on_new_input_explains_the_fix():
    inner = conv_net("inner", 4)
    new_input = keras.Input((8, 8, 1))
    outer = keras.Model(new_input, inner(new_input), name="outer")
    with pytest.raises(ValueError, match=r"not connected.*keras.Model\(inner.input"):
        kd.Distiller(conv_net("t", 8), outer, [keras.distillation.FeatureDistillation(
            "mse", "stage1", "inner/stage1")])


def test_term_needing_labels_on_unlabeled_dataset():
    teacher, student = conv_net("t", 8), conv_net("s", 4)
    masked = losses.ClassMask(losses.KD(), num_classes=3)
    distiller = kd.Distiller(teacher, student, [masked])
    distiller.compile(optimizer="sgd")
    x, _ = _data(n=8)
    with pytest.raises(ValueError, match=r"need integer labels.*Yield \(inputs, labels\)"):
        distiller.fit(tf.data.Dataset.from_tensor_slices(x).batch(4), verbose=0)


def test_unlabeled_distillation_without_supervised_loss():
    distiller = kd.Distiller(conv_net("t", 8), conv_net("s", 4), [losses.KD()])
    distiller.compile(optimizer="sgd")
    x, _ = _data(n=8)
    history = distiller.fit(tf.data.Dataset.from_tensor_slices(x).batch(4), verbose=0)
    assert history.history["loss"][0] == pytest.approx(history.history["kd"][0], rel=1e-5)


def test_one_hot_labels_for_label_terms_are_refused():
    distiller = kd.Distiller(conv_net("t", 8), conv_net("s", 4),
                             [losses.ClassMask(losses.KD(), num_classes=3)])
    distiller.compile(optimizer="sgd", loss=keras.losses.CategoricalCrossentropy(from_logits=True))
    x, y = _data(n=8)
    with pytest.raises(ValueError, match=r"one-hot.*np.argmax"):
        distiller.fit(x, keras.utils.to_categorical(y, 3), verbose=0)


def test_weights_count_must_match_terms():
    with pytest.raises(ValueError, match="one weight per term"):
        kd.Distiller(conv_net("t", 8), conv_net("s", 4), [losses.KD()], [0.5, 0.5])


def test_get_config_round_trip_and_weights_save(tmp_path):
    distiller = kd.Distiller(conv_net("t", 8), conv_net("s", 4), [losses.KD(3.0)], [0.7],
                             student_loss_weight=0.3)
    restored = kd.Distiller.from_config(distiller.get_config())
    assert restored.get_term("kd").temperature == 3.0
    assert float(restored.loss_weight("kd")) == pytest.approx(0.7)
    assert float(restored.student_loss_weight) == pytest.approx(0.3)
    distiller.save_weights(tmp_path / "d.weights.h5")  # built without a fit
    restored.load_weights(tmp_path / "d.weights.h5")
    x, _ = _data(n=4)
    np.testing.assert_allclose(restored.predict(x, verbose=0), distiller.predict(x, verbose=0))
