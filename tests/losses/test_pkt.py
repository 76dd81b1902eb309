"""PKT (Passalis & Tefas 2018): hand-computed values and contract checks.

Hand derivation. Teacher t0 = (1, 0), t1 = (0, 1): cosines [[1, 0], [0, 1]],
mapped by (c + 1) / 2 to [[1, 1/2], [1/2, 1]], rows normalised:
p^t = [[2/3, 1/3], [1/3, 2/3]]. Student s0 = s1 = (1, 0): cosines all 1,
kernel all 1, p^s = [[1/2, 1/2], [1/2, 1/2]].
Each row's KL: 2/3 log(4/3) + 1/3 log(2/3) = 0.191788 - 0.135155 = 0.056633.
The reference averages over the b^2 = 4 entries: 2 * 0.056633 / 4 = 0.028317.
(eps = 1e-7 inside the log moves this by < 1e-6.)
"""

import numpy as np
import keras
import pytest

from keras_distill import Distiller
from keras_distill.losses.pkt import PKT
from keras_distill.testing import (assert_replica_equivalence, conv_net, teacher_gradients,
                                   term_value)

TEACHER = {"embedding": np.eye(2, dtype="float32")}
STUDENT = {"embedding": np.array([[1, 0], [1, 0]], "float32")}


def test_golden_value():
    assert term_value(PKT(), TEACHER, STUDENT) == pytest.approx(0.028317, abs=1e-6)


def test_matches_a_numpy_reference_on_random_features():
    rng = np.random.default_rng(3)
    t, s = rng.normal(size=(6, 5)), rng.normal(size=(6, 3))

    def probabilities(f):
        f = f / (np.linalg.norm(f, axis=1, keepdims=True) + 1e-7)
        k = (f @ f.T + 1) / 2
        return k / k.sum(axis=1, keepdims=True)

    p_t, p_s = probabilities(t), probabilities(s)
    expected = np.mean(p_t * np.log((p_t + 1e-7) / (p_s + 1e-7)))
    value = term_value(PKT(), {"embedding": t.astype("float32")},
                       {"embedding": s.astype("float32")})
    assert value == pytest.approx(expected, rel=1e-4)


def test_zero_when_student_equals_teacher_or_is_rescaled():
    features = np.random.default_rng(0).normal(size=(8, 5)).astype("float32")
    assert term_value(PKT(), {"embedding": features}, {"embedding": features}) == \
        pytest.approx(0.0, abs=1e-7)
    assert term_value(PKT(), {"embedding": features}, {"embedding": 2.0 * features}) == \
        pytest.approx(0.0, abs=1e-6)


def test_no_gradient_reaches_teacher_and_student_gets_one_even_for_zero_features():
    rng = np.random.default_rng(2)
    teacher = {"embedding": rng.normal(size=(4, 3)).astype("float32")}
    student = {"embedding": rng.normal(size=(4, 3)).astype("float32")}
    student["embedding"][0] = 0.0  # e.g. a dead ReLU embedding: no NaN
    t_grads, s_grads = teacher_gradients(PKT(), teacher, student)
    assert t_grads["embedding"] is None
    assert np.all(np.isfinite(s_grads["embedding"].numpy()))
    assert np.abs(s_grads["embedding"].numpy()).sum() > 0


def test_one_and_two_replicas_give_the_same_losses_and_weights():
    rng = np.random.default_rng(0)
    x, y = rng.random((16, 8, 8, 1)).astype("float32"), rng.integers(0, 3, 16)

    def make():
        teacher = conv_net("t", 4, batch_norm=True, seed=1)
        student = conv_net("s", 4, batch_norm=False, seed=2)
        return Distiller(teacher, student, [PKT()], [100.0], student_loss_weight=1.0)

    single, _ = assert_replica_equivalence(make, x, y, batch_size=8, steps=2)
    assert single["pkt"][0] > 0


def test_serialization_round_trip():
    term = PKT("stage3", "embedding", name="prob")
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(term))
    assert isinstance(restored, PKT)
    assert (restored.teacher_taps, restored.student_taps, restored.name) == \
        (("stage3",), ("embedding",), "prob")


def test_unknown_tap_is_reported_by_the_distiller():
    with pytest.raises(ValueError, match="no layer named 'embeding'"):
        Distiller(conv_net("t", 4), conv_net("s", 4), [PKT("embeding", "embedding")])
