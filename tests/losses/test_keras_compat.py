"""keras.distillation loss objects are converted into correct keras_distill terms."""

import numpy as np
import keras
import pytest

from keras_distill import losses
from keras_distill.testing import term_value

TEACHER = np.array([[1.0, 2.0, 3.0]], "float32")
STUDENT = np.array([[3.0, 2.0, 1.0]], "float32")


def test_logits_distillation_default_becomes_hinton_kd():
    converted = losses.from_keras(keras.distillation.LogitsDistillation(temperature=4.0))
    assert isinstance(converted, losses.KD) and converted.temperature == 4.0
    # 16 * KL(p || q) for the reversed logits (derived in test_kd.py): 1.319632
    assert term_value(converted, {"logits": TEACHER}, {"logits": STUDENT}) == \
        pytest.approx(1.319632, abs=1e-5)


def test_logits_distillation_with_another_loss_uses_softened_distributions_and_T2():
    converted = losses.from_keras(keras.distillation.LogitsDistillation(
        temperature=2.0, loss="mean_squared_error"))
    p = np.exp(TEACHER / 2) / np.exp(TEACHER / 2).sum()
    q = np.exp(STUDENT / 2) / np.exp(STUDENT / 2).sum()
    expected = 4.0 * np.mean((p - q) ** 2)  # T^2 * MSE(softmax(z_t/T), softmax(z_s/T))
    assert term_value(converted, {"logits": TEACHER}, {"logits": STUDENT}) == \
        pytest.approx(expected, rel=1e-5)


def test_feature_distillation_reads_the_named_taps():
    converted = losses.from_keras(keras.distillation.FeatureDistillation(
        "mse", teacher_layer_name="stage2", student_layer_name="stage1"))
    assert converted.teacher_taps == ("stage2",) and converted.student_taps == ("stage1",)
    teacher = {"logits": TEACHER, "stage2": np.array([[[1.0, 2.0], [3.0, 4.0]]], "float32")}
    student = {"logits": STUDENT, "stage1": np.array([[[1.0, 2.0], [3.0, 2.0]]], "float32")}
    # mean over features of (t - s)^2 = (0 + 0 + 0 + 4) / 4 = 1
    assert term_value(converted, teacher, student) == pytest.approx(1.0)


def test_anything_else_is_refused_with_what_is_accepted():
    with pytest.raises(TypeError, match="Pass a keras_distill.losses.DistillationLoss"):
        losses.from_keras(keras.losses.MeanSquaredError())
