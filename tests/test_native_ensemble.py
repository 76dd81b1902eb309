"""NativeEnsemble (ONE): the loss by hand, branch 0 is the student, gradients, replicas.

Hand derivation for the golden test. Three branches output fixed logits
(label y = 0), the gate is uniform (zero scores -> softmax 1/3 each):
    A = [0, 0, 0]     CE_A = ln 3 = 1.0986123
    B = [ln 2, 0, 0]  CE_B = ln 2 = 0.6931472
    C = [0, ln 2, 0]  CE_C = ln 4 = 1.3862944          sum CE = 3.1780538
Ensemble z_e = (A + B + C) / 3 = [a, a, 0], a = ln 2 / 3:
    p_e(0) = 2^(1/3) / (2 * 2^(1/3) + 1) = 0.3579460,  CE_e = 1.0273671.
ONE's term at T = 3, T^2 KL(softmax(z_e / 3) || softmax(z_i / 3)):
    A: 0.0058272   B: 0.0429357   C: 0.0429357 (B and C mirror each other about z_e)
    sum = 0.0916986
Total with unit weights: 3.1780538 + 1.0273671 + 0.0916986 = 4.2971195.
"""

import math

import numpy as np
import keras
import pytest
import tensorflow as tf

from keras_distill.native_ensemble import NativeEnsemble
from keras_distill.schedules import SigmoidRampUp
from keras_distill.testing import assert_replica_equivalence, conv_net

SCE = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
LN2 = math.log(2.0)


def _linear_student():
    """Input (2,) -> `split` (Dense 2) -> `logits` (Dense 3): the head is one Dense layer."""
    inputs = keras.Input((2,), name="x")
    hidden = keras.layers.Dense(2, name="split")(inputs)
    return keras.Model(inputs, keras.layers.Dense(3, name="logits")(hidden), name="student")


def _fix_branches(model, logits):
    for head, values in zip(model.heads, logits):
        dense = head.layers[-1]
        dense.kernel.assign(np.zeros(dense.kernel.shape, "float32"))
        dense.bias.assign(np.asarray(values, "float32"))


def _data(n=16, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, 8, 8, 1)).astype("float32"), rng.integers(0, 3, n)


def test_golden_loss_of_three_fixed_branches_and_a_uniform_gate():
    model = NativeEnsemble(_linear_student(), split="split", branches=3)
    _fix_branches(model, [[0, 0, 0], [LN2, 0, 0], [0, LN2, 0]])
    gate_dense = model.gate.get_layer("gate_dense")
    gate_dense.kernel.assign(np.zeros(gate_dense.kernel.shape, "float32"))
    model.compile(optimizer="sgd", loss=SCE)
    x, y = np.ones((4, 2), "float32"), np.zeros((4,), "int32")
    result = model.evaluate(x, y, verbose=0, return_dict=True)
    assert result["student_loss"] == pytest.approx(3.1780538, abs=1e-5)
    assert result["ensemble_loss"] == pytest.approx(1.0273671, abs=1e-5)
    assert result["one"] == pytest.approx(0.0916986, abs=1e-5)
    assert result["loss"] == pytest.approx(4.2971195, abs=1e-5)
    _, gates, ensemble = model.branch_outputs(x)
    np.testing.assert_allclose(gates, np.full((4, 3), 1 / 3), atol=1e-6)
    np.testing.assert_allclose(ensemble[0], [LN2 / 3, LN2 / 3, 0.0], atol=1e-6)


def test_term_is_zero_when_every_branch_equals_the_ensemble():
    model = NativeEnsemble(_linear_student(), split="split", branches=3)
    _fix_branches(model, [[0.3, -1.0, 2.0]] * 3)  # gates sum to 1: z_e = z_i
    model.compile(optimizer="sgd", loss=SCE)
    x, y = np.random.default_rng(0).random((4, 2)).astype("float32"), np.zeros((4,), "int32")
    assert model.evaluate(x, y, verbose=0, return_dict=True)["one"] == pytest.approx(0, abs=1e-6)


def test_branch_zero_is_the_student_and_the_others_are_fresh_copies():
    student = conv_net("s", 4, seed=1)
    model = NativeEnsemble(student, split="stage1", branches=3)
    x, _ = _data(4)
    assert model.student is student
    np.testing.assert_allclose(model(x), student(x), atol=1e-6)
    np.testing.assert_allclose(model.heads[0](model.trunk(x)), student(x), atol=1e-5)
    kernels = [head.get_layer("conv2").kernel.numpy() for head in model.heads]
    assert not np.allclose(kernels[0], kernels[1]) and not np.allclose(kernels[1], kernels[2])
    # the trainable variables are counted once, the student's among them
    variables = model.trainable_variables
    assert len({id(v) for v in variables}) == len(variables)
    assert {id(v) for v in student.trainable_variables} <= {id(v) for v in variables}


def test_the_ensemble_target_sends_no_gradient_only_its_ce_trains_the_gate():
    model = NativeEnsemble(conv_net("s", 4, seed=1), split="stage1", branches=2)
    model.compile(optimizer="sgd", loss=SCE)
    x, y = _data(8)
    gate_variables = model.gate.trainable_variables
    with tf.GradientTape(persistent=True) as tape:
        logits, _, ensemble = model.branch_outputs(x, training=True)
        _, _, ensemble_loss, term = model._compute_losses(logits, ensemble, y, None, True)
    assert all(g is None or not np.any(g) for g in tape.gradient(term, gate_variables))
    assert any(g is not None and np.any(g) for g in tape.gradient(ensemble_loss, gate_variables))


def test_one_fit_step_moves_every_branch_the_gate_and_the_trunk():
    student = conv_net("s", 4, seed=1)
    model = NativeEnsemble(student, split="stage1", branches=3)
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss=SCE, metrics=["accuracy"])
    before = [v.numpy().copy() for v in model.trainable_variables]
    x, y = _data(16)
    history = model.fit(x, y, batch_size=8, epochs=1, verbose=0).history
    for old, variable in zip(before, model.trainable_variables):
        assert not np.allclose(old, variable.numpy()), variable.path
    for key in ("loss", "student_loss", "ensemble_loss", "one", "branch0_accuracy",
                "branch2_accuracy", "ensemble_accuracy", "accuracy"):
        assert key in history
    assert history["accuracy"] == history["branch0_accuracy"]
    assert student.count_params() == conv_net("s", 4, seed=1).count_params()


def test_one_and_two_replicas_agree():
    x, y = _data(16)
    assert_replica_equivalence(
        lambda: NativeEnsemble(conv_net("s", 4, seed=1, batch_norm=False), split="stage1",
                               branches=2, distillation_loss_weight=0.5),
        x, y, batch_size=8, steps=2)


def test_config_round_trip_keeps_the_schedule_and_structure():
    model = NativeEnsemble(conv_net("s", 4, seed=1), split="stage1", branches=2,
                           distillation_loss_weight=SigmoidRampUp(2.0, ramp_steps=10),
                           ensemble_loss_weight=0.5)
    clone = NativeEnsemble.from_config(model.get_config())
    assert clone.num_branches == 2 and clone.split == "stage1"
    assert isinstance(clone.distillation_loss_weight, SigmoidRampUp)
    assert clone.distillation_loss_weight.get_config() == {"value": 2.0, "ramp_steps": 10}
    assert float(clone.ensemble_loss_weight.numpy()) == 0.5
    assert clone.term.temperature == 3.0


def test_sigmoid_ramp_up_values():
    ramp = SigmoidRampUp(2.0, ramp_steps=100)
    assert float(ramp(0)) == pytest.approx(2.0 * math.exp(-5.0))
    assert float(ramp(50)) == pytest.approx(2.0 * math.exp(-1.25))
    assert float(ramp(100)) == pytest.approx(2.0) and float(ramp(1000)) == pytest.approx(2.0)
    assert float(SigmoidRampUp(3.0, 0)(0)) == 3.0
    with pytest.raises(ValueError, match="ramp_steps must be >= 0"):
        SigmoidRampUp(1.0, -1)


def test_bad_arguments_are_refused_clearly():
    student = conv_net("s", 4, seed=1)
    with pytest.raises(ValueError, match="'stage9' is not a layer of 's'"):
        NativeEnsemble(student, split="stage9")
    with pytest.raises(ValueError, match="branches >= 2"):
        NativeEnsemble(student, split="stage1", branches=1)
    inputs = keras.Input((4,))
    first = keras.layers.Dense(4, name="first")(inputs)
    second = keras.layers.Dense(4, name="second")(first)
    skip = keras.layers.Add()([first, second])  # `first` reaches past `second`
    crossing = keras.Model(inputs, keras.layers.Dense(3)(skip))
    with pytest.raises(ValueError, match="cannot be cut at 'second'"):
        NativeEnsemble(crossing, split="second")
