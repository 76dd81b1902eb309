"""FitNet (Romero et al. 2015) and its hint regressor: hand values, shapes, contract.

Hand derivation of the golden value. Student feature: one 2x2 map, one
channel, x = [1, 2, 3, 4] (row-major). Regressor without BN: a 1x1
convolution to 2 channels with kernel [[2, -1]] and bias [0, 1]:

  r(x) channel 0 = 2x      = [2, 4, 6, 8]
  r(x) channel 1 = 1 - x   = [0, -1, -2, -3]

Teacher: channel 0 = [3, 4, 6, 9], channel 1 = [0, 0, 0, 0].
Squared differences: channel 0 [1, 0, 0, 1], channel 1 [0, 1, 4, 9];
sum 16 over 8 entries -> MSE = 2.0 (no ReLU).
With the final ReLU, channel 1 becomes [0, 0, 0, 0]: sum 2 -> MSE = 0.25.
"""

import numpy as np
import keras
import pytest

import keras_distill as kd
from keras_distill.adapters.regressors import HintRegressor
from keras_distill.losses.fitnet import FitNet
from keras_distill.testing import (
    assert_replica_equivalence, build_term, conv_net, random_outputs, teacher_gradients,
    term_value)

SCE = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
STUDENT_MAP = np.array([1.0, 2.0, 3.0, 4.0], "float32").reshape(1, 2, 2, 1)
TEACHER_MAP = np.stack([np.array([3.0, 4.0, 6.0, 9.0]).reshape(2, 2), np.zeros((2, 2))],
                       axis=-1)[None].astype("float32")


def _golden_term(use_relu):
    teacher, student = {"logits": np.zeros((1, 3), "float32"), "hint": TEACHER_MAP}, \
        {"logits": np.zeros((1, 3), "float32"), "guided": STUDENT_MAP}
    term = build_term(FitNet("hint", "guided", use_relu=use_relu, batch_norm=False),
                      teacher, student)
    term.regressor.projection.set_weights([np.array([[[[2.0, -1.0]]]], "float32"),
                                           np.array([0.0, 1.0], "float32")])
    return term, teacher, student


@pytest.mark.parametrize("use_relu, expected", [(False, 2.0), (True, 0.25)])
def test_golden_value(use_relu, expected):
    term, teacher, student = _golden_term(use_relu)
    assert term_value(term, teacher, student) == pytest.approx(expected, abs=1e-6)


def test_zero_when_regressed_student_equals_teacher():
    # An identity regressor on a student equal to the teacher gives 0.
    teacher, _, _ = random_outputs(batch=4, taps={"stage2": ((4, 4, 3), (4, 4, 3))})
    teacher["stage2"] = np.abs(teacher["stage2"])  # post-ReLU features
    term = build_term(FitNet("stage2", batch_norm=False), teacher, dict(teacher))
    term.regressor.projection.set_weights([np.eye(3, dtype="float32")[None, None],
                                           np.zeros(3, "float32")])
    assert term_value(term, teacher, dict(teacher)) == pytest.approx(0.0, abs=1e-7)


@pytest.mark.parametrize("student_hw, teacher_hw", [(8, 4), (2, 4), (6, 4), (4, 4), (5, 3)])
def test_regressor_maps_every_reference_size_case(student_hw, teacher_hw):
    # 2x larger: 3x3 stride 2; 2x smaller: 4x4 transposed stride 2; larger: valid conv.
    regressor = HintRegressor((teacher_hw, teacher_hw, 6), name="reg")
    regressor.build((None, student_hw, student_hw, 2))
    out = regressor(np.ones((3, student_hw, student_hw, 2), "float32"))
    assert tuple(out.shape) == (3, teacher_hw, teacher_hw, 6)


def test_vector_features_use_a_dense_regressor():
    teacher, student, _ = random_outputs(batch=4, taps={"embedding": ((16,), (8,))})
    term = build_term(FitNet("embedding"), teacher, student)
    assert term_value(term, teacher, student) > 0


def test_student_and_regressor_get_gradients_teacher_none():
    teacher, student, _ = random_outputs(batch=4, taps={"stage2": ((4, 4, 6), (8, 8, 3))})
    term = build_term(FitNet("stage2"), teacher, student)
    t_grads, s_grads = teacher_gradients(term, teacher, student)
    assert t_grads["stage2"] is None
    assert np.abs(s_grads["stage2"].numpy()).sum() > 0


def test_distiller_trains_the_regressor_and_never_exports_it():
    rng = np.random.default_rng(0)
    x, y = rng.random((16, 8, 8, 1)).astype("float32"), rng.integers(0, 3, 16)
    student = conv_net("s", 4, seed=2)
    distiller = kd.Distiller(conv_net("t", 8, seed=1), student, [FitNet("stage2")], [100.0])
    distiller.compile(optimizer=keras.optimizers.SGD(0.05), loss=SCE)
    regressor = distiller.get_term("fitnet").regressor
    assert regressor in distiller.adapters
    before = [w.copy() for w in regressor.get_weights()]
    distiller.fit(x, y, batch_size=8, epochs=1, verbose=0)
    assert any(not np.allclose(a, b) for a, b in zip(before, regressor.get_weights()))
    student_ids = {id(v) for v in student.weights}
    assert not any(id(v) in student_ids for v in regressor.weights)


def test_one_and_two_replicas_agree():
    # The regressor's BatchNorm is synchronized, so 2 replicas match 1.
    rng = np.random.default_rng(0)
    x, y = rng.random((16, 8, 8, 1)).astype("float32"), rng.integers(0, 3, 16)

    def make():
        return kd.Distiller(conv_net("t", 8, seed=1), conv_net("s", 4, batch_norm=False, seed=2),
                            [FitNet("stage2")], [100.0], student_loss_weight=1.0)

    single, _ = assert_replica_equivalence(make, x, y, batch_size=8, steps=2, atol=1e-4)
    assert single["fitnet"][0] > 0


def test_serialization_round_trip():
    term = FitNet("stage3", "stage2", use_relu=False, batch_norm=False, name="hint")
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(term))
    assert isinstance(restored, FitNet)
    assert (restored.teacher_tap, restored.student_tap, restored.use_relu, restored.batch_norm,
            restored.name) == ("stage3", "stage2", False, False, "hint")
    assert restored.teacher_taps == ("stage3",) and restored.student_taps == ("stage2",)
    regressor = HintRegressor((4, 4, 6), use_relu=False)
    assert HintRegressor.from_config(regressor.get_config()).get_config() == \
        regressor.get_config()


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="teacher_tap must be a layer name"):
        FitNet(teacher_tap=3)
    teacher, student, _ = random_outputs(batch=2, taps={"stage2": ((8, 8, 4), (2, 2, 4))})
    with pytest.raises(ValueError, match="cannot map a student feature of spatial size"):
        build_term(FitNet("stage2"), teacher, student)
    teacher, student, _ = random_outputs(batch=2, taps={"stage2": ((8,), (2, 2, 4))})
    with pytest.raises(ValueError, match="same rank"):
        build_term(FitNet("stage2"), teacher, student)
    with pytest.raises(RuntimeError, match="not built"):
        term_value(FitNet("stage2"), teacher, student)
