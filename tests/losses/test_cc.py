"""CC (Peng et al. 2019): hand-computed values and contract checks.

Hand derivation, gamma = 0.4, order P = 2: on unit vectors with cosine c,
k(c) = e^{-0.8} (1 + 0.8 c + 0.32 c^2), e^{-0.8} = 0.449329:
k(1) = 0.449329 * 2.12 = 0.952577,  k(0) = 0.449329,
k(1/sqrt2) = 0.449329 * (1 + 0.565685 + 0.16) = 0.775401.
Teacher t0 = (1, 0), t1 = (0, 1): C_t = [[k(1), k(0)], [k(0), k(1)]].
Student s0 = (1, 0), s1 = (1, 1) (normalised: cosine 1/sqrt2):
C_s = [[k(1), k(1/sqrt2)], [k(1/sqrt2), k(1)]].
The two off-diagonal entries differ by 0.775401 - 0.449329 = 0.326072;
L = 2 * 0.326072^2 / 4 = 0.053161.
"""

import math

import numpy as np
import keras
import pytest

from keras_distill import Distiller
from keras_distill.losses.cc import CC
from keras_distill.testing import (assert_replica_equivalence, conv_net, teacher_gradients,
                                   term_value)

TEACHER = {"embedding": np.eye(2, dtype="float32")}
STUDENT = {"embedding": np.array([[1, 0], [1, 1]], "float32")}


def test_golden_value():
    assert term_value(CC(), TEACHER, STUDENT) == pytest.approx(0.053161, abs=1e-6)


def test_high_order_expansion_converges_to_the_gaussian_rbf_kernel():
    rng = np.random.default_rng(4)
    t, s = rng.normal(size=(5, 6)), rng.normal(size=(5, 4))

    def rbf(f, gamma):
        f = f / np.linalg.norm(f, axis=1, keepdims=True)
        squared = ((f[:, None, :] - f[None, :, :]) ** 2).sum(-1)
        return np.exp(-gamma * squared)

    expected = np.mean((rbf(s, 0.7) - rbf(t, 0.7)) ** 2)
    value = term_value(CC(gamma=0.7, order=20), {"embedding": t.astype("float32")},
                       {"embedding": s.astype("float32")})
    assert value == pytest.approx(expected, rel=1e-4)
    # Order 0 keeps only the constant e^{-2 gamma}: no signal.
    assert term_value(CC(order=0), {"embedding": t.astype("float32")},
                      {"embedding": s.astype("float32")}) == 0.0
    assert math.isclose(math.exp(-0.8) * 2.12, 0.952577, abs_tol=1e-6)


def test_zero_when_student_equals_teacher_or_is_rescaled():
    features = np.random.default_rng(0).normal(size=(8, 5)).astype("float32")
    assert term_value(CC(), {"embedding": features}, {"embedding": features}) == \
        pytest.approx(0.0, abs=1e-7)
    assert term_value(CC(), {"embedding": features}, {"embedding": 3.0 * features}) == \
        pytest.approx(0.0, abs=1e-7)


def test_no_gradient_reaches_teacher_and_student_gets_one():
    rng = np.random.default_rng(2)
    teacher = {"embedding": rng.normal(size=(4, 3)).astype("float32")}
    student = {"embedding": rng.normal(size=(4, 5)).astype("float32")}
    t_grads, s_grads = teacher_gradients(CC(), teacher, student)
    assert t_grads["embedding"] is None
    assert np.abs(s_grads["embedding"].numpy()).sum() > 0


def test_learned_student_head_is_an_adapter_trained_by_the_distiller():
    rng = np.random.default_rng(0)
    x, y = rng.random((8, 8, 8, 1)).astype("float32"), rng.integers(0, 3, 8)
    term = CC(embed_dim=4)
    distiller = Distiller(conv_net("t", 4), conv_net("s", 2), [term], [100.0])
    (head,) = term.adapters
    assert head.compute_output_shape((None, 4)) == (None, 4)
    before = [np.array(w) for w in head.get_weights()]
    assert any(w is v for w in distiller.trainable_variables for v in head.trainable_variables)
    distiller.compile(optimizer=keras.optimizers.SGD(0.1),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    distiller.fit(x, y, batch_size=8, epochs=1, verbose=0)
    assert any(np.abs(a - b).max() > 0 for a, b in zip(before, head.get_weights()))


def test_one_and_two_replicas_give_the_same_losses_and_weights():
    rng = np.random.default_rng(0)
    x, y = rng.random((16, 8, 8, 1)).astype("float32"), rng.integers(0, 3, 16)

    def make():
        teacher = conv_net("t", 4, batch_norm=True, seed=1)
        student = conv_net("s", 4, batch_norm=False, seed=2)
        return Distiller(teacher, student, [CC()], [100.0], student_loss_weight=1.0)

    single, _ = assert_replica_equivalence(make, x, y, batch_size=8, steps=2)
    assert single["cc"][0] > 0


def test_serialization_round_trip():
    term = CC("stage3", "stage2", gamma=0.5, order=3, embed_dim=16, name="corr")
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(term))
    assert isinstance(restored, CC)
    assert (restored.gamma, restored.order, restored.embed_dim, restored.name) == \
        (0.5, 3, 16, "corr")
    assert (restored.teacher_taps, restored.student_taps) == (("stage3",), ("stage2",))


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="gamma must be > 0"):
        CC(gamma=0.0)
    with pytest.raises(ValueError, match="order must be an integer >= 0"):
        CC(order=1.5)
    with pytest.raises(ValueError, match="embed_dim must be a positive integer"):
        CC(embed_dim=0)
