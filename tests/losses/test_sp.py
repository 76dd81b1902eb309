"""SP (Tung & Mori 2019): hand-computed values and contract checks.

Hand derivation (the 2x2 case). Teacher F_t = I (two orthogonal unit rows):
G_t = F_t F_t^T = I, rows already unit: G_t = [[1, 0], [0, 1]].
Student F_s = [[1, 0], [1, 1]]: F_s F_s^T = [[1, 1], [1, 2]]; dividing each
row by its norm (sqrt(2), sqrt(5)): G_s = [[1/sqrt2, 1/sqrt2], [1/sqrt5, 2/sqrt5]].
||G_s - G_t||_F^2 = (1 - 1/sqrt2)^2 + 1/2 + 1/5 + (1 - 2/sqrt5)^2
                  = 4 - sqrt(2) - 4/sqrt(5) = 0.796932;   / b^2 = / 4 -> 0.199233.
"""

import numpy as np
import keras
import pytest

from keras_distill import Distiller
from keras_distill.losses.sp import SP
from keras_distill.testing import (assert_replica_equivalence, conv_net, teacher_gradients,
                                   term_value)

TEACHER = {"f": np.eye(2, dtype="float32")}
STUDENT = {"f": np.array([[1, 0], [1, 1]], "float32")}


def test_golden_value():
    assert term_value(SP("f", "f"), TEACHER, STUDENT) == pytest.approx(0.199233, abs=1e-6)
    # Symmetric in its two matrices: swapping the networks gives the same number.
    assert term_value(SP("f", "f"), STUDENT, TEACHER) == pytest.approx(0.199233, abs=1e-6)


def test_zero_when_student_equals_teacher_or_is_rescaled():
    maps = np.random.default_rng(0).normal(size=(6, 4, 4, 3)).astype("float32")
    assert term_value(SP(), {"stage3": maps}, {"stage3": maps}) == pytest.approx(0.0, abs=1e-7)
    assert term_value(SP(), {"stage3": maps}, {"stage3": 5.0 * maps}) == \
        pytest.approx(0.0, abs=1e-6)


def test_maps_of_different_shapes_are_compared_through_flattened_gram_matrices():
    rng = np.random.default_rng(1)
    teacher = {"stage3": rng.normal(size=(5, 4, 4, 8)).astype("float32")}
    student = {"stage2": rng.normal(size=(5, 8, 8, 2)).astype("float32")}

    def gram(f):
        f = f.reshape(len(f), -1).astype("float64")
        g = f @ f.T
        return g / np.linalg.norm(g, axis=1, keepdims=True)

    expected = np.sum((gram(student["stage2"]) - gram(teacher["stage3"])) ** 2) / 25
    assert term_value(SP("stage3", "stage2"), teacher, student) == pytest.approx(expected, rel=1e-5)


def test_no_gradient_reaches_teacher_and_student_gets_one():
    rng = np.random.default_rng(2)
    teacher = {"stage3": rng.normal(size=(4, 2, 2, 3)).astype("float32")}
    student = {"stage3": rng.normal(size=(4, 2, 2, 3)).astype("float32")}
    t_grads, s_grads = teacher_gradients(SP(), teacher, student)
    assert t_grads["stage3"] is None
    assert np.abs(s_grads["stage3"].numpy()).sum() > 0


def test_one_and_two_replicas_give_the_same_losses_and_weights():
    rng = np.random.default_rng(0)
    x, y = rng.random((16, 8, 8, 1)).astype("float32"), rng.integers(0, 3, 16)

    def make():
        teacher = conv_net("t", 4, batch_norm=True, seed=1)
        student = conv_net("s", 4, batch_norm=False, seed=2)
        return Distiller(teacher, student, [SP("stage2", "stage2")], [100.0],
                         student_loss_weight=1.0)

    single, _ = assert_replica_equivalence(make, x, y, batch_size=8, steps=2)
    assert single["sp"][0] > 0


def test_serialization_round_trip():
    term = SP("stage4", "stage3", name="sim")
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(term))
    assert isinstance(restored, SP)
    assert (restored.teacher_taps, restored.student_taps, restored.name) == \
        (("stage4",), ("stage3",), "sim")
    assert term_value(restored, {"stage4": TEACHER["f"]}, {"stage3": STUDENT["f"]}) == \
        pytest.approx(0.199233, abs=1e-6)


def test_unknown_tap_is_reported_by_the_distiller():
    with pytest.raises(ValueError, match="no layer named 'stage9'"):
        Distiller(conv_net("t", 4), conv_net("s", 4), [SP("stage9", "stage2")])
