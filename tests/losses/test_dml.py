"""DML term (Zhang et al. 2018): hand-computed values and contract checks.

Hand derivation. Member A has logits z_A = [0, 0, 0], member B z_B = [ln 2, 0, 0]:
    p_A = [1/3, 1/3, 1/3],  p_B = [2, 1, 1] / 4 = [0.5, 0.25, 0.25].
At T = 1 the term for member A (peer B plays the teacher) is
    KL(p_B || p_A) = 0.5 ln(0.5 * 3) + 2 * 0.25 ln(0.25 * 3)
                   = 0.5 ln 1.5 + 0.5 ln 0.75 = 0.5 ln 1.125 = 0.0588915,
and for member B (peer A the teacher)
    KL(p_A || p_B) = 1/3 [ln((1/3) / 0.5) + 2 ln((1/3) / 0.25)]
                   = 1/3 ln((2/3) * (4/3)^2) = 1/3 ln(32/27) = 0.0566330.
The two directions differ: KL is asymmetric, so the peer must be the first
argument. At T = 4 with z_t = [1, 2, 3], z_s = [3, 2, 1] the value is
16 * 0.082477 = 1.319632 (derived in tests/losses/test_kd.py).
The 1-vs-2 replica check of DML runs in a Cohort: tests/test_cohort.py.
"""

import math

import numpy as np
import keras
import pytest

from keras_distill.losses.dml import DML
from keras_distill.testing import random_outputs, teacher_gradients, term_value

A = np.array([[0.0, 0.0, 0.0]], "float32")
B = np.array([[math.log(2.0), 0.0, 0.0]], "float32")


def test_golden_values_both_directions():
    assert term_value(DML(), {"logits": B}, {"logits": A}) == pytest.approx(0.0588915, abs=1e-6)
    assert term_value(DML(), {"logits": A}, {"logits": B}) == pytest.approx(0.0566330, abs=1e-6)


def test_temperature_keeps_t_squared():
    teacher = np.array([[1.0, 2.0, 3.0]], "float32")
    student = np.array([[3.0, 2.0, 1.0]], "float32")
    assert term_value(DML(temperature=4.0), {"logits": teacher}, {"logits": student}) == \
        pytest.approx(1.319632, abs=1e-5)


def test_zero_when_member_equals_peer():
    teacher, _, _ = random_outputs(batch=8, num_classes=10)
    assert term_value(DML(), teacher, teacher) == 0.0


def test_gradient_reaches_the_member_not_the_peer():
    teacher, student, _ = random_outputs(batch=4, num_classes=5, seed=3)
    t_grads, s_grads = teacher_gradients(DML(), teacher, student)
    assert t_grads["logits"] is None
    # d/dz_s KL(p || softmax(z_s)) = (q - p) per example, / batch for the mean.
    p = keras.ops.convert_to_numpy(keras.ops.softmax(teacher["logits"]))
    q = keras.ops.convert_to_numpy(keras.ops.softmax(student["logits"]))
    np.testing.assert_allclose(s_grads["logits"].numpy(), (q - p) / 4, atol=1e-6)


def test_serialization_round_trip():
    term = DML(temperature=2.0, name="mutual")
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(term))
    assert isinstance(restored, DML)
    assert restored.temperature == 2.0 and restored.name == "mutual"
    assert term_value(restored, {"logits": B}, {"logits": A}) == \
        pytest.approx(term_value(term, {"logits": B}, {"logits": A}))


def test_bad_temperature_is_refused():
    with pytest.raises(ValueError, match="DML temperature must be > 0.*paper uses 1"):
        DML(temperature=-1.0)
