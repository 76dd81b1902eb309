"""FSP (Yim et al. 2017): hand values, pooling, channel checks, the two-stage recipe.

Hand derivation of the golden value (one example, taps a -> b -> c):

Shapes (H, W, C): a (1, 2, 1), b (1, 2, 2), c (1, 1, 1).
Pair (a, b), equal 1x2 maps, G_ij = mean over the 2 positions of a_i * b_j:
  teacher a = [1, 2]; b = [[1, 0], [0, 1]] (position x channel)
    G_t = [(1*1 + 2*0) / 2, (1*0 + 2*1) / 2] = [[0.5, 1.0]]
  student a = [1, 1]; b = [[1, 1], [1, 1]]  ->  G_s = [[1.0, 1.0]]
  mean over the 1x2 entries of (G_s - G_t)^2 = (0.25 + 0) / 2 = 0.125
Pair (b, c): b (1x2) is average-pooled onto c's 1x1 first:
  teacher b pooled = [0.5, 0.5], c = [2]  ->  G_t = [[1.0], [1.0]]
  student b pooled = [1, 1],     c = [3]  ->  G_s = [[3.0], [3.0]]
  mean of (G_s - G_t)^2 = (4 + 4) / 2 = 4.0
Total: 0.125 + 4.0 = 4.125.
"""

import numpy as np
import keras
import pytest

import keras_distill as kd
from keras_distill.losses.fsp import FSP, fsp_matrix
from keras_distill.testing import (
    assert_replica_equivalence, build_term, conv_net, random_outputs, teacher_gradients,
    term_value)


def _golden_outputs():
    logits = np.zeros((1, 3), "float32")
    teacher = {"logits": logits,
               "a": np.array([1.0, 2.0], "float32").reshape(1, 1, 2, 1),
               "b": np.array([[1.0, 0.0], [0.0, 1.0]], "float32").reshape(1, 1, 2, 2),
               "c": np.array([2.0], "float32").reshape(1, 1, 1, 1)}
    student = {"logits": logits,
               "a": np.ones((1, 1, 2, 1), "float32"),
               "b": np.ones((1, 1, 2, 2), "float32"),
               "c": np.array([3.0], "float32").reshape(1, 1, 1, 1)}
    return teacher, student


def test_golden_value():
    teacher, student = _golden_outputs()
    term = build_term(FSP(["a", "b", "c"]), teacher, student)
    assert term_value(term, teacher, student) == pytest.approx(4.125, abs=1e-6)


def test_align_channels_maps_student_taps_to_the_teacher_width():
    # Student b has one channel [1, 1]; an aligner with kernel [[1, 1]] duplicates it into
    # the golden student's two-channel b, so the value is the golden 4.125 again.
    teacher, student = _golden_outputs()
    student["b"] = np.ones((1, 1, 2, 1), "float32")
    term = build_term(FSP(["a", "b", "c"], align_channels=True), teacher, student)
    assert list(term.aligners) == ["b"] and term.adapters == [term.aligners["b"]]
    term.aligners["b"].set_weights([np.ones((1, 2), "float32")])
    assert term_value(term, teacher, student) == pytest.approx(4.125, abs=1e-6)
    t_grads, s_grads = teacher_gradients(term, teacher, student)
    assert t_grads["b"] is None and np.abs(s_grads["b"].numpy()).sum() > 0


def test_fsp_matrix_is_a_spatial_mean_of_outer_products():
    rng = np.random.default_rng(0)
    bottom, top = rng.normal(size=(2, 3, 4, 5)), rng.normal(size=(2, 3, 4, 6))
    expected = np.einsum("bhwi,bhwj->bij", bottom, top) / 12
    np.testing.assert_allclose(fsp_matrix(bottom.astype("float32"), top.astype("float32")),
                               expected, rtol=1e-5, atol=1e-6)


def test_zero_when_student_equals_teacher():
    teacher, _, _ = random_outputs(batch=4, taps={"s1": ((8, 8, 4), (8, 8, 4)),
                                                  "s2": ((4, 4, 8), (4, 4, 8))})
    term = build_term(FSP(["s1", "s2"]), teacher, dict(teacher))
    assert term_value(term, teacher, dict(teacher)) == pytest.approx(0.0, abs=1e-7)


def test_student_gets_gradient_teacher_none():
    teacher, student, _ = random_outputs(batch=4, taps={"s1": ((8, 8, 4), (8, 8, 4)),
                                                        "s2": ((4, 4, 8), (4, 4, 8))})
    term = build_term(FSP(["s1", "s2"]), teacher, student)
    t_grads, s_grads = teacher_gradients(term, teacher, student)
    assert t_grads["s1"] is None and t_grads["s2"] is None
    assert np.abs(s_grads["s1"].numpy()).sum() > 0 and np.abs(s_grads["s2"].numpy()).sum() > 0


def test_one_and_two_replicas_agree():
    rng = np.random.default_rng(0)
    x, y = rng.random((16, 8, 8, 1)).astype("float32"), rng.integers(0, 3, 16)

    def make():
        return kd.Distiller(conv_net("t", 4, seed=1), conv_net("s", 4, batch_norm=False, seed=2),
                            [FSP(["stage1", "stage2"])], [50.0], student_loss_weight=1.0)

    single, _ = assert_replica_equivalence(make, x, y, batch_size=8, steps=2)
    assert single["fsp"][0] > 0


def test_serialization_round_trip():
    term = FSP(["stem", "stage1"], ["stem", "stage2"], align_channels=True, name="flow")
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(term))
    assert isinstance(restored, FSP) and restored.name == "flow" and restored.align_channels
    assert restored.teacher_taps == ("stem", "stage1")
    assert restored.student_taps == ("stem", "stage2")


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="at least two layer names"):
        FSP(["stage1"])
    with pytest.raises(ValueError, match="one to one"):
        FSP(["stage1", "stage2"], ["stage1", "stage2", "stage3"])
    teacher, student, _ = random_outputs(batch=2, taps={"s1": ((8, 8, 4), (8, 8, 2)),
                                                        "s2": ((4, 4, 8), (4, 4, 8))})
    with pytest.raises(ValueError, match="teacher tap 's1' has 4 channels but student tap "
                                         "'s1' has 2.*align_channels=True"):
        build_term(FSP(["s1", "s2"]), teacher, student)
    teacher, student, _ = random_outputs(batch=2, taps={"s1": ((6, 6, 4), (6, 6, 4)),
                                                        "s2": ((4, 4, 8), (4, 4, 8))})
    with pytest.raises(ValueError, match="FSP teacher taps 's1' -> 's2'.*integer"):
        build_term(FSP(["s1", "s2"]), teacher, student)
