"""Cohort (Deep Mutual Learning): per-member losses, isolation, replicas, saving.

Hand derivation for the golden tests. Members output fixed logits (a Dense
layer with a zero kernel and the logits as bias), label y = 0:
    A: z = [0, 0, 0]       p_A = [1/3, 1/3, 1/3]    CE_A = ln 3 = 1.0986123
    B: z = [ln 2, 0, 0]    p_B = [1/2, 1/4, 1/4]    CE_B = ln 2 = 0.6931472
    C: z = [0, ln 2, 0]    p_C = [1/4, 1/2, 1/4]    CE_C = ln 4 = 1.3862944
KL values (T = 1), derived in tests/losses/test_dml.py and by symmetry:
    KL(p_B || p_A) = KL(p_C || p_A) = 0.5 ln 1.125 = 0.0588915
    KL(p_A || p_B) = KL(p_A || p_C) = 1/3 ln(32/27) = 0.0566330
    KL(p_C || p_B) = KL(p_B || p_C) = 0.25 ln(0.25/0.5) + 0.5 ln(0.5/0.25) = 0.25 ln 2 = 0.1732868
Two members (A, B): L_A = 1.0986123 + 0.0588915 = 1.1575038,
                    L_B = 0.6931472 + 0.0566330 = 0.7497802.
Three members, the mimicry term is the MEAN over the two peers:
    A: (0.0588915 + 0.0588915) / 2 = 0.0588915
    B: (0.0566330 + 0.1732868) / 2 = 0.1149599
    C: (0.0566330 + 0.1732868) / 2 = 0.1149599
"""

import math

import numpy as np
import keras
import pytest
import tensorflow as tf

from keras_distill.cohort import Cohort
from keras_distill.losses.dml import DML
from keras_distill.losses.kd import KD
from keras_distill.testing import conv_net, two_replica_strategy
from keras_distill.views import Mixup

SCE = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
LN2 = math.log(2.0)


def _fixed(name, logits):
    inputs = keras.Input((2,))
    outputs = keras.layers.Dense(
        3, kernel_initializer="zeros",
        bias_initializer=keras.initializers.Constant(logits), name="logits")(inputs)
    return keras.Model(inputs, outputs, name=name)


def _data(n=16, classes=3, seed=0, shape=(8, 8, 1)):
    rng = np.random.default_rng(seed)
    return rng.random((n,) + shape).astype("float32"), rng.integers(0, classes, n)


def _floats(values):
    return [float(keras.ops.convert_to_numpy(v)) for v in values]


# ------------------------------------------------------------------ golden
def test_golden_two_member_losses():
    cohort = Cohort([_fixed("a", [0.0, 0.0, 0.0]), _fixed("b", [LN2, 0.0, 0.0])])
    cohort.compile(optimizer="sgd", loss=SCE)
    x, y = np.zeros((4, 2), "float32"), np.zeros((4,), "int32")
    assert _floats(cohort.member_losses(x, y)) == pytest.approx([1.1575038, 0.7497802], abs=1e-6)
    logs = cohort.evaluate(x, y, verbose=0, return_dict=True)
    assert logs["member0_dml"] == pytest.approx(0.0588915, abs=1e-6)
    assert logs["member1_dml"] == pytest.approx(0.0566330, abs=1e-6)
    assert logs["member1_student_loss"] == pytest.approx(0.6931472, abs=1e-6)
    assert logs["loss"] == pytest.approx(1.1575038 + 0.7497802, abs=1e-5)


def test_golden_three_members_average_over_peers_with_weights():
    cohort = Cohort([_fixed("a", [0.0, 0.0, 0.0]), _fixed("b", [LN2, 0.0, 0.0]),
                     _fixed("c", [0.0, LN2, 0.0])],
                    distillation_losses=[DML()], distillation_loss_weights=[0.5],
                    student_loss_weight=0.1)
    cohort.compile(optimizer="sgd", loss=SCE)
    x, y = np.zeros((4, 2), "float32"), np.zeros((4,), "int32")
    expected = [0.1 * 1.0986123 + 0.5 * 0.0588915,
                0.1 * 0.6931472 + 0.5 * 0.1149599,
                0.1 * 1.3862944 + 0.5 * 0.1149599]
    assert _floats(cohort.member_losses(x, y)) == pytest.approx(expected, abs=1e-6)
    logs = cohort.evaluate(x, y, verbose=0, return_dict=True)
    assert [logs[f"member{i}_dml"] for i in range(3)] == \
        pytest.approx([0.0588915, 0.1149599, 0.1149599], abs=1e-6)


# --------------------------------------------------------------- isolation
def test_each_member_sees_the_others_as_constants():
    a, b = conv_net("a", 4, seed=1), conv_net("b", 4, seed=2)
    cohort = Cohort([a, b])
    cohort.compile(optimizer="sgd", loss=SCE)
    x, y = _data(n=8)
    with tf.GradientTape(persistent=True) as tape:
        loss_a, loss_b = cohort.member_losses(x, y, training=True)
    # Member A's loss never moves B (B's outputs enter it under stop_gradient), and back.
    assert all(g is None for g in tape.gradient(loss_a, b.trainable_variables))
    assert all(g is None for g in tape.gradient(loss_b, a.trainable_variables))
    grads_a = tape.gradient(loss_a, a.trainable_variables)
    assert all(g is not None for g in grads_a)
    assert any(float(tf.reduce_max(tf.abs(g))) > 0 for g in grads_a)


def test_one_step_updates_every_member_and_logs_per_member():
    a, b = conv_net("a", 4, seed=1), conv_net("b", 4, seed=2)
    before = [[w.copy() for w in m.get_weights()] for m in (a, b)]
    cohort = Cohort([a, b])
    cohort.compile(optimizer=keras.optimizers.SGD(0.1), loss=SCE, metrics=["accuracy"])
    x, y = _data(n=8)
    history = cohort.fit(x, y, batch_size=8, epochs=1, verbose=0).history
    for member, old in zip((a, b), before):
        assert any(not np.allclose(o, n) for o, n in zip(old, member.get_weights()))
    assert {"loss", "accuracy", "member0_accuracy", "member1_accuracy", "member0_loss",
            "member1_loss", "member0_dml", "member1_dml", "member0_student_loss"} <= set(history)
    # Compiled metrics describe call(), i.e. member 0 by default.
    assert history["accuracy"] == history["member0_accuracy"]
    assert history["loss"][0] == pytest.approx(
        history["member0_loss"][0] + history["member1_loss"][0], rel=1e-5)


def test_call_returns_member_zero_or_the_ensemble():
    members = [_fixed("a", [0.0, 0.0, 0.0]), _fixed("b", [LN2, 0.0, 0.0])]
    x = np.zeros((2, 2), "float32")
    np.testing.assert_allclose(Cohort(members).predict(x, verbose=0), [[0.0, 0.0, 0.0]] * 2)
    np.testing.assert_allclose(Cohort(members, prediction=1).predict(x, verbose=0),
                               [[LN2, 0.0, 0.0]] * 2, atol=1e-6)
    # Ensemble: log of the mean probability, ([1/3, 1/3, 1/3] + [1/2, 1/4, 1/4]) / 2.
    ensemble = Cohort(members, prediction="ensemble")
    np.testing.assert_allclose(ensemble.predict(x, verbose=0),
                               np.log([[5 / 12, 7 / 24, 7 / 24]] * 2), atol=1e-6)
    assert ensemble.student is members[0] and Cohort(members, prediction=1).student is members[1]


# ----------------------------------------------------------------- replicas
def _train(strategy, x, y):
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
    with strategy.scope():
        cohort = Cohort([conv_net("a", 4, batch_norm=False, seed=1),
                         conv_net("b", 4, batch_norm=False, seed=2)],
                        distillation_losses=[DML(temperature=2.0)], distillation_loss_weights=[0.7])
        cohort.compile(optimizer=keras.optimizers.SGD(0.1), loss=SCE, metrics=["accuracy"])
    history = cohort.fit(dataset, epochs=1, verbose=0).history
    return history, [np.array(w) for m in cohort.members for w in m.get_weights()]


def test_one_and_two_replicas_give_the_same_losses_and_weights():
    x, y = _data(n=16)
    single_history, single_weights = _train(tf.distribute.get_strategy(), x, y)
    double_history, double_weights = _train(two_replica_strategy(), x, y)
    assert single_history["member0_dml"][0] > 0
    for key, values in single_history.items():
        np.testing.assert_allclose(values, double_history[key], rtol=1e-4, atol=1e-5,
                                   err_msg=f"logged {key!r} differs between 1 and 2 replicas")
    for a, b in zip(single_weights, double_weights):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------ saving
def test_save_and_restore_member_weights(tmp_path):
    student = conv_net("s", 4, seed=1)
    peer = keras.models.clone_model(student)  # same layer AND model names
    cohort = Cohort([student, peer], distillation_losses=[DML(2.0)],
                    distillation_loss_weights=[0.3], prediction="ensemble")
    cohort.compile(optimizer=keras.optimizers.SGD(0.1), loss=SCE)
    x, y = _data(n=8)
    cohort.fit(x, y, batch_size=8, verbose=0)
    cohort.save_weights(tmp_path / "cohort.weights.h5")

    restored = Cohort.from_config(cohort.get_config())
    assert restored.get_term("dml").temperature == 2.0 and restored.prediction == "ensemble"
    assert float(restored.loss_weight("dml")) == pytest.approx(0.3)
    assert any(not np.allclose(a, b) for a, b in zip(
        restored.members[1].get_weights(), peer.get_weights()))  # fresh weights before loading
    restored.load_weights(tmp_path / "cohort.weights.h5")
    for original, loaded in zip(cohort.members, restored.members):
        for a, b in zip(original.get_weights(), loaded.get_weights()):
            np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(restored.predict(x, verbose=0), cohort.predict(x, verbose=0),
                               atol=1e-6)
    # The whole cohort as a .keras file (config + every member's weights).
    cohort.save(tmp_path / "cohort.keras")
    loaded = keras.saving.load_model(tmp_path / "cohort.keras")
    assert isinstance(loaded, Cohort) and len(loaded.members) == 2
    np.testing.assert_allclose(loaded.predict(x, verbose=0), cohort.predict(x, verbose=0),
                               atol=1e-6)


# ------------------------------------------------------------------- errors
def test_bad_cohorts_are_refused_with_clear_messages():
    a = conv_net("a", 4)
    with pytest.raises(ValueError, match="at least 2 members.*clone_model"):
        Cohort([a])
    with pytest.raises(ValueError, match="member 1 is the same object.*clone_model"):
        Cohort([a, a])
    with pytest.raises(ValueError, match=r"different numbers of classes \[3, 5\]"):
        Cohort([a, conv_net("b", 4, num_classes=5)])
    with pytest.raises(ValueError, match="input_view.*Distiller"):
        Cohort([a, conv_net("b", 4)], distillation_losses=[KD(input_view=Mixup())])
    with pytest.raises(ValueError, match="prediction must be a member index"):
        Cohort([a, conv_net("b", 4)], prediction=2)
    with pytest.raises(TypeError, match="member 1 must be a keras.Model"):
        Cohort([a, "b"])
