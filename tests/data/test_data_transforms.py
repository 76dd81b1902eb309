"""Robustness transforms: exact counts, seeded, JSON reports, clear errors."""

import json

import numpy as np
import pytest

from keras_distill import data
from keras_distill.data.classes import CIFAR100_SUPERCLASS_OF


def balanced_labels(num_classes=10, per_class=100):
    return np.repeat(np.arange(num_classes), per_class)


def test_symmetric_noise_flips_exactly_and_never_keeps_the_class():
    y = balanced_labels()  # 1000 labels
    y_noisy, report = data.symmetric_label_noise(y, 0.4, num_classes=10, seed=0)
    changed = np.flatnonzero(y_noisy != y)
    assert len(changed) == 400 == report["num_flipped"]
    assert report["flipped_indices"] == changed.tolist()  # no flip keeps its class
    assert report["counts_before"] == [100] * 10 and sum(report["counts_after"]) == 1000
    matrix = np.array(report["transition_matrix"])
    np.testing.assert_allclose(matrix.sum(axis=1), 1.0)
    assert np.isclose(np.trace(matrix) / 10, 0.6)
    assert np.array(report["transition_counts"]).sum() == 1000
    json.loads(json.dumps(report))
    again, _ = data.symmetric_label_noise(y, 0.4, num_classes=10, seed=0)
    other, _ = data.symmetric_label_noise(y, 0.4, num_classes=10, seed=1)
    np.testing.assert_array_equal(again, y_noisy)
    assert not np.array_equal(other, y_noisy)


def test_symmetric_noise_is_uniform_over_the_other_classes():
    y = np.repeat(np.arange(5), 20_000)
    y_noisy, report = data.symmetric_label_noise(y, 0.5, num_classes=5, seed=0)
    counts = np.array(report["transition_counts"])
    off_diagonal = counts[~np.eye(5, dtype=bool)].reshape(5, 4)
    # Each class sends ~10000 * 1/4 = 2500 to each other class.
    assert np.all(np.abs(off_diagonal - 2500) < 250)


def test_symmetric_noise_rounding_and_zero_rate():
    y = balanced_labels(per_class=3)  # 30 labels: 0.25 * 30 = 7.5 -> 8
    assert data.symmetric_label_noise(y, 0.25, seed=0)[1]["num_flipped"] == 8
    y_same, report = data.symmetric_label_noise(y, 0.0, seed=0)
    np.testing.assert_array_equal(y_same, y)
    assert report["num_flipped"] == 0


def test_asymmetric_noise_cifar10_pairs():
    y = balanced_labels()
    y_noisy, report = data.asymmetric_label_noise(y, 0.4, "cifar10", seed=0)
    # truck->automobile, bird->airplane, deer->horse, cat<->dog: 40 of each source.
    moved = {(int(a), int(b)): 0 for a, b in zip(y, y_noisy) if a != b}
    for a, b in zip(y, y_noisy):
        if a != b:
            moved[(int(a), int(b))] += 1
    assert moved == {(9, 1): 40, (2, 0): 40, (4, 7): 40, (3, 5): 40, (5, 3): 40}
    assert report["num_flipped"] == 200
    assert report["counts_after"] == [140, 140, 60, 100, 60, 100, 100, 140, 100, 60]
    assert report["class_map"] == [[2, 0], [3, 5], [4, 7], [5, 3], [9, 1]]
    assert np.isclose(report["transition_matrix"][9][1], 0.4)
    json.loads(json.dumps(report))


def test_asymmetric_noise_by_dataset_name_and_dict():
    y = balanced_labels(per_class=10)
    y_fashion, report = data.asymmetric_label_noise(y, 0.3, dataset="fashion_mnist", seed=0)
    assert report["class_map"] == [[0, 6], [2, 4], [7, 9]] and report["num_flipped"] == 9
    y_dict, _ = data.asymmetric_label_noise(y, 0.3, {0: 6, 2: 4, 7: 9}, seed=0)
    np.testing.assert_array_equal(y_fashion, y_dict)


def test_cifar100_maps_stay_within_superclasses():
    superclass = np.asarray(CIFAR100_SUPERCLASS_OF)
    assert np.bincount(superclass).tolist() == [5] * 20
    mapping = data.ASYMMETRIC_NOISE_MAPS["cifar100"]
    assert sorted(mapping) == sorted(mapping.values()) == list(range(100))  # a permutation
    assert all(superclass[s] == superclass[t] and s != t for s, t in mapping.items())
    assert mapping[4] == 30  # beaver -> dolphin (aquatic mammals: 4, 30, 55, 72, 95)
    assert mapping[95] == 4  # whale -> beaver (circular)
    blocks = data.ASYMMETRIC_NOISE_MAPS["cifar100_blocks"]
    assert blocks[0] == 1 and blocks[4] == 0 and blocks[99] == 95


def test_long_tailed_exponential_exact_counts():
    y = balanced_labels(per_class=500)
    x = np.arange(len(y)).reshape(-1, 1, 1, 1)  # each image codes its row
    x_lt, y_lt, report = data.long_tailed_imbalance(x, y, ratio=100, profile="exponential", seed=0)
    expected = [500, 299, 179, 107, 64, 38, 23, 13, 8, 5]
    assert report["counts_after"] == expected == np.bincount(y_lt).tolist()
    assert report["targets"] == expected and report["realised_ratio"] == 100.0
    np.testing.assert_array_equal(y[x_lt.ravel()], y_lt)  # images stay with their labels
    assert report["kept_indices"] == x_lt.ravel().tolist()
    json.loads(json.dumps(report))
    again = data.long_tailed_imbalance(x, y, ratio=100, seed=0)[0]
    other = data.long_tailed_imbalance(x, y, ratio=100, seed=1)[0]
    np.testing.assert_array_equal(again, x_lt)
    assert not np.array_equal(other, x_lt)


def test_long_tailed_step_and_ratio_one():
    y = balanced_labels(per_class=500)
    _, y_step, report = data.long_tailed_imbalance(None, y, ratio=10, profile="step")
    assert report["counts_after"] == [500] * 5 + [50] * 5
    _, y_same, _ = data.long_tailed_imbalance(None, y, ratio=1)
    np.testing.assert_array_equal(y_same, y)
    assert data.long_tailed_counts(500, 10, 10) == [500, 387, 299, 232, 179, 139, 107, 83, 64, 50]


@pytest.mark.parametrize("rate", [1.0, -0.1, 1.5])
def test_rate_outside_unit_interval(rate):
    y = balanced_labels()
    with pytest.raises(data.DataError, match=r"rate must be in \[0, 1\)"):
        data.symmetric_label_noise(y, rate, 10)
    with pytest.raises(data.DataError, match=r"rate must be in \[0, 1\)"):
        data.asymmetric_label_noise(y, rate, "cifar10")


def test_transform_errors():
    y = balanced_labels()
    with pytest.raises(data.DataError, match="imbalance ratio must be >= 1.*got 0.5"):
        data.long_tailed_imbalance(None, y, ratio=0.5)
    with pytest.raises(data.DataError, match="Unknown imbalance profile 'linear'"):
        data.long_tailed_imbalance(None, y, ratio=10, profile="linear")
    with pytest.raises(data.DataError, match="No default asymmetric noise map for 'svhn'"):
        data.asymmetric_label_noise(y, 0.2, "svhn")
    with pytest.raises(data.DataError, match="needs class_map="):
        data.asymmetric_label_noise(y, 0.2)
    with pytest.raises(data.DataError, match="maps class 3 to itself"):
        data.asymmetric_label_noise(y, 0.2, {3: 3})
    with pytest.raises(data.DataError, match=r"outside \[0, 10\)"):
        data.asymmetric_label_noise(y, 0.2, {3: 12}, num_classes=10)
    with pytest.raises(data.DataError, match="looks like one-hot"):
        data.symmetric_label_noise(np.eye(10)[y], 0.2)
    with pytest.raises(data.DataError, match="out of range for num_classes=5"):
        data.symmetric_label_noise(y, 0.2, num_classes=5)
