"""AT (Zagoruyko & Komodakis 2017): hand values, pooling, contract checks.

Hand derivation of the golden value (p = 2, one example, two stage pairs):

Pair 1, equal 2x2 maps.
  Teacher, one channel [[1, 0], [0, 0]]: mean_c F^2 = [1, 0, 0, 0],
    normalised a_t = [1, 0, 0, 0].
  Student, two channels: ones and zeros: mean_c F^2 = [0.5, 0.5, 0.5, 0.5],
    normalised a_s = [0.5, 0.5, 0.5, 0.5] (channel counts may differ).
  a_s - a_t = [-0.5, 0.5, 0.5, 0.5]; mean of squares = 0.25.
Pair 2, student 4x4, teacher 2x2: the student map is average-pooled 2x2 first.
  Teacher [[0, 1], [0, 0]]: a_t = [0, 1, 0, 0].
  Student: top-left 2x2 block [[2, 0], [0, 0]], zeros elsewhere: pooled
    [[0.5, 0], [0, 0]] -> mean_c F^2 = [0.25, 0, 0, 0] -> a_s = [1, 0, 0, 0].
  a_s - a_t = [1, -1, 0, 0]; mean of squares = 0.5.
Total: 0.25 + 0.5 = 0.75.
"""

import numpy as np
import keras
import pytest

import keras_distill as kd
from keras_distill.losses.attention_transfer import AT
from keras_distill.ops import attention_map, pool_factors
from keras_distill.testing import (
    assert_replica_equivalence, build_term, conv_net, random_outputs, teacher_gradients,
    term_value)


def _golden_outputs():
    t1 = np.array([[1.0, 0.0], [0.0, 0.0]], "float32").reshape(1, 2, 2, 1)
    s1 = np.stack([np.ones((2, 2)), np.zeros((2, 2))], axis=-1)[None].astype("float32")
    t2 = np.array([[0.0, 1.0], [0.0, 0.0]], "float32").reshape(1, 2, 2, 1)
    s2 = np.zeros((1, 4, 4, 1), "float32")
    s2[0, 0, 0, 0] = 2.0
    logits = np.zeros((1, 3), "float32")
    return {"logits": logits, "a": t1, "b": t2}, {"logits": logits, "a": s1, "b": s2}


def test_golden_value():
    teacher, student = _golden_outputs()
    term = build_term(AT(["a", "b"]), teacher, student)
    assert term_value(term, teacher, student) == pytest.approx(0.75, abs=1e-6)


def test_attention_map_is_unit_norm_and_uses_absolute_values():
    feature = np.array([[-1.0, 1.0], [0.0, 0.0]], "float32").reshape(1, 2, 2, 1)
    a = keras.ops.convert_to_numpy(attention_map(feature, p=1.0))
    np.testing.assert_allclose(a, [[1 / np.sqrt(2), 1 / np.sqrt(2), 0.0, 0.0]], atol=1e-6)
    zero = keras.ops.convert_to_numpy(attention_map(np.zeros((1, 2, 2, 3), "float32")))
    assert np.all(np.isfinite(zero)) and np.all(zero == 0)


def test_zero_when_student_equals_teacher():
    teacher, _, _ = random_outputs(batch=4, taps={"s1": ((8, 8, 4), (8, 8, 4)),
                                                  "s2": ((4, 4, 8), (4, 4, 8))})
    term = build_term(AT(["s1", "s2"]), teacher, dict(teacher))
    assert term_value(term, teacher, dict(teacher)) == pytest.approx(0.0, abs=1e-7)


def test_student_gets_gradient_teacher_none():
    teacher, student, _ = random_outputs(batch=4, taps={"s1": ((8, 8, 4), (8, 8, 2))})
    term = build_term(AT(["s1"]), teacher, student)
    t_grads, s_grads = teacher_gradients(term, teacher, student)
    assert t_grads["s1"] is None
    assert np.abs(s_grads["s1"].numpy()).sum() > 0


def test_one_and_two_replicas_agree():
    rng = np.random.default_rng(0)
    x, y = rng.random((16, 8, 8, 1)).astype("float32"), rng.integers(0, 3, 16)

    def make():
        return kd.Distiller(conv_net("t", 8, seed=1), conv_net("s", 4, batch_norm=False, seed=2),
                            [AT(["stage1", "stage2"])], [1000.0], student_loss_weight=1.0)

    single, _ = assert_replica_equivalence(make, x, y, batch_size=8, steps=2)
    assert single["at"][0] > 0


def test_serialization_round_trip():
    term = AT(["stage1", "stage3"], ["stage2", "stage3"], p=4.0, name="attention")
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(term))
    assert isinstance(restored, AT)
    assert (restored.teacher_taps, restored.student_taps, restored.p, restored.name) == \
        (("stage1", "stage3"), ("stage2", "stage3"), 4.0, "attention")
    teacher, student = _golden_outputs()
    copy = build_term(AT.from_config(AT(["a", "b"]).get_config()), teacher, student)
    assert term_value(copy, teacher, student) == pytest.approx(0.75, abs=1e-6)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="one to one"):
        AT(["stage1", "stage2"], ["stage1"])
    with pytest.raises(ValueError, match="p must be > 0"):
        AT(["stage1"], p=0.0)
    with pytest.raises(ValueError, match="non-empty list of layer names"):
        AT([])
    with pytest.raises(ValueError, match="not integer multiples"):
        pool_factors((None, 6, 6, 3), (None, 4, 4, 3), "AT pair")
    teacher, student, _ = random_outputs(batch=2, taps={"s1": ((6, 6, 3), (4, 4, 3))})
    with pytest.raises(ValueError, match=r"AT pair \(teacher 's1', student 's1'\).*integer"):
        build_term(AT(["s1"]), teacher, student)
    teacher, student, _ = random_outputs(batch=2, taps={"e": ((8,), (8,))})
    with pytest.raises(ValueError, match="4-D feature maps"):
        build_term(AT(["e"]), teacher, student)
