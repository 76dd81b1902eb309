"""CRD (Tian et al. 2020): memory banks, NCE values, replicas.

NCE (RepDistiller `ContrastLoss`), noise Pn = 1/N, K negatives:
    loss = -log(P_pos / (P_pos + K/N)) - sum_k log((K/N) / (P_k + K/N)).
Hand case 1 (the function alone): N = 4, K = 2 (K/N = 0.5), P_pos = 0.5,
P_neg = (0.25, 0.125):
    -log(0.5 / 1.0) - log(0.5 / 0.75) - log(0.5 / 0.625)
    = 0.693147 + 0.405465 + 0.223144 = 1.321756.

Hand case 2 (the whole term, first batch). N = 4 rows, feature_dim = 2,
K = 2, temperature 1, heads set to the identity (so v = x / ||x||), batch
indices [0, 2]. Teacher bank rows all (1, 0); student bank rows all (0, 1).
Student features (1, 0), (2, 0) -> v_s = (1, 0); teacher features (3, 4),
(6, 8) -> v_t = (0.6, 0.8).
Student anchor vs teacher bank: every score (positive or negative, whichever
rows are drawn) is exp(v_s . (1, 0)) = e, so Z_s = N * mean = 4e = 10.873127
and every P = 1/4. Teacher anchor vs student bank: every score exp(0.8), so
Z_t = 4 e^0.8 = 8.902164 and again P = 1/4. Each side:
    -log(0.25 / 0.75) - 2 log(0.5 / 0.75) = log 3 + 2 log 1.5 = 1.909543;
the term is 2 * 1.909543 = 3.819085 for every example.
Bank update (momentum 0.5), rows 0 and 2 only:
    student rows: normalize(0.5 (0, 1) + 0.5 (1, 0)) = (0.707107, 0.707107);
    teacher rows: normalize(0.5 (1, 0) + 0.5 (0.6, 0.8)) = normalize(0.8, 0.4)
                = (0.894427, 0.447214);  rows 1 and 3 unchanged.

Hand case 3 (Z already set): as case 2 but Z_s = 4, Z_t = 2 and v_t = (1, 0).
Student side: P = e / 4 = 0.679570 for all, P + K/N = 1.179570:
    -log(0.679570 / 1.179570) - 2 log(0.5 / 1.179570) = 0.551520 + 1.716520 = 2.268040.
Teacher side: scores exp(0) = 1, P = 1/2: -log(0.5) - 2 log(0.5) = 3 log 2 = 2.079442.
Total 4.347482.
"""

import math

import numpy as np
import keras
import pytest
import tensorflow as tf

from keras_distill import Distiller
from keras_distill.losses.crd import CRD, nce_loss
from keras_distill.testing import (assert_replica_equivalence, build_term, conv_net,
                                   teacher_gradients, term_value)


def _hand_term(teacher_rows, student_rows, z=None):
    term = CRD(num_examples=4, feature_dim=2, num_negatives=2, temperature=1.0, seed=0)
    example = {"embedding": np.zeros((2, 2), "float32")}
    build_term(term, example, example)
    for head in (term.student_head, term.teacher_head):
        head.dense.kernel.assign(np.eye(2, dtype="float32"))
        head.dense.bias.assign(np.zeros(2, "float32"))
    term.teacher_bank.assign(np.tile(np.array(teacher_rows, "float32"), (4, 1)))
    term.student_bank.assign(np.tile(np.array(student_rows, "float32"), (4, 1)))
    if z is not None:
        term.student_anchor_z.assign(z[0])
        term.teacher_anchor_z.assign(z[1])
    return term


INDEX = {"index": np.array([0, 2])}


def test_nce_golden_value():
    value = nce_loss(tf.constant([0.5]), tf.constant([[0.25, 0.125]]), num_examples=4)
    assert float(value[0]) == pytest.approx(1.321756, abs=1e-5)


def test_first_batch_sets_z_and_gives_the_hand_value():
    term = _hand_term([1, 0], [0, 1])
    student = {"embedding": np.array([[1, 0], [2, 0]], "float32")}
    teacher = {"embedding": np.array([[3, 4], [6, 8]], "float32")}
    value = term_value(term, teacher, student, side_inputs=INDEX, training=True)
    assert value == pytest.approx(3.819085, abs=1e-4)
    assert float(term.student_anchor_z.numpy()) == pytest.approx(4 * math.e, rel=1e-6)
    assert float(term.teacher_anchor_z.numpy()) == pytest.approx(4 * math.exp(0.8), rel=1e-6)


def test_memory_bank_update_touches_only_the_batch_rows():
    term = _hand_term([1, 0], [0, 1])
    student = {"embedding": np.array([[1, 0], [2, 0]], "float32")}
    teacher = {"embedding": np.array([[3, 4], [6, 8]], "float32")}
    term_value(term, teacher, student, side_inputs=INDEX, training=True)
    np.testing.assert_allclose(term.student_bank.numpy(), [
        [0.707107, 0.707107], [0, 1], [0.707107, 0.707107], [0, 1]], atol=1e-6)
    np.testing.assert_allclose(term.teacher_bank.numpy(), [
        [0.894427, 0.447214], [1, 0], [0.894427, 0.447214], [1, 0]], atol=1e-6)


def test_z_is_set_once_and_evaluation_changes_no_state():
    term = _hand_term([1, 0], [0, 1], z=(4.0, 2.0))
    student = {"embedding": np.array([[1, 0], [2, 0]], "float32")}
    teacher = {"embedding": np.array([[1, 0], [5, 0]], "float32")}
    banks = (term.student_bank.numpy(), term.teacher_bank.numpy())
    value = term_value(term, teacher, student, side_inputs=INDEX, training=False)
    assert value == pytest.approx(4.347482, abs=1e-4)
    np.testing.assert_array_equal(term.student_bank.numpy(), banks[0])
    np.testing.assert_array_equal(term.teacher_bank.numpy(), banks[1])
    assert term_value(term, teacher, student, side_inputs=INDEX, training=True) == \
        pytest.approx(4.347482, abs=1e-4)
    assert (float(term.student_anchor_z.numpy()), float(term.teacher_anchor_z.numpy())) == \
        (4.0, 2.0)


def test_matches_a_numpy_reference_on_random_banks():
    rng = np.random.default_rng(0)
    n, k, dim, tau = 10, 7, 3, 0.5
    term = CRD(num_examples=n, feature_dim=dim, num_negatives=k, temperature=tau, seed=5)
    teacher = {"embedding": rng.normal(size=(4, 6)).astype("float32")}
    student = {"embedding": rng.normal(size=(4, 5)).astype("float32")}
    build_term(term, teacher, student)
    index = np.array([3, 0, 9, 4])
    v_s = term.student_head(student["embedding"]).numpy().astype("float64")
    v_t = term.teacher_head(teacher["embedding"]).numpy().astype("float64")
    m_s, m_t = term.student_bank.numpy().astype("float64"), term.teacher_bank.numpy()
    # The term's first draw of its seeded sampler, reproduced:
    negatives = keras.random.randint((k,), 0, n, seed=keras.random.SeedGenerator(5)).numpy()

    def side(v, bank):
        pos = np.exp((v * bank[index]).sum(1) / tau)
        neg = np.exp(v @ bank[negatives].T / tau)
        z = n * np.concatenate([pos, neg.ravel()]).mean()
        pos, neg = pos / z, neg / z
        return (-np.log(pos / (pos + k / n + 1e-7))
                - np.log((k / n) / (neg + k / n + 1e-7)).sum(1))

    expected = np.mean(side(v_s, m_t) + side(v_t, m_s))
    value = term_value(term, teacher, student, side_inputs={"index": index}, training=True)
    assert value == pytest.approx(expected, rel=1e-4)


def test_no_gradient_reaches_teacher_but_heads_and_student_learn():
    rng = np.random.default_rng(1)
    teacher = {"embedding": rng.normal(size=(4, 6)).astype("float32")}
    student = {"embedding": rng.normal(size=(4, 5)).astype("float32")}
    term = build_term(CRD(num_examples=8, feature_dim=4, num_negatives=3, seed=1),
                      teacher, student)
    t_grads, s_grads = teacher_gradients(term, teacher, student,
                                         side_inputs={"index": np.arange(4)})
    assert t_grads["embedding"] is None
    assert np.abs(s_grads["embedding"].numpy()).sum() > 0
    with tf.GradientTape() as tape:
        value = term(0.0, {"teacher": teacher, "student": student,
                           "side_inputs": {"index": np.arange(4)}, "training": True})
    heads = term.teacher_head.trainable_variables + term.student_head.trainable_variables
    assert all(g is not None and np.abs(g.numpy()).sum() > 0
               for g in tape.gradient(value, heads))
    assert len(term.adapters) == 2


def test_one_and_two_replicas_give_the_same_losses_weights_and_banks():
    rng = np.random.default_rng(0)
    x, y = rng.random((16, 8, 8, 1)).astype("float32"), rng.integers(0, 3, 16)
    made = []

    def make():
        teacher = conv_net("t", 4, batch_norm=True, seed=1)
        student = conv_net("s", 4, batch_norm=False, seed=2)
        term = CRD(num_examples=16, feature_dim=4, num_negatives=5, seed=3)
        made.append(term)
        return Distiller(teacher, student, [term], [0.8], student_loss_weight=1.0)

    single, _ = assert_replica_equivalence(make, x, y, batch_size=8, steps=2,
                                           side_inputs={"index": np.arange(16)})
    assert single["crd"][0] > 0
    one, two = made
    for name in ("student_bank", "teacher_bank", "student_anchor_z", "teacher_anchor_z"):
        expected = one.state_variables[name].numpy()
        copies = two.state_variables[name].value.values  # each replica's own copy
        assert len(copies) == 2
        for copy in copies:
            np.testing.assert_allclose(copy.numpy(), expected, rtol=1e-5, atol=1e-6,
                                       err_msg=f"{name} differs between 1 and 2 replicas")
    assert float(one.student_anchor_z.numpy()) > 0


def test_distiller_needs_index_for_training_but_skips_the_term_in_evaluation():
    rng = np.random.default_rng(0)
    x, y = rng.random((8, 8, 8, 1)).astype("float32"), rng.integers(0, 3, 8)
    distiller = Distiller(conv_net("t", 4), conv_net("s", 4),
                          [CRD(num_examples=8, feature_dim=4, num_negatives=3)], [0.8])
    distiller.compile(optimizer="sgd",
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    with pytest.raises(ValueError, match=r"reads side input\(s\) \['index'\]"):
        distiller.fit(x, y, batch_size=4, epochs=1, verbose=0)
    logs = distiller.evaluate(x, y, batch_size=4, verbose=0, return_dict=True)
    assert "crd" not in logs and logs["student_loss"] > 0  # skipped: nothing to report


def test_banks_z_and_sampler_are_checkpointed_with_the_distiller(tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.random((16, 8, 8, 1)).astype("float32"), rng.integers(0, 3, 16)
    dataset = tf.data.Dataset.from_tensor_slices(
        ({"inputs": x, "index": np.arange(16)}, y)).batch(8)

    def make(seed):
        term = CRD(num_examples=16, feature_dim=4, num_negatives=5, seed=seed)
        return term, Distiller(conv_net("t", 4, seed=1), conv_net("s", 4, seed=2), [term], [0.8])

    term, distiller = make(0)
    distiller.compile(optimizer=keras.optimizers.SGD(0.1),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    distiller.fit(dataset, epochs=1, verbose=0)
    distiller.save_weights(tmp_path / "crd.weights.h5")
    restored, other = make(9)  # different initial banks and sampler seed
    other.load_weights(tmp_path / "crd.weights.h5")
    assert set(term.state_variables) == {"student_bank", "teacher_bank", "student_anchor_z",
                                         "teacher_anchor_z", "sampler_state"}
    for name, variable in term.state_variables.items():
        np.testing.assert_array_equal(restored.state_variables[name].numpy(), variable.numpy())


def test_index_outside_the_bank_is_refused():
    term = _hand_term([1, 0], [0, 1])
    example = {"embedding": np.ones((2, 2), "float32")}
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"in \[0, num_examples=4\)"):
        term_value(term, example, example, side_inputs={"index": np.array([1, 4])},
                   training=True)


def test_serialization_round_trip():
    term = CRD(num_examples=50, feature_dim=16, num_negatives=64, temperature=0.1,
               momentum=0.9, teacher_tap="stage3", student_tap="stage2", seed=7, name="c")
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(term))
    assert isinstance(restored, CRD)
    assert restored.get_config() == term.get_config()
    assert restored.side_inputs == ("index",)


@pytest.mark.parametrize("kwargs, message", [
    ({"num_examples": 0}, "num_examples must be >= 1"),
    ({"num_examples": 10, "temperature": 0.0}, "temperature must be > 0"),
    ({"num_examples": 10, "momentum": 1.0}, r"momentum must be in \[0, 1\)"),
    ({"num_examples": 10, "num_negatives": 0}, "num_negatives must be >= 1"),
    ({"num_examples": 10, "feature_dim": 0}, "feature_dim must be >= 1"),
])
def test_bad_arguments_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        CRD(**kwargs)
