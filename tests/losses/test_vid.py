"""VID (Ahn et al. 2019): hand values, the learned variance, contract checks.

Hand derivation of the golden value. One example, one pair of 1x1 maps
with one channel: student feature x = 1, teacher feature t = 3. Regressor
with width 1 and weights w1 = 1, w2 = 1, w3 = 2 (no bias):
  mu = 2 * relu(1 * relu(1 * x)) = 2.
Initial variance sigma^2 = softplus(softplus^-1(5 - 1e-5)) + 1e-5 = 5.
  L = 0.5 * ((mu - t)^2 / sigma^2 + log sigma^2)
    = 0.5 * (1 / 5 + log 5) = 0.5 * (0.2 + 1.609438) = 0.904719.
Pooling: a 2x2 student map [[1, 3], [0, 0]] is average-pooled onto the
teacher's 1x1 first (mean 1), so the value is again 0.904719.
When mu equals t the loss is its minimum over mu, 0.5 * log 5 = 0.804719.
"""

import math

import numpy as np
import keras
import pytest
import tensorflow as tf

import keras_distill as kd
from keras_distill.adapters.regressors import VariationalRegressor
from keras_distill.losses.vid import VID
from keras_distill.testing import (
    assert_replica_equivalence, build_term, conv_net, random_outputs, teacher_gradients,
    term_value)


def _golden(student_map, teacher_value=3.0, w3=2.0):
    logits = np.zeros((1, 3), "float32")
    teacher = {"logits": logits, "f": np.full((1, 1, 1, 1), teacher_value, "float32")}
    student = {"logits": logits, "f": np.asarray(student_map, "float32")}
    term = build_term(VID(["f"]), teacher, student)
    regressor = term.regressors[0]
    for projection, weight in zip(regressor.projections, (1.0, 1.0, w3)):
        projection.set_weights([np.full((1, 1), weight, "float32")])
    return term, teacher, student


def test_golden_value():
    term, teacher, student = _golden(np.ones((1, 1, 1, 1)))
    assert float(term.regressors[0].variance()[0]) == pytest.approx(5.0, abs=1e-5)
    assert term_value(term, teacher, student) == pytest.approx(0.904719, abs=1e-5)


def test_larger_student_map_is_pooled_onto_the_teacher():
    term, teacher, student = _golden(np.array([[1.0, 3.0], [0.0, 0.0]]).reshape(1, 2, 2, 1))
    assert term_value(term, teacher, student) == pytest.approx(0.904719, abs=1e-5)


def test_minimum_over_the_mean_is_half_log_variance():
    term, teacher, student = _golden(np.ones((1, 1, 1, 1)), teacher_value=1.0, w3=1.0)
    assert term_value(term, teacher, student) == pytest.approx(0.5 * math.log(5.0), abs=1e-5)


def test_vector_features():
    teacher, student, _ = random_outputs(batch=4, taps={"embedding": ((6,), (4,))})
    term = build_term(VID(["embedding"]), teacher, student)
    assert np.isfinite(term_value(term, teacher, student))


def test_student_regressor_and_variance_get_gradients_teacher_none():
    teacher, student, _ = random_outputs(batch=4, taps={"s1": ((4, 4, 6), (8, 8, 3))})
    term = build_term(VID(["s1"]), teacher, student)
    t_grads, s_grads = teacher_gradients(term, teacher, student)
    assert t_grads["s1"] is None
    assert np.abs(s_grads["s1"].numpy()).sum() > 0
    regressor = term.regressors[0]
    with tf.GradientTape() as tape:
        value = term(0.0, {"teacher": teacher, "student": student})
    grads = tape.gradient(value, regressor.trainable_variables)
    assert len(grads) == 4 and all(g is not None and np.abs(g.numpy()).sum() > 0 for g in grads)


def test_distiller_trains_the_variance():
    rng = np.random.default_rng(0)
    x, y = rng.random((16, 8, 8, 1)).astype("float32"), rng.integers(0, 3, 16)
    distiller = kd.Distiller(conv_net("t", 8, seed=1), conv_net("s", 4, seed=2),
                             [VID(["stage1", "stage2"])], [1.0])
    distiller.compile(optimizer=keras.optimizers.SGD(0.1),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    assert len(distiller.adapters) == 2
    distiller.fit(x, y, batch_size=8, epochs=1, verbose=0)
    variance = keras.ops.convert_to_numpy(distiller.adapters[0].variance())
    assert not np.allclose(variance, 5.0)


def test_one_and_two_replicas_agree():
    rng = np.random.default_rng(0)
    x, y = rng.random((16, 8, 8, 1)).astype("float32"), rng.integers(0, 3, 16)

    def make():
        return kd.Distiller(conv_net("t", 8, seed=1), conv_net("s", 4, batch_norm=False, seed=2),
                            [VID(["stage1", "stage2"])], [1.0], student_loss_weight=1.0)

    single, _ = assert_replica_equivalence(make, x, y, batch_size=8, steps=2)
    assert single["vid"][0] > 0


def test_serialization_round_trip():
    term = VID(["stage2"], ["stage3"], init_variance=2.0, eps=1e-4, mid_channels=16, name="v")
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(term))
    assert isinstance(restored, VID)
    assert (restored.teacher_taps, restored.student_taps, restored.init_variance, restored.eps,
            restored.mid_channels, restored.name) == (("stage2",), ("stage3",), 2.0, 1e-4, 16, "v")
    regressor = VariationalRegressor(8, mid_channels=4, init_variance=2.0)
    assert VariationalRegressor.from_config(regressor.get_config()).get_config() == \
        regressor.get_config()


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="init_variance > eps"):
        VID(["stage1"], init_variance=0.0)
    with pytest.raises(ValueError, match="one to one"):
        VID(["stage1", "stage2"], ["stage1"])
    with pytest.raises(ValueError, match="init_variance must be > eps"):
        VariationalRegressor(4, init_variance=1e-6)
    teacher, student, _ = random_outputs(batch=2, taps={"s1": ((6, 6, 3), (4, 4, 3))})
    with pytest.raises(ValueError, match="not integer multiples"):
        build_term(VID(["s1"]), teacher, student)
    teacher, student, _ = random_outputs(batch=2, taps={"s1": ((6,), (4, 4, 3))})
    with pytest.raises(ValueError, match="same rank"):
        build_term(VID(["s1"]), teacher, student)
