"""DKD (Zhao et al. 2022): hand-computed values, the KD decomposition, contract checks.

Hand derivation used below: 3 classes, label y = 0, teacher logits
z_t = [2, 1, 0], student logits z_s = [0, 1, 2] (the teacher reversed).

T = 1:
  p = softmax(z_t) = [e^2, e, 1] / (e^2 + e + 1) = [0.665241, 0.244728, 0.090031]
  q = softmax(z_s) = [0.090031, 0.244728, 0.665241]
  TCKD: b_t = [p_0, 1 - p_0] = [0.665241, 0.334759], b_s = [0.090031, 0.909969].
        p_0 / q_0 = e^2 (shared normaliser), and
        (1 - p_0) / (1 - q_0) = (e + 1) / (e + e^2) = 1 / e, so
        TCKD = 0.665241 * 2 + 0.334759 * (-1) = 0.995723.
  NCKD: non-target logits [1, 0] (teacher) and [1, 2] (student):
        p_hat = [sigmoid(1), sigmoid(-1)] = [0.731059, 0.268941],
        q_hat = [0.268941, 0.731059], log(p_hat / q_hat) = [1, -1], so
        NCKD = 0.731059 - 0.268941 = 0.462117.
  DKD(alpha = 1, beta = 8) = 0.995723 + 8 * 0.462117 = 4.692660.
  Check against the paper's Eq. 1: TCKD + (1 - p_0) NCKD
        = 0.995723 + 0.334759 * 0.462117 = 1.150420 = KD(T = 1) of test_kd.py.
T = 4 (z / 4 = [0.5, 0.25, 0] and [0, 0.25, 0.5]):
  p_0 = e^0.5 / (e^0.5 + e^0.25 + 1) = 0.419229; log(p_0 / q_0) = 0.5;
  (1 - p_0) / (1 - q_0) = e^-0.25, so
  TCKD = 16 * (0.419229 * 0.5 - 0.580771 * 0.25) = 1.030747.
  NCKD = 16 * 0.25 * (sigmoid(0.25) - sigmoid(-0.25)) = 4 * 0.124353 = 0.497412.
  DKD(1, 8) = 1.030747 + 8 * 0.497412 = 5.010043.
"""

import numpy as np
import keras
import pytest
import tensorflow as tf

import keras_distill as kd
from keras_distill.losses.dkd import DKD, nckd, tckd
from keras_distill.testing import (
    assert_replica_equivalence, conv_net, random_outputs, teacher_gradients, term_value)

TEACHER = np.array([[2.0, 1.0, 0.0]], "float32")
STUDENT = np.array([[0.0, 1.0, 2.0]], "float32")
LABELS = np.array([0])
SCE = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


@pytest.mark.parametrize("temperature, tckd_value, nckd_value, dkd_value", [
    (1.0, 0.995723, 0.462117, 4.692660), (4.0, 1.030747, 0.497412, 5.010043)])
def test_golden_values(temperature, tckd_value, nckd_value, dkd_value):
    assert float(tckd(TEACHER, STUDENT, LABELS, temperature)[0]) == \
        pytest.approx(tckd_value, abs=1e-5)
    assert float(nckd(TEACHER, STUDENT, LABELS, temperature)[0]) == \
        pytest.approx(nckd_value, abs=1e-5)
    value = term_value(DKD(alpha=1.0, beta=8.0, temperature=temperature),
                       {"logits": TEACHER}, {"logits": STUDENT}, labels=LABELS)
    assert value == pytest.approx(dkd_value, abs=1e-5)


def test_kd_equals_tckd_plus_one_minus_p_target_times_nckd():
    # The paper's Eq. 1, on random logits, every example, several temperatures.
    teacher, student, labels = random_outputs(batch=16, num_classes=10, seed=3)
    for temperature in (1.0, 2.0, 4.0):
        kd_value = kd.losses.log_softmax_kl(teacher["logits"], student["logits"], temperature)
        p = tf.nn.softmax(teacher["logits"] / temperature).numpy()
        p_target = p[np.arange(16), labels]
        decomposed = (tckd(teacher["logits"], student["logits"], labels, temperature)
                      + (1 - p_target) * nckd(teacher["logits"], student["logits"], labels,
                                              temperature))
        np.testing.assert_allclose(decomposed, kd_value, rtol=1e-4, atol=1e-5)


def test_alpha_and_beta_weight_the_two_parts():
    teacher, student, labels = random_outputs(batch=8, num_classes=6, seed=1)
    args = (teacher["logits"], student["logits"], labels, 4.0)
    expected = float(np.mean(0.5 * tckd(*args) + 3.0 * nckd(*args)))
    value = term_value(DKD(alpha=0.5, beta=3.0), teacher, student, labels=labels)
    assert value == pytest.approx(expected, rel=1e-5)


def test_zero_when_student_equals_teacher():
    teacher, _, labels = random_outputs(batch=16, num_classes=10, seed=2)
    assert term_value(DKD(), teacher, dict(teacher), labels=labels) == pytest.approx(0.0, abs=1e-6)


def test_confident_teacher_stays_finite():
    # The teacher puts ~all mass on the target: 1 - p_target underflows in
    # probability space, the log-space computation stays finite.
    teacher = np.array([[60.0, 0.0, -5.0]], "float32")
    student = np.array([[0.0, 2.0, 1.0]], "float32")
    value = term_value(DKD(temperature=1.0), {"logits": teacher}, {"logits": student},
                       labels=LABELS)
    assert np.isfinite(value) and value > 0


def test_student_gets_gradient_and_teacher_none():
    teacher, student, labels = random_outputs(batch=4, num_classes=5, seed=4)
    t_grads, s_grads = teacher_gradients(DKD(), teacher, student, labels=labels)
    assert t_grads["logits"] is None
    assert np.abs(s_grads["logits"].numpy()).sum() > 0


def test_one_and_two_replicas_agree():
    rng = np.random.default_rng(0)
    x, y = rng.random((16, 8, 8, 1)).astype("float32"), rng.integers(0, 3, 16)

    def make():
        return kd.Distiller(conv_net("t", 4, seed=1), conv_net("s", 4, batch_norm=False, seed=2),
                            [DKD()], [1.0], student_loss_weight=1.0)

    single, _ = assert_replica_equivalence(make, x, y, batch_size=8, steps=2)
    assert single["dkd"][0] > 0


def test_distiller_logs_the_tckd_and_nckd_parts():
    rng = np.random.default_rng(0)
    x, y = rng.random((8, 8, 8, 1)).astype("float32"), rng.integers(0, 3, 8)
    distiller = kd.Distiller(conv_net("t", 8, seed=1), conv_net("s", 4, seed=2),
                             [DKD(alpha=2.0, beta=3.0)])
    distiller.compile(optimizer=keras.optimizers.SGD(0.1), loss=SCE)
    logs = distiller.fit(x, y, batch_size=8, epochs=1, verbose=0).history  # one step
    assert logs["dkd"][0] == pytest.approx(2.0 * logs["dkd_tckd"][0] + 3.0 * logs["dkd_nckd"][0],
                                           rel=1e-5)
    assert logs["dkd_tckd"][0] > 0 and logs["dkd_nckd"][0] > 0


def test_serialization_round_trip():
    term = DKD(alpha=0.5, beta=2.0, temperature=3.0, name="decoupled")
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(term))
    assert isinstance(restored, DKD) and restored.requires_labels
    assert (restored.alpha, restored.beta, restored.temperature, restored.name) == \
        (0.5, 2.0, 3.0, "decoupled")
    assert term_value(restored, {"logits": TEACHER}, {"logits": STUDENT}, labels=LABELS) == \
        pytest.approx(term_value(term, {"logits": TEACHER}, {"logits": STUDENT}, labels=LABELS))


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="temperature must be > 0"):
        DKD(temperature=0.0)
    with pytest.raises(ValueError, match="beta must be >= 0"):
        DKD(beta=-1.0)
    with pytest.raises(ValueError, match="alpha must be >= 0"):
        DKD(alpha=-0.1)
    with pytest.raises(ValueError, match="at least 2 classes"):
        DKD().build({"logits": (None, 1)}, {"logits": (None, 1)})


def test_distiller_without_labels_is_refused():
    x = np.random.default_rng(0).random((8, 8, 8, 1)).astype("float32")
    distiller = kd.Distiller(conv_net("t", 4), conv_net("s", 4), [DKD()])
    distiller.compile(optimizer="sgd")
    with pytest.raises(ValueError, match="need integer labels"):
        distiller.fit(tf.data.Dataset.from_tensor_slices(x).batch(8), epochs=1, verbose=0)
