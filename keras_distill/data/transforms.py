"""Seeded training-set transforms for the robustness protocols.

Symmetric and asymmetric label noise, and long-tailed class imbalance, as in
"Knowledge Distillation Beyond Model Compression" (Sarfraz et al., 2020).
Apply them to the training split only (`splits.with_train(...)`). Each
returns the new data and a JSON-serialisable report.

Counts are exact, not expected values: symmetric noise at `rate` flips
exactly `round(rate * N)` labels; asymmetric noise flips exactly
`round(rate * N_c)` labels of each source class `c`.
"""

from __future__ import annotations

from typing import Mapping, Optional, Union

import numpy as np

from keras_distill.data.classes import CIFAR100_SUPERCLASS_OF
from keras_distill.data.splits import DataError, check_fraction, check_labels


def _cifar100_superclass_map() -> dict:
    """Each fine class -> the next fine class (by index) of its superclass, circularly."""
    mapping = {}
    superclass_of = np.asarray(CIFAR100_SUPERCLASS_OF)
    for superclass in range(int(superclass_of.max()) + 1):
        members = np.flatnonzero(superclass_of == superclass)
        for position, fine in enumerate(members):
            mapping[int(fine)] = int(members[(position + 1) % len(members)])
    return mapping


ASYMMETRIC_NOISE_MAPS = {
    # T-shirt/top -> Shirt, Pullover -> Coat, Sneaker -> Ankle boot.
    "fashion_mnist": {0: 6, 2: 4, 7: 9},
    # Patrini et al. 2017: truck -> automobile, bird -> airplane,
    # deer -> horse, cat <-> dog.
    "cifar10": {9: 1, 2: 0, 4: 7, 3: 5, 5: 3},
    # Each class -> the next class of its superclass (circular), using the
    # real CIFAR-100 superclasses.
    "cifar100": _cifar100_superclass_map(),
    # The variant of many public codebases (Patrini et al.'s, Co-teaching):
    # classes 5s..5s+4 treated as superclass s, each -> next index in its block.
    # These blocks are NOT the real superclasses; use it to compare with them.
    "cifar100_blocks": {c: (c // 5) * 5 + (c % 5 + 1) % 5 for c in range(100)},
    # Reed et al. 2014 / Ma et al. 2018: 2 -> 7, 3 -> 8, 7 -> 1, 5 <-> 6.
    "mnist": {2: 7, 3: 8, 7: 1, 5: 6, 6: 5},
}


def _counts(y: np.ndarray, num_classes: int) -> list:
    return [int(c) for c in np.bincount(y, minlength=num_classes)]


def _transition(y_before, y_after, num_classes):
    counts = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(counts, (y_before, y_after), 1)
    totals = counts.sum(axis=1, keepdims=True)
    matrix = np.divide(counts, totals, out=np.zeros(counts.shape), where=totals > 0)
    return counts.tolist(), matrix.tolist()


def _num_classes(y, num_classes, *more):
    if num_classes is not None:
        return int(num_classes)
    return int(max([int(y.max())] + [int(m) for m in more])) + 1


def _noise_report(kind, y, y_noisy, flipped, num_classes, rate, seed, **more):
    counts, matrix = _transition(y, y_noisy, num_classes)
    report = {
        "transform": kind,
        "rate": float(rate),
        "seed": int(seed),
        "num_examples": int(len(y)),
        "num_classes": int(num_classes),
        "num_flipped": int(len(flipped)),
        "flipped_fraction": float(len(flipped) / len(y)),
        "counts_before": _counts(y, num_classes),
        "counts_after": _counts(y_noisy, num_classes),
        "transition_counts": counts,
        "transition_matrix": matrix,
        "flipped_indices": [int(i) for i in np.sort(flipped)],
    }
    report.update(more)
    return report


def symmetric_label_noise(
    y, rate: float, num_classes: Optional[int] = None, seed: int = 0
) -> tuple:
    """Flips exactly `round(rate * N)` labels, each to a uniformly chosen other class.

    The flipped examples are a seeded uniform sample without replacement; a
    flipped label never keeps its class (so the realised noise rate is
    exactly `rate`, unlike the "uniform over all classes" variant).

    Args:
        y: Integer labels `(N,)`.
        rate: Share of labels to flip, in `[0, 1)`.
        num_classes: `K`; default the largest label + 1.
        seed: Seed of the choice of examples and of new labels.

    Returns:
        `(y_noisy, report)`. `report` (JSON-serialisable) holds `num_flipped`,
        `counts_before` / `counts_after` per class, the realised transition
        matrix `transition_matrix[i][j]` (share of class-`i` examples now
        labelled `j`), its counts, and `flipped_indices`.

    Raises:
        DataError: `rate` outside [0, 1), bad labels, fewer than 2 classes.

    Example:

    ```python
    y_noisy, report = symmetric_label_noise(y_train, 0.4, num_classes=10, seed=0)
    splits = splits.with_train(x_train, y_noisy)
    ```

    Reference:
        Sarfraz et al., "Knowledge Distillation Beyond Model Compression",
        ICPR 2020, https://arxiv.org/abs/2007.01922
    """
    rate = check_fraction(rate, "rate")
    y = check_labels(y, "y", num_classes)
    num_classes = _num_classes(y, num_classes)
    if num_classes < 2:
        raise DataError("symmetric label noise needs at least 2 classes.")
    rng = np.random.default_rng(seed)
    count = int(np.floor(rate * len(y) + 0.5))
    flipped = rng.choice(len(y), size=count, replace=False)
    y_noisy = y.copy()
    y_noisy[flipped] = (y[flipped] + rng.integers(1, num_classes, size=count)) % num_classes
    report = _noise_report("symmetric_label_noise", y, y_noisy, flipped, num_classes, rate, seed)
    return y_noisy, report


def asymmetric_label_noise(
    y,
    rate: float,
    class_map: Union[str, Mapping[int, int], None] = None,
    seed: int = 0,
    num_classes: Optional[int] = None,
    *,
    dataset: Optional[str] = None,
) -> tuple:
    """Flips exactly `round(rate * N_c)` labels of each source class `c` to `class_map[c]`.

    Classes not in the map keep all their labels. Pairs like cat <-> dog
    swap: both directions are drawn from the original labels.

    Default maps (`ASYMMETRIC_NOISE_MAPS`, pass the name):
    - `"fashion_mnist"`: T-shirt/top -> Shirt, Pullover -> Coat,
      Sneaker -> Ankle boot.
    - `"cifar10"` (Patrini et al. 2017): truck -> automobile,
      bird -> airplane, deer -> horse, cat <-> dog.
    - `"cifar100"`: each class -> the next class of its real superclass
      (in fine-label order, circularly).
    - `"cifar100_blocks"`: each class -> the next index within blocks of 5
      consecutive indices (what many public codebases do; not the real
      superclasses).
    - `"mnist"`: 2 -> 7, 3 -> 8, 7 -> 1, 5 <-> 6.

    Args:
        y: Integer labels `(N,)`.
        rate: Share of each source class to flip, in `[0, 1)`.
        class_map: `{source: target}` dict or a name above.
        seed: Seed of the choice of flipped examples.
        num_classes: `K`; default the largest label or map entry + 1.
        dataset: Dataset name whose default map to use when `class_map` is
            None, e.g. `dataset="cifar10"`.

    Returns:
        `(y_noisy, report)` with the same report fields as
        `symmetric_label_noise`, plus `class_map` as `[source, target]` pairs.

    Raises:
        DataError: `rate` outside [0, 1), unknown map name, a map entry
            outside `[0, K)` or mapping a class to itself.

    Reference:
        Patrini et al., "Making Deep Neural Networks Robust to Label Noise: a
        Loss Correction Approach", CVPR 2017, https://arxiv.org/abs/1609.03683
    """
    rate = check_fraction(rate, "rate")
    if class_map is None:
        if dataset is None:
            raise DataError(
                "asymmetric_label_noise needs class_map= (a {source: target} dict or "
                f"a name among {', '.join(sorted(ASYMMETRIC_NOISE_MAPS))}) or dataset=."
            )
        class_map = dataset
    if isinstance(class_map, str):
        key = class_map.lower().replace("-", "_")
        if key not in ASYMMETRIC_NOISE_MAPS:
            raise DataError(
                f"No default asymmetric noise map for {class_map!r}. Known: "
                f"{', '.join(sorted(ASYMMETRIC_NOISE_MAPS))}; pass class_map= as a "
                "{source: target} dict for other datasets."
            )
        class_map = ASYMMETRIC_NOISE_MAPS[key]
    class_map = {int(source): int(target) for source, target in dict(class_map).items()}
    if not class_map:
        raise DataError("class_map is empty: give at least one {source: target} pair.")
    y = check_labels(y, "y", num_classes)
    num_classes = _num_classes(y, num_classes, *class_map.keys(), *class_map.values())
    for source, target in class_map.items():
        if not (0 <= source < num_classes and 0 <= target < num_classes):
            raise DataError(
                f"class_map entry {source} -> {target} is outside [0, {num_classes}); "
                "pass the right num_classes or fix the map."
            )
        if source == target:
            raise DataError(f"class_map maps class {source} to itself; remove that entry.")
    rng = np.random.default_rng(seed)
    y_noisy = y.copy()
    flipped = []
    for source in sorted(class_map):
        members = np.flatnonzero(y == source)
        count = int(np.floor(rate * len(members) + 0.5))
        chosen = rng.choice(members, size=count, replace=False) if count else members[:0]
        y_noisy[chosen] = class_map[source]
        flipped.append(chosen)
    flipped = np.concatenate(flipped) if flipped else np.zeros((0,), np.int64)
    report = _noise_report(
        "asymmetric_label_noise",
        y,
        y_noisy,
        flipped,
        num_classes,
        rate,
        seed,
        class_map=[[s, t] for s, t in sorted(class_map.items())],
    )
    return y_noisy, report


def long_tailed_counts(
    n_max: int, num_classes: int, ratio: float, profile: str = "exponential"
) -> list:
    """Target examples per class of a long-tailed training set.

    - exponential: class `k` keeps `floor(n_max * ratio ** (-k / (K - 1)))`.
    - step: the first `K // 2` classes keep `n_max`, the others
      `floor(n_max / ratio)`.

    Class 0 is the head. Rounding down follows Cao et al. (LDAM) 2019.

    Args:
        n_max: Examples of the largest class.
        num_classes: `K`.
        ratio: Imbalance ratio `n_max / n_min`, at least 1.
        profile: `"exponential"` or `"step"`.

    Returns:
        A list of `K` counts.
    """
    ratio = float(ratio)
    if not ratio >= 1.0:
        raise DataError(
            f"imbalance ratio must be >= 1 (largest class / smallest class), got {ratio}. "
            "ratio=1 keeps the data balanced; e.g. ratio=100 keeps 1% of the last class."
        )
    if profile == "exponential":
        if num_classes == 1:
            return [int(n_max)]
        return [
            int(np.floor(n_max * ratio ** (-k / (num_classes - 1)) + 1e-6))
            for k in range(num_classes)
        ]
    if profile == "step":
        minority = int(np.floor(n_max / ratio + 1e-6))
        return [int(n_max) if k < num_classes // 2 else minority for k in range(num_classes)]
    raise DataError(f"Unknown imbalance profile {profile!r}; use 'exponential' or 'step'.")


def long_tailed_imbalance(
    x,
    y,
    ratio: float,
    profile: str = "exponential",
    seed: int = 0,
    num_classes: Optional[int] = None,
) -> tuple:
    """Subsamples the training set to a long-tailed class distribution.

    `n_max` is the size of the largest class. Class `k` keeps
    `floor(n_max * ratio ** (-k / (K - 1)))` examples (exponential) or, for
    the step profile, the first `K // 2` classes keep `n_max` and the rest
    `floor(n_max / ratio)`. A class with fewer examples than its target keeps
    them all. The kept examples of each class are a seeded random sample;
    their original order is preserved.

    Args:
        x: Images `(N, ...)` (or None to transform labels only).
        y: Integer labels `(N,)`.
        ratio: Imbalance ratio `n_max / n_min`, at least 1 (e.g. 10 or 100).
        profile: `"exponential"` or `"step"`.
        seed: Seed of the kept-example choice.
        num_classes: `K`; default the largest label + 1.

    Returns:
        `(x_kept, y_kept, report)`. `report` holds `counts_before`,
        `targets`, `counts_after`, `realised_ratio`, `kept_indices`.

    Raises:
        DataError: `ratio` < 1, unknown profile, bad labels.

    Example:

    ```python
    x_lt, y_lt, report = long_tailed_imbalance(x_train, y_train, ratio=100)
    # 10 classes x 500: counts_after == [500, 299, 179, 107, 64, 38, 23, 13, 8, 5]
    ```

    Reference:
        Cao et al., "Learning Imbalanced Datasets with Label-Distribution-Aware
        Margin Loss", NeurIPS 2019, https://arxiv.org/abs/1906.07413
    """
    y = check_labels(y, "y", num_classes)
    if x is not None and len(x) != len(y):
        raise DataError(f"{len(x)} images but {len(y)} labels; they must match.")
    num_classes = _num_classes(y, num_classes)
    counts_before = _counts(y, num_classes)
    targets = long_tailed_counts(max(counts_before), num_classes, ratio, profile)
    rng = np.random.default_rng(seed)
    kept = []
    for label in range(num_classes):
        members = np.flatnonzero(y == label)
        kept.append(rng.permutation(members)[: targets[label]])
    kept = np.sort(np.concatenate(kept))
    y_kept = y[kept]
    counts_after = _counts(y_kept, num_classes)
    nonzero = [c for c in counts_after if c > 0]
    report = {
        "transform": "long_tailed_imbalance",
        "ratio": float(ratio),
        "profile": profile,
        "seed": int(seed),
        "num_classes": int(num_classes),
        "num_examples_before": int(len(y)),
        "num_examples_after": int(len(kept)),
        "counts_before": counts_before,
        "targets": targets,
        "counts_after": counts_after,
        "realised_ratio": float(max(nonzero) / min(nonzero)) if nonzero else None,
        "kept_indices": [int(i) for i in kept],
    }
    x_kept = None if x is None else np.asarray(x)[kept]
    return x_kept, y_kept, report
