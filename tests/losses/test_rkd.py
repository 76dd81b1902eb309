"""RKD (Park et al. 2019): hand-computed values and contract checks.

Hand derivation (3 points in 2-D). Teacher t = (0,0), (1,0), (0,1): a right
angle at point 0. Student s = (0,0), (1,0), (1,1): a right angle at point 1.

Distance. Teacher distances d01 = 1, d02 = 1, d12 = sqrt(2); student
d01 = 1, d02 = sqrt(2), d12 = 1. Both means over the 6 non-zero entries are
mu = (2 + sqrt(2)) / 3 = 1.138071, so the normalised distances are
1 / mu = 0.878680 and sqrt(2) / mu = 1.242641. The pairs (0,2) and (1,2)
differ by +-(sqrt(2) - 1) / mu = 0.363961, each twice in the 3x3 matrix:
    L_D = 4 * 0.5 * 0.363961^2 / 9 = 0.029437;   25 * L_D = 0.735931.
Angle. A[i,j,k] = cos of the angle at vertex i between j and k. Entries with
j == i or k == i are 0 on both sides; j == k (!= i) gives 1 on both sides.
What remains: 2 ordered pairs per vertex. Teacher cosines at vertices 0, 1, 2:
0, 1/sqrt(2), 1/sqrt(2); student: 1/sqrt(2), 0, 1/sqrt(2). Four entries differ
by +-0.707107 (smooth-L1 0.5 * 0.5 = 0.25 each), over 27 entries:
    L_A = 4 * 0.25 / 27 = 0.037037;   50 * L_A = 1.851852.
Total: 2.587783.
"""

import numpy as np
import keras
import pytest

from keras_distill import Distiller
from keras_distill.losses.rkd import RKD
from keras_distill.testing import (assert_replica_equivalence, conv_net, teacher_gradients,
                                   term_value)

TEACHER = {"embedding": np.array([[0, 0], [1, 0], [0, 1]], "float32")}
STUDENT = {"embedding": np.array([[0, 0], [1, 0], [1, 1]], "float32")}


@pytest.mark.parametrize("distance_weight, angle_weight, expected", [
    (25.0, 50.0, 2.587783), (25.0, 0.0, 0.735931), (0.0, 50.0, 1.851852), (1.0, 1.0, 0.066474)])
def test_golden_values(distance_weight, angle_weight, expected):
    term = RKD(distance_weight=distance_weight, angle_weight=angle_weight)
    assert term_value(term, TEACHER, STUDENT) == pytest.approx(expected, abs=1e-5)


def test_zero_when_student_equals_teacher_or_is_a_scaled_copy():
    features = np.random.default_rng(0).normal(size=(8, 5)).astype("float32")
    assert term_value(RKD(), {"embedding": features}, {"embedding": features}) == \
        pytest.approx(0.0, abs=1e-6)
    assert term_value(RKD(), {"embedding": features}, {"embedding": 3.0 * features}) == \
        pytest.approx(0.0, abs=1e-5)


def test_batch_loss_is_broadcast_and_feature_maps_are_flattened():
    rng = np.random.default_rng(1)
    teacher = {"stage2": rng.normal(size=(4, 2, 2, 3)).astype("float32")}
    student = {"stage2": rng.normal(size=(4, 2, 2, 2)).astype("float32")}
    term = RKD("stage2", "stage2")
    flat = RKD("f", "f")
    expected = term_value(flat, {"f": teacher["stage2"].reshape(4, -1)},
                          {"f": student["stage2"].reshape(4, -1)})
    assert term_value(term, teacher, student) == pytest.approx(expected, rel=1e-6)
    # Every example carries the batch loss: sample weights scale it by their mean.
    assert term_value(term, teacher, student, sample_weight=np.array([2.0, 0, 1, 1])) == \
        pytest.approx(expected, rel=1e-6)


def test_no_gradient_reaches_teacher_and_student_gets_one():
    rng = np.random.default_rng(2)
    teacher = {"embedding": rng.normal(size=(6, 4)).astype("float32")}
    student = {"embedding": rng.normal(size=(6, 3)).astype("float32")}
    t_grads, s_grads = teacher_gradients(RKD(), teacher, student)
    assert t_grads["embedding"] is None
    assert np.all(np.isfinite(s_grads["embedding"].numpy()))
    assert np.abs(s_grads["embedding"].numpy()).sum() > 0


def test_gradient_is_finite_with_duplicate_and_zero_features():
    student = {"embedding": np.array([[0, 0], [0, 0], [1, 2], [1, 2]], "float32")}
    teacher = {"embedding": np.array([[0, 1], [1, 0], [1, 1], [2, 0]], "float32")}
    _, s_grads = teacher_gradients(RKD(), teacher, student)
    assert np.all(np.isfinite(s_grads["embedding"].numpy()))


def test_one_and_two_replicas_give_the_same_losses_and_weights():
    rng = np.random.default_rng(0)
    x, y = rng.random((16, 8, 8, 1)).astype("float32"), rng.integers(0, 3, 16)

    def make():
        teacher = conv_net("t", 4, batch_norm=True, seed=1)
        student = conv_net("s", 4, batch_norm=False, seed=2)
        # Weight 0.1: RKD's gradients are large (25 / 50 inside), and float32 noise in
        # them (a mere batch permutation moves them by ~1e-5 relative) would exceed the
        # weight tolerance after SGD(0.1) steps of weight 1.
        return Distiller(teacher, student, [RKD()], [0.1], student_loss_weight=1.0)

    single, _ = assert_replica_equivalence(make, x, y, batch_size=8, steps=2)
    assert single["rkd"][0] > 0


def test_serialization_round_trip():
    term = RKD("stage3", "stage2", distance_weight=5.0, angle_weight=7.0, name="rel")
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(term))
    assert isinstance(restored, RKD)
    assert (restored.teacher_taps, restored.student_taps) == (("stage3",), ("stage2",))
    assert (restored.distance_weight, restored.angle_weight, restored.name) == (5.0, 7.0, "rel")


def test_bad_weights_are_refused():
    with pytest.raises(ValueError, match="angle_weight >= 0, not both 0"):
        RKD(distance_weight=0.0, angle_weight=0.0)
    with pytest.raises(ValueError, match="distance_weight=-1"):
        RKD(distance_weight=-1.0)
