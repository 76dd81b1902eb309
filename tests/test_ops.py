"""Golden values of `keras_distill.ops`, each derived by hand in its test's comment.

Linear CKA (moved from tests/test_cka.py): hand value, invariances, numpy
parity, replicas. Hand derivation (test_golden_value). X = [[1], [2], [3]],
Y = [[1], [3], [2]] (n = 3 examples, one feature each). Centred:
x = [-1, 0, 1], y = [-1, 1, 0]. Y^T X = x . y = 1 + 0 + 0 = 1; X^T X = 2;
Y^T Y = 2. CKA = 1^2 / (2 * 2) = 0.25 (for one feature, CKA is the squared
correlation: corr = 1 / 2, squared 0.25).
"""

import math

import numpy as np
import keras
import pytest
import tensorflow as tf

from keras_distill.ops import (
    attention_map, average_pool, cosine_similarity_matrix, flatten_examples, gather_replicas,
    gram_matrix, kl_from_log_probabilities, kl_from_target, l2_normalize, linear_cka,
    log_softmax_kl, mean_per_example, pairwise_distances, pool_factors, replica_context)
from keras_distill.testing import two_replica_strategy


def _numpy(x):
    return keras.ops.convert_to_numpy(x)


def _f32(x):
    return np.asarray(x, "float32")


# ------------------------------------------------------------- softened KL
def test_kl_from_log_probabilities_golden():
    # p = [1/2, 1/2], q = [1/4, 3/4]:
    # KL = 1/2 ln((1/2)/(1/4)) + 1/2 ln((1/2)/(3/4)) = 1/2 ln 2 + 1/2 ln(2/3)
    #    = 1/2 ln(4/3) = 0.1438410.  KL(p || p) = 0.
    log_p = np.log(_f32([[0.5, 0.5], [0.5, 0.5]]))
    log_q = np.log(_f32([[0.25, 0.75], [0.5, 0.5]]))
    np.testing.assert_allclose(_numpy(kl_from_log_probabilities(log_p, log_q)),
                               [0.5 * math.log(4 / 3), 0.0], atol=1e-6)


def test_log_softmax_kl_golden():
    # T = 2. Teacher z_t = [0, 0] -> p = softmax([0, 0]) = [1/2, 1/2].
    # Student z_s = [0, 2 ln 3] -> z_s / T = [0, ln 3] -> q = [1, 3] / 4.
    # KL(p || q) = 1/2 ln(4/3) (above); times T^2 = 4: 2 ln(4/3) = 0.5753641.
    # Equal logits give 0.
    teacher = _f32([[0.0, 0.0], [1.0, -1.0]])
    student = _f32([[0.0, 2.0 * math.log(3.0)], [1.0, -1.0]])
    np.testing.assert_allclose(_numpy(log_softmax_kl(teacher, student, 2.0)),
                               [2.0 * math.log(4 / 3), 0.0], atol=1e-5)


def test_kl_from_target_golden_and_zero_entries():
    # Row 1, T = 1: one-hot target t = [1, 0], student z_s = [ln 3, 0] -> q = [3/4, 1/4].
    # KL(t || q) = 1 * ln(1 / (3/4)) + (0 log 0 := 0) = ln(4/3) = 0.2876821 (= CE).
    # Row 2, T = 1: t = [1/2, 1/2], z_s = [0, ln 3] -> q = [1/4, 3/4]: 1/2 ln(4/3).
    target = _f32([[1.0, 0.0], [0.5, 0.5]])
    student = _f32([[math.log(3.0), 0.0], [0.0, math.log(3.0)]])
    np.testing.assert_allclose(_numpy(kl_from_target(target, student, 1.0)),
                               [math.log(4 / 3), 0.5 * math.log(4 / 3)], atol=1e-6)
    # T = 2 scales the logits by 1/2 and the result by 4:
    # z_s = [0, 2 ln 3] / 2 -> q = [1/4, 3/4], KL = 1/2 ln(4/3), times 4 = 2 ln(4/3).
    value = kl_from_target(_f32([[0.5, 0.5]]), _f32([[0.0, 2.0 * math.log(3.0)]]), 2.0)
    np.testing.assert_allclose(_numpy(value), [2.0 * math.log(4 / 3)], atol=1e-5)


def test_kl_from_target_equals_log_softmax_kl_on_a_teacher_target():
    # With t = softmax(z_t / T) both compute T^2 KL(softmax(z_t/T) || softmax(z_s/T)).
    rng = np.random.default_rng(0)
    teacher, student = _f32(rng.normal(size=(4, 5))), _f32(rng.normal(size=(4, 5)))
    target = keras.ops.softmax(teacher / 3.0, axis=-1)
    np.testing.assert_allclose(_numpy(kl_from_target(target, student, 3.0)),
                               _numpy(log_softmax_kl(teacher, student, 3.0)), rtol=1e-4)


# -------------------------------------------------------------- feature maps
def test_pool_factors_golden_and_errors():
    # (8, 8) vs (4, 2): heights 8 / 4 = 2, widths 8 / 2 = 4; the smaller map keeps (1, 1).
    assert pool_factors((None, 8, 8, 3), (None, 4, 2, 5), "pair") == ((2, 4), (1, 1))
    assert pool_factors((None, 4, 4, 3), (None, 8, 8, 3), "pair") == ((1, 1), (2, 2))
    assert pool_factors((None, None, None, 3), (None, None, None, 6), "pair") == \
        ((1, 1), (1, 1))
    with pytest.raises(ValueError, match="not integer multiples"):
        pool_factors((None, 6, 6, 3), (None, 4, 4, 3), "pair")
    with pytest.raises(ValueError, match="4-D feature maps"):
        pool_factors((None, 6, 3), (None, 6, 6, 3), "pair")
    with pytest.raises(ValueError, match="partly unknown"):
        pool_factors((None, None, 4, 3), (None, 4, 4, 3), "pair")


def test_average_pool_golden():
    # The 2x2 map [[1, 2], [3, 4]]: factors (2, 2) average all four, (1+2+3+4)/4 = 2.5;
    # factors (1, 2) average each row: [[1.5], [3.5]]; (1, 1) is the identity.
    feature = _f32([[1.0, 2.0], [3.0, 4.0]]).reshape(1, 2, 2, 1)
    np.testing.assert_allclose(_numpy(average_pool(feature, (2, 2))).ravel(), [2.5])
    np.testing.assert_allclose(_numpy(average_pool(feature, (1, 2))).ravel(), [1.5, 3.5])
    assert average_pool(feature, (1, 1)) is feature


def test_attention_map_golden():
    # F of shape (1, 1, 2, 2): position 0 has channels [1, -1], position 1 has [2, 0].
    # p = 2: v = [mean(1, 1), mean(4, 0)] = [1, 2], ||v|| = sqrt(5): [1, 2] / sqrt(5).
    # p = 1: v = [mean(1, 1), mean(2, 0)] = [1, 1]: [1, 1] / sqrt(2).
    feature = _f32([[[[1.0, -1.0], [2.0, 0.0]]]])
    np.testing.assert_allclose(_numpy(attention_map(feature)),
                               [[1 / math.sqrt(5), 2 / math.sqrt(5)]], atol=1e-6)
    np.testing.assert_allclose(_numpy(attention_map(feature, p=1.0)),
                               [[1 / math.sqrt(2), 1 / math.sqrt(2)]], atol=1e-6)
    # An all-zero map stays 0 (division by max(||v||, 1e-12)), not NaN.
    np.testing.assert_array_equal(_numpy(attention_map(np.zeros((1, 2, 2, 3), "float32"))), 0)


def test_mean_per_example_golden():
    # Example 1: (1 + 2 + 3 + 4) / 4 = 2.5. Example 2: (0 + 0 + 0 + 8) / 4 = 2.
    values = _f32([[[1.0, 2.0], [3.0, 4.0]], [[0.0, 0.0], [0.0, 8.0]]])
    np.testing.assert_allclose(_numpy(mean_per_example(values)), [2.5, 2.0])


# ----------------------------------------------------------- batch relations
def test_flatten_examples_golden():
    # (2, 2, 3) integers -> (2, 6) float32, row-major: row 0 is 0..5, row 1 is 6..11.
    flat = _numpy(flatten_examples(np.arange(12).reshape(2, 2, 3)))
    assert flat.dtype == np.float32 and flat.shape == (2, 6)
    np.testing.assert_array_equal(flat, np.arange(12, dtype="float32").reshape(2, 6))


def test_pairwise_distances_golden():
    # Points a = (0, 0), b = (3, 4), c = (0, 4): |ab| = 5, |ac| = 4, |bc| = 3 (a 3-4-5
    # triangle); the diagonal is exactly 0.
    distances = _numpy(pairwise_distances(_f32([[0.0, 0.0], [3.0, 4.0], [0.0, 4.0]])))
    np.testing.assert_allclose(distances, [[0, 5, 4], [5, 0, 3], [4, 3, 0]], atol=1e-5)
    assert np.all(np.diag(distances) == 0.0)


def test_gram_matrix_golden():
    # Rows (1, 2) and (3, 4): 1*1 + 2*2 = 5, 1*3 + 2*4 = 11, 3*3 + 4*4 = 25.
    np.testing.assert_allclose(_numpy(gram_matrix(_f32([[1.0, 2.0], [3.0, 4.0]]))),
                               [[5.0, 11.0], [11.0, 25.0]])


def test_l2_normalize_golden():
    # (3, 4) has norm 5: (0.6, 0.8). Along axis 0 of [[3], [4]] the same. A zero vector
    # is divided by sqrt(1e-24) = 1e-12 and stays 0.
    np.testing.assert_allclose(_numpy(l2_normalize(_f32([[3.0, 4.0], [0.0, 0.0]]))),
                               [[0.6, 0.8], [0.0, 0.0]], atol=1e-7)
    np.testing.assert_allclose(_numpy(l2_normalize(_f32([[3.0], [4.0]]), axis=0)),
                               [[0.6], [0.8]], atol=1e-7)


def test_cosine_similarity_matrix_golden():
    # Rows (1, 0), (2, 2), (0, 0): cos((1, 0), (2, 2)) = 2 / (1 * 2 sqrt(2)) = 1 / sqrt(2);
    # a zero row is divided by sqrt(1e-24) and stays 0, so its cosines are 0.
    cosine = _numpy(cosine_similarity_matrix(_f32([[1.0, 0.0], [2.0, 2.0], [0.0, 0.0]])))
    h = 1 / math.sqrt(2)
    np.testing.assert_allclose(cosine, [[1, h, 0], [h, 1, 0], [0, 0, 0]], atol=1e-6)


def test_replica_context_is_none_outside_a_multi_replica_step():
    # Eager, default strategy: one replica, so no gather is needed.
    assert replica_context() is None
    x = _f32([[1.0], [2.0]])
    assert gather_replicas(x) is x


# ----------------------------------------------------------------- linear CKA
def numpy_cka(x, y):
    """The feature-space formula, written directly."""
    x = x.reshape(len(x), -1).astype("float64")
    y = y.reshape(len(y), -1).astype("float64")
    x, y = x - x.mean(0), y - y.mean(0)
    return np.linalg.norm(y.T @ x) ** 2 / (np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y))


def _cka(x, y):
    return float(linear_cka(np.asarray(x, "float32"), np.asarray(y, "float32")))


def test_golden_value():
    assert _cka([[1.0], [2.0], [3.0]], [[1.0], [3.0], [2.0]]) == pytest.approx(0.25, abs=1e-6)


def test_identity_is_one():
    x = np.random.default_rng(0).normal(size=(16, 5, 5, 3))
    assert _cka(x, x) == pytest.approx(1.0, abs=1e-5)


def test_invariant_to_orthogonal_transform_and_isotropic_scaling():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(20, 6)), rng.normal(size=(20, 4))
    orthogonal, _ = np.linalg.qr(rng.normal(size=(6, 6)))
    reference = _cka(x, y)
    assert _cka(x @ orthogonal, y) == pytest.approx(reference, abs=1e-5)
    assert _cka(3.7 * x, 0.2 * y) == pytest.approx(reference, abs=1e-5)
    assert _cka(x + 5.0, y) == pytest.approx(reference, abs=1e-5)  # centring
    assert _cka(x @ orthogonal * 2.0, x) == pytest.approx(1.0, abs=1e-5)


def test_matches_numpy_with_different_widths_and_feature_maps():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(12, 4, 4, 3))   # 48 features
    y = rng.normal(size=(12, 2, 2, 7)) + 0.5 * x[:, :2, :2, :1]  # 28 features, correlated
    assert _cka(x, y) == pytest.approx(numpy_cka(x, y), rel=1e-4)
    assert 0.0 < _cka(x, y) < 1.0
    assert _cka(x, y) == pytest.approx(_cka(y, x), rel=1e-5)


def test_constant_side_gives_zero_not_nan():
    x = np.ones((8, 3))
    assert _cka(x, np.random.default_rng(3).normal(size=(8, 3))) == 0.0


def test_across_replicas_equals_the_global_batch():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(8, 6)).astype("float32")
    y = (x[:, :3] * 2 + rng.normal(size=(8, 3))).astype("float32")
    strategy = two_replica_strategy()
    dataset = strategy.experimental_distribute_dataset(
        tf.data.Dataset.from_tensor_slices((x, y)).batch(8))

    @tf.function
    def step(batch):
        def replica(a, b):
            return linear_cka(a, b, across_replicas=True), linear_cka(a, b), \
                tf.shape(gather_replicas(a))[0]
        return strategy.run(replica, args=batch)

    global_value, local_value, gathered = step(next(iter(dataset)))
    values = strategy.experimental_local_results(global_value)
    assert [int(n) for n in strategy.experimental_local_results(gathered)] == [8, 8]
    for value in values:
        assert float(value) == pytest.approx(numpy_cka(x, y), rel=1e-5)
    # Without the gather each replica sees its half: a different number.
    local = [float(v) for v in strategy.experimental_local_results(local_value)]
    assert local[0] == pytest.approx(numpy_cka(x[:4], y[:4]), rel=1e-4)
    assert abs(local[0] - numpy_cka(x, y)) > 1e-3
