"""Linear CKA: hand value, invariances, numpy parity, replicas.

Hand derivation (test_golden_value). X = [[1], [2], [3]], Y = [[1], [3], [2]]
(n = 3 examples, one feature each). Centred: x = [-1, 0, 1], y = [-1, 1, 0].
Y^T X = x . y = 1 + 0 + 0 = 1; X^T X = 2; Y^T Y = 2.
CKA = 1^2 / (2 * 2) = 0.25 (for one feature, CKA is the squared correlation:
corr = 1 / 2, squared 0.25).
"""

import numpy as np
import pytest
import tensorflow as tf

from keras_distill.cka import gather_replicas, linear_cka
from keras_distill.testing import two_replica_strategy


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
