"""Tang et al. 2020 teacher-target transforms: hand-made 5-class example.

Teacher logits z_t = log p with p = [0.5, 0.2, 0.15, 0.1, 0.05], so at T = 1
softmax(z_t) = p exactly. The label is y = 2 (p_y = 0.15), K = 5.

* full:            t = p.
* label_smoothing: eps = 0.1: t = 0.9 * one_hot(2) + 0.1 / 5
                   = [0.02, 0.02, 0.92, 0.02, 0.02].
* partial (KD-pt): t_2 = 0.15, others (1 - 0.15) / 4 = 0.2125
                   -> [0.2125, 0.2125, 0.15, 0.2125, 0.2125].
* top_k, k = 1:    keep p_2 = 0.15 and the largest non-target p_0 = 0.5;
                   the rest 1 - 0.65 = 0.35 over the 3 others = 0.116667
                   -> [0.5, 0.116667, 0.15, 0.116667, 0.116667].
* top_k, k = 2:    keep 0.15, 0.5, 0.2; the rest 0.15 over 2 = 0.075
                   -> [0.5, 0.2, 0.15, 0.075, 0.075].
* top_k, k = 4 = K - 1: t = p; k = 0: t = partial.

Loss against a uniform student (z_s = 0, q = 1/5 at any T), T = 1:
KL(t || u) = sum_k t_k log t_k + log 5, log 5 = 1.609438.
* partial: 0.85 * log 0.2125 + 0.15 * log 0.15 + log 5
           = -1.316491 - 0.284568 + 1.609438 = 0.008379.
* top_k (k = 1): 0.5 log 0.5 + 0.15 log 0.15 + 0.35 log 0.116667 + log 5
           = -0.346574 - 0.284568 - 0.751952 + 1.609438 = 0.226344.
* label_smoothing: 0.92 log 0.92 + 0.08 log 0.02 + log 5
           = -0.076711 - 0.312962 + 1.609438 = 1.219765.
* reweight: p_y * CE = 0.15 * (-log 1/5) = 0.15 * 1.609438 = 0.241416.
"""

import numpy as np
import keras
import pytest

import keras_distill as kd
from keras_distill.losses.kd import KD
from keras_distill.losses.tang import MODES, TangKD, default_top_k
from keras_distill.testing import (assert_replica_equivalence, conv_net, random_outputs,
                                   teacher_gradients, term_value)

P = np.array([0.5, 0.2, 0.15, 0.1, 0.05])
TEACHER = np.log(P)[None].astype("float32")
UNIFORM = np.zeros((1, 5), "float32")
LABEL = np.array([2])


def _target(mode, **kwargs):
    term = TangKD(mode=mode, temperature=1.0, **kwargs)
    return np.asarray(term.target(TEACHER, LABEL))[0]


@pytest.mark.parametrize("mode, kwargs, expected", [
    ("full", {}, P),
    ("label_smoothing", {}, [0.02, 0.02, 0.92, 0.02, 0.02]),
    ("partial", {}, [0.2125, 0.2125, 0.15, 0.2125, 0.2125]),
    ("top_k", {"top_k": 1}, [0.5, 0.35 / 3, 0.15, 0.35 / 3, 0.35 / 3]),
    ("top_k", {"top_k": 2}, [0.5, 0.2, 0.15, 0.075, 0.075]),
    ("top_k", {"top_k": 4}, P),
    ("top_k", {"top_k": 0}, [0.2125, 0.2125, 0.15, 0.2125, 0.2125]),
    ("top_k", {}, [0.5, 0.35 / 3, 0.15, 0.35 / 3, 0.35 / 3]),  # default ceil(5/20) = 1
])
def test_targets_on_the_hand_made_example(mode, kwargs, expected):
    np.testing.assert_allclose(_target(mode, **kwargs), expected, atol=1e-6)


@pytest.mark.parametrize("mode, kwargs, expected", [
    ("partial", {}, 0.008379), ("top_k", {"top_k": 1}, 0.226344),
    ("label_smoothing", {}, 1.219765), ("reweight", {}, 0.241416)])
def test_golden_losses(mode, kwargs, expected):
    term = TangKD(mode=mode, temperature=1.0, **kwargs)
    value = term_value(term, {"logits": TEACHER}, {"logits": UNIFORM}, LABEL)
    assert value == pytest.approx(expected, abs=2e-6)


@pytest.mark.parametrize("num_classes", [10, 100])
@pytest.mark.parametrize("mode", ["full", "label_smoothing", "partial", "top_k"])
def test_targets_sum_to_one(mode, num_classes):
    teacher, _, labels = random_outputs(batch=16, num_classes=num_classes, seed=4)
    target = np.asarray(TangKD(mode=mode).target(teacher["logits"] * 3, labels))
    np.testing.assert_allclose(target.sum(axis=-1), np.ones(16), atol=1e-5)
    assert (target >= 0).all()


def test_full_equals_plain_kd_exactly():
    teacher, student, labels = random_outputs(batch=8, num_classes=10, seed=5)
    for temperature in (1.0, 4.0, 7.5):
        assert term_value(TangKD("full", temperature), teacher, student, labels) == \
            term_value(KD(temperature), teacher, student, labels)


def test_default_top_k_is_proportional():
    assert (default_top_k(100), default_top_k(10), default_top_k(1000)) == (5, 1, 50)


def test_zero_when_student_matches_the_target():
    # full: student == teacher; partial: a student whose softmax is the target itself.
    assert term_value(TangKD("full", 4.0), {"logits": TEACHER}, {"logits": TEACHER}) == 0.0
    target = _target("partial")
    value = term_value(TangKD("partial", 1.0), {"logits": TEACHER},
                       {"logits": np.log(target)[None].astype("float32")}, LABEL)
    assert value == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("mode", MODES)
def test_no_gradient_reaches_the_teacher(mode):
    teacher, student, labels = random_outputs(batch=4, num_classes=6, seed=6)
    t_grads, s_grads = teacher_gradients(TangKD(mode), teacher, student, labels)
    assert t_grads["logits"] is None
    assert np.abs(np.asarray(s_grads["logits"])).sum() > 0


@pytest.mark.parametrize("mode", MODES)
def test_serialization_round_trip(mode):
    term = TangKD(mode=mode, temperature=2.0, epsilon=0.2, top_k=3, weight_temperature=2.0)
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(term))
    assert isinstance(restored, TangKD) and restored.get_config() == term.get_config()
    teacher, student, labels = random_outputs(batch=4, num_classes=6, seed=7)
    assert term_value(restored, teacher, student, labels) == \
        pytest.approx(term_value(term, teacher, student, labels))


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"mode must be one of \('full'"):
        TangKD(mode="topk")
    with pytest.raises(ValueError, match="temperatures must be > 0"):
        TangKD(temperature=0.0)
    with pytest.raises(ValueError, match=r"epsilon must be in \[0, 1\)"):
        TangKD(mode="label_smoothing", epsilon=1.0)
    with pytest.raises(ValueError, match="top_k must be an integer >= 0"):
        TangKD(mode="top_k", top_k=-1)


def test_one_and_two_replicas_agree():
    rng = np.random.default_rng(0)
    x, y = rng.random((16, 8, 8, 1)).astype("float32"), rng.integers(0, 3, 16)

    def make():
        teacher = conv_net("t", 4, batch_norm=True, seed=1)
        student = conv_net("s", 4, batch_norm=False, seed=2)
        return kd.Distiller(teacher, student, [TangKD("top_k", top_k=1), TangKD("reweight")],
                            [0.9, 0.5], student_loss_weight=0.1)

    single, _ = assert_replica_equivalence(make, x, y, batch_size=8, steps=2)
    assert single["tang_top_k"][0] > 0 and single["tang_reweight"][0] > 0
