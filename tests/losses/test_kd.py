"""KD (Hinton et al. 2015): hand-computed values and contract checks.

Hand derivation used below. Teacher logits z_t = [1, 2, 3], student logits
z_s = [3, 2, 1] (the teacher reversed). With a shared normaliser S,
log p_k - log q_k = (z_t,k - z_s,k) / T because both softmaxes share S.

T = 1:  p = [e, e^2, e^3] / (e + e^2 + e^3) = [0.090031, 0.244728, 0.665241]
        log p - log q = [-2, 0, 2]
        KL = 0.090031 * (-2) + 0.665241 * 2 = 1.150420;  T^2 KL = 1.150420
T = 4:  z_t / 4 = [0.25, 0.5, 0.75];  p = [1.284025, 1.648721, 2.117000] / 5.049746
          = [0.254275, 0.326496, 0.419229]
        log p - log q = [-0.5, 0, 0.5]
        KL = 0.5 * (0.419229 - 0.254275) = 0.082477;  T^2 KL = 16 * 0.082477 = 1.319632
Gradient: d/dz_s [T^2 KL(p || softmax(z_s / T))] = T (q - p) per example; the
batch mean divides by the batch size B.
"""

import numpy as np
import keras
import pytest
import tensorflow as tf

from keras_distill import losses
from keras_distill.testing import term_value

TEACHER = np.array([[1.0, 2.0, 3.0]], "float32")
STUDENT = np.array([[3.0, 2.0, 1.0]], "float32")


@pytest.mark.parametrize("temperature, expected", [(1.0, 1.150420), (4.0, 1.319632)])
def test_golden_values(temperature, expected):
    value = term_value(losses.KD(temperature), {"logits": TEACHER}, {"logits": STUDENT})
    assert value == pytest.approx(expected, abs=1e-5)


def test_zero_when_student_equals_teacher():
    logits = np.random.default_rng(0).normal(size=(16, 10)).astype("float32") * 5
    for temperature in (1.0, 4.0, 20.0):
        assert term_value(losses.KD(temperature), {"logits": logits}, {"logits": logits}) == 0.0


def test_sample_weight_honoured():
    teacher = np.concatenate([TEACHER, TEACHER])
    student = np.concatenate([STUDENT, TEACHER])  # row 1 matches: loss 0
    kd = losses.KD(4.0)
    # sum_over_batch_size: sum(w_i * L_i) / B
    assert term_value(kd, {"logits": teacher}, {"logits": student}) == pytest.approx(1.319632 / 2, abs=1e-5)
    assert term_value(kd, {"logits": teacher}, {"logits": student},
                      sample_weight=np.array([2.0, 1.0])) == pytest.approx(1.319632, abs=1e-5)
    assert term_value(kd, {"logits": teacher}, {"logits": student},
                      sample_weight=np.array([0.0, 1.0])) == 0.0


def test_gradient_is_T_times_q_minus_p_and_none_reaches_teacher():
    rng = np.random.default_rng(1)
    teacher = tf.Variable(rng.normal(size=(4, 6)).astype("float32"))
    student = tf.Variable(rng.normal(size=(4, 6)).astype("float32"))
    temperature = 3.0
    with tf.GradientTape(persistent=True) as tape:
        value = losses.KD(temperature)(0.0, {"teacher": {"logits": tf.stop_gradient(teacher)},
                                             "student": {"logits": student}})
    p = tf.nn.softmax(teacher / temperature).numpy()
    q = tf.nn.softmax(student / temperature).numpy()
    np.testing.assert_allclose(tape.gradient(value, student).numpy(),
                               temperature * (q - p) / 4, atol=1e-6)
    assert tape.gradient(value, teacher) is None


def test_teacher_and_student_not_swapped():
    # KL(p || q) is asymmetric; swapping the arguments must change the value.
    teacher = np.array([[4.0, 0.0, 0.0]], "float32")
    student = np.array([[1.0, 1.0, 0.0]], "float32")
    kd = losses.KD(1.0)
    p = tf.nn.softmax(teacher).numpy()[0]
    q = tf.nn.softmax(student).numpy()[0]
    expected = float(np.sum(p * (np.log(p) - np.log(q))))
    assert term_value(kd, {"logits": teacher}, {"logits": student}) == pytest.approx(expected, rel=1e-5)
    assert term_value(kd, {"logits": student}, {"logits": teacher}) != pytest.approx(expected, rel=1e-2)


def test_serialization_round_trip():
    kd = losses.KD(temperature=3.5, name="soft")
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(kd))
    assert isinstance(restored, losses.KD)
    assert restored.temperature == 3.5 and restored.name == "soft"
    assert term_value(restored, {"logits": TEACHER}, {"logits": STUDENT}) == \
        pytest.approx(term_value(kd, {"logits": TEACHER}, {"logits": STUDENT}))


def test_bad_temperature_is_refused():
    with pytest.raises(ValueError, match="temperature must be > 0"):
        losses.KD(temperature=0.0)


def test_keras_logits_distillation_is_converted_to_correct_kd():
    keras_loss = keras.distillation.LogitsDistillation(temperature=4.0)
    converted = losses.from_keras(keras_loss)
    assert isinstance(converted, losses.KD)
    assert term_value(converted, {"logits": TEACHER}, {"logits": STUDENT}) == \
        pytest.approx(1.319632, abs=1e-5)
