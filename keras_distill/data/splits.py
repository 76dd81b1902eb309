"""The result of every loader, `DatasetSplits`, and the checks shared by them.

A split is either an `ArraySplit` (in-memory numpy arrays) or a
`tf.data.Dataset` of unbatched `(image, label)` pairs (a *streamed* split, used
for datasets too large for memory such as ImageNet). Checks on user data live
here too, so every loader raises the same clear errors.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional, Sequence, Union

import numpy as np


class DataError(ValueError):
    """Bad or unusable data: the message names the problem and the fix."""


class DataNotFoundError(FileNotFoundError):
    """A dataset could not be found or fetched: the message lists the ways to get it."""


@dataclasses.dataclass(frozen=True, eq=False)
class ArraySplit:
    """One split held in memory.

    Attributes:
        x: Images, shape `(num_examples, height, width, channels)`, `uint8`
            (raw pixels, 0-255) or floating point. Grayscale images keep a
            channel axis of size 1.
        y: Integer class ids, shape `(num_examples,)`, `int64`.

    The split unpacks like a pair: `x, y = splits.train`.
    """

    x: np.ndarray
    y: np.ndarray

    def __iter__(self):
        yield self.x
        yield self.y

    def __len__(self) -> int:
        return int(len(self.y))

    @property
    def num_examples(self) -> int:
        """Number of examples in the split."""
        return len(self)


# A split is an ArraySplit or a tf.data.Dataset of unbatched (image, label).
Split = Union[ArraySplit, Any]


@dataclasses.dataclass(frozen=True, eq=False)
class DatasetSplits:
    """Train / validation / test splits of one classification dataset.

    Each split is either:
    - an `ArraySplit` with numpy `x` (uint8 or float images) and `y`
      (int64 class ids) when the dataset fits in memory (Fashion-MNIST,
      MNIST, CIFAR, your own arrays or folders); or
    - a `tf.data.Dataset` of unbatched `(image, label)` pairs (uint8 image of
      shape `input_shape`, int64 label) for large datasets (ImageNet).
    `in_memory` tells which. `validation` or `test` is `None` when absent.

    The validation split is always carved from the training data, never from
    the test data.

    Attributes:
        name: Dataset name, e.g. `"fashion_mnist"`.
        train: Training split.
        validation: Held-out split carved from the training data, or `None`.
        test: Test split, or `None` (e.g. for `from_arrays` without test data).
        num_classes: Number of classes `K`; labels are in `[0, K)`.
        input_shape: Shape of one image, e.g. `(28, 28, 1)`.
        class_names: One name per class id.
        info: JSON-serialisable details: where the data came from, seeds,
            sizes, TFDS split names.

    Example:

    ```python
    splits = keras_distill.data.load("fashion_mnist", limit=1000)
    x_train, y_train = splits.train
    print(splits.num_classes, splits.input_shape, len(splits.validation))
    ```
    """

    name: str
    train: Split
    validation: Optional[Split]
    test: Optional[Split]
    num_classes: int
    input_shape: tuple
    class_names: tuple
    info: dict = dataclasses.field(default_factory=dict)

    @property
    def in_memory(self) -> bool:
        """True when every present split is an `ArraySplit`."""
        return all(
            split is None or isinstance(split, ArraySplit)
            for split in (self.train, self.validation, self.test)
        )

    def with_train(self, x: np.ndarray, y: np.ndarray) -> "DatasetSplits":
        """Returns a copy whose training split is `(x, y)`.

        Use it after a training-set transform (label noise, imbalance); the
        validation and test splits are left unchanged.

        Args:
            x: New training images.
            y: New training labels (integer class ids).

        Returns:
            A new `DatasetSplits`.
        """
        x = check_images(x, "x_train")
        y = check_labels(y, "y_train", num_classes=self.num_classes)
        check_same_length(x, y, "train")
        return dataclasses.replace(self, train=ArraySplit(x, y))

    def describe(self) -> dict:
        """A JSON-serialisable summary: name, classes, shape, split sizes, info."""

        def size(split):
            if split is None:
                return 0
            if isinstance(split, ArraySplit):
                return len(split)
            cardinality = int(split.cardinality())
            return cardinality if cardinality >= 0 else None

        return {
            "name": self.name,
            "num_classes": int(self.num_classes),
            "input_shape": [int(d) for d in self.input_shape],
            "class_names": [str(c) for c in self.class_names],
            "in_memory": self.in_memory,
            "sizes": {
                "train": size(self.train),
                "validation": size(self.validation),
                "test": size(self.test),
            },
            "info": self.info,
        }


def check_images(x: Any, name: str = "x") -> np.ndarray:
    """Checks and normalises an image array.

    Args:
        x: Array of shape `(N, H, W, C)` or `(N, H, W)` (grayscale, a channel
            axis is added), or a list of equally shaped images.
        name: Name used in error messages, e.g. `"x_train"`.

    Returns:
        A numpy array with a channel axis.

    Raises:
        DataError: empty input or images of inconsistent shapes.
    """
    if isinstance(x, (list, tuple)):
        if not x:
            raise _empty_error(name)
        first = np.shape(x[0])
        for index, image in enumerate(x):
            if np.shape(image) != first:
                raise DataError(
                    f"{name}: images have inconsistent shapes: image 0 has shape "
                    f"{first} but image {index} has shape {np.shape(image)}. "
                    "Resize them to one size first (e.g. tf.image.resize or "
                    "keras.layers.Resizing), or put them in class folders and "
                    "use from_directory(path, image_size=(height, width))."
                )
        x = np.stack([np.asarray(image) for image in x])
    x = np.asarray(x)
    if x.dtype == object:
        raise DataError(
            f"{name}: images have inconsistent shapes (numpy made an object "
            "array). Resize them to one size first, or use "
            "from_directory(path, image_size=(height, width))."
        )
    if x.ndim == 0 or len(x) == 0:
        raise _empty_error(name)
    if x.ndim == 1:
        raise DataError(
            f"{name}: expected images of shape (N, height, width[, channels]), "
            f"got a 1-D array of shape {x.shape}."
        )
    if x.ndim == 3:
        x = x[..., np.newaxis]
    if not (x.dtype == np.uint8 or np.issubdtype(x.dtype, np.floating)):
        if np.issubdtype(x.dtype, np.integer) or x.dtype == bool:
            x = x.astype(np.float32)
        else:
            raise DataError(f"{name}: images must be numeric, got dtype {x.dtype}.")
    return x


def check_labels(y: Any, name: str = "y", num_classes: Optional[int] = None) -> np.ndarray:
    """Checks integer class-id labels and returns them as int64 of shape (N,).

    Args:
        y: Labels, shape `(N,)` or `(N, 1)`.
        name: Name used in error messages, e.g. `"y_train"`.
        num_classes: When given, every label must lie in `[0, num_classes)`.

    Returns:
        An int64 array of shape `(N,)`.

    Raises:
        DataError: empty labels, one-hot (2-D) labels, non-integer values, or
            labels outside `[0, num_classes)`.
    """
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim == 2:
        raise DataError(
            f"{name} has shape {y.shape}: it looks like one-hot (or soft) labels, "
            "but integer class ids of shape (N,) are expected. Convert with "
            "`y = np.argmax(y, axis=1)`."
        )
    if y.ndim != 1:
        raise DataError(f"{name}: expected integer labels of shape (N,), got shape {y.shape}.")
    if len(y) == 0:
        raise _empty_error(name)
    if not np.issubdtype(y.dtype, np.integer):
        if np.issubdtype(y.dtype, np.floating) and np.all(np.mod(y, 1) == 0):
            y = y.astype(np.int64)
        elif y.dtype == bool:
            y = y.astype(np.int64)
        else:
            raise DataError(
                f"{name}: labels must be integer class ids, got dtype {y.dtype} "
                "with non-integer values. Map your labels to 0..K-1, e.g. with "
                "`classes, y = np.unique(y, return_inverse=True)`."
            )
    y = y.astype(np.int64)
    if num_classes is not None:
        low, high = int(y.min()), int(y.max())
        if low < 0 or high >= num_classes:
            raise DataError(
                f"{name}: labels out of range for num_classes={num_classes}: found "
                f"min={low}, max={high}, but labels must lie in [0, {num_classes}). "
                "Pass the right num_classes, or remap the labels to 0..K-1, e.g. "
                "`classes, y = np.unique(y, return_inverse=True)`."
            )
    elif int(y.min()) < 0:
        raise DataError(
            f"{name}: negative label {int(y.min())}; labels must be class ids in "
            "[0, num_classes). Remap them, e.g. `classes, y = np.unique(y, return_inverse=True)`."
        )
    return y


def check_same_length(x: np.ndarray, y: np.ndarray, split: str) -> None:
    """Raises `DataError` when images and labels of a split differ in length."""
    if len(x) != len(y):
        raise DataError(
            f"{split} split: {len(x)} images but {len(y)} labels; they must "
            "have one label per image."
        )


def check_fraction(value: float, name: str) -> float:
    """Checks a fraction in [0, 1) (validation split, noise rate)."""
    value = float(value)
    if not 0.0 <= value < 1.0:
        raise DataError(f"{name} must be in [0, 1), got {value}.")
    return value


def check_limit(limit: Optional[int]) -> Optional[int]:
    """Checks the `limit` argument (None or a positive integer)."""
    if limit is None:
        return None
    if isinstance(limit, bool) or int(limit) != limit or limit < 1:
        raise DataError(f"limit must be None or a positive integer, got {limit!r}.")
    return int(limit)


def _empty_error(name: str) -> DataError:
    return DataError(
        f"{name} is empty (0 examples). Check the path or arrays you passed, "
        "and that `limit` (if any) is positive."
    )


def stratified_choice(y: np.ndarray, count: int, seed: int) -> np.ndarray:
    """Chooses `count` indices so each class keeps its share of examples.

    Each class `c` with `n_c` of the `n` examples gets `count * n_c / n`
    indices, rounded by largest remainder (ties broken by the seed) so the
    total is exactly `count`. Within a class the examples are drawn by a
    seeded permutation.

    Args:
        y: Integer labels, shape `(n,)`.
        count: Number of indices to choose, `0 <= count <= n`.
        seed: Seed of the permutation.

    Returns:
        The chosen indices, sorted ascending (original order kept).
    """
    y = np.asarray(y)
    n = len(y)
    count = int(count)
    if not 0 <= count <= n:
        raise DataError(f"cannot choose {count} of {n} examples.")
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(y, return_counts=True)
    quotas = count * counts / n
    allocation = np.floor(quotas + 1e-9).astype(np.int64)
    remainder = count - int(allocation.sum())
    if remainder > 0:
        fractions = quotas - allocation
        tie_break = rng.random(len(classes))
        order = np.lexsort((tie_break, -fractions))
        allocation[order[:remainder]] += 1
    chosen = []
    for label, take in zip(classes, allocation):
        members = np.flatnonzero(y == label)
        chosen.append(rng.permutation(members)[:take])
    return np.sort(np.concatenate(chosen)) if chosen else np.zeros((0,), np.int64)


def stratified_split(y: np.ndarray, fraction: float, seed: int):
    """Splits indices into a kept part and a held-out `fraction`, per class.

    Args:
        y: Integer labels, shape `(n,)`.
        fraction: Share of examples held out, in `[0, 1)`. When positive, at
            least one example is held out.
        seed: Seed of the stratified permutation.

    Returns:
        `(kept_indices, held_indices)`: disjoint, sorted, together all of
        `range(n)`.
    """
    n = len(y)
    held_count = int(np.floor(fraction * n + 0.5))
    if fraction > 0:
        held_count = min(max(held_count, 1), n - 1)
    held = stratified_choice(y, held_count, seed)
    mask = np.ones(n, dtype=bool)
    mask[held] = False
    return np.flatnonzero(mask), held


def build_array_splits(
    name: str,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: Optional[np.ndarray],
    y_test: Optional[np.ndarray],
    *,
    validation_split: float,
    seed: int,
    limit: Optional[int],
    num_classes: Optional[int] = None,
    class_names: Optional[Sequence[str]] = None,
    validation: Optional[tuple] = None,
    info: Optional[dict] = None,
) -> DatasetSplits:
    """Checks arrays, applies `limit`, carves the validation split, builds the result.

    `limit` keeps a seeded, stratified subset of at most `limit` examples of
    the training pool (before the validation split is carved from it) and of
    the test split.
    """
    validation_split = check_fraction(validation_split, "validation_split")
    limit = check_limit(limit)
    x_train = check_images(x_train, "x_train")
    y_train = check_labels(y_train, "y_train")
    check_same_length(x_train, y_train, "train")
    if (x_test is None) != (y_test is None):
        raise DataError("Pass both x_test and y_test, or neither.")
    if x_test is not None:
        x_test = check_images(x_test, "x_test")
        y_test = check_labels(y_test, "y_test")
        check_same_length(x_test, y_test, "test")
        if x_test.shape[1:] != x_train.shape[1:]:
            raise DataError(
                f"images of inconsistent shape: x_train images have shape "
                f"{x_train.shape[1:]} but x_test images have shape {x_test.shape[1:]}. "
                "Resize one set to match the other."
            )
    if validation is not None:
        x_val, y_val = validation
        x_val = check_images(x_val, "x_validation")
        y_val = check_labels(y_val, "y_validation")
        check_same_length(x_val, y_val, "validation")
        if x_val.shape[1:] != x_train.shape[1:]:
            raise DataError(
                f"images of inconsistent shape: x_train images have shape "
                f"{x_train.shape[1:]} but x_validation images have shape {x_val.shape[1:]}."
            )

    if num_classes is None:
        if class_names is not None:
            num_classes = len(class_names)
        else:
            label_sets = [y_train] + ([y_test] if y_test is not None else [])
            if validation is not None:
                label_sets.append(y_val)
            num_classes = int(max(int(labels.max()) for labels in label_sets)) + 1
    num_classes = int(num_classes)
    if class_names is None:
        class_names = [str(i) for i in range(num_classes)]
    class_names = tuple(str(c) for c in class_names)
    if len(class_names) != num_classes:
        raise DataError(
            f"{len(class_names)} class_names given for num_classes={num_classes}; "
            "give one name per class."
        )
    check_labels(y_train, "y_train", num_classes)
    if y_test is not None:
        check_labels(y_test, "y_test", num_classes)

    info = dict(info or {})
    info.update({"seed": int(seed), "validation_split": validation_split, "limit": limit})
    info["source_sizes"] = {
        "train": int(len(y_train)),
        "test": int(len(y_test)) if y_test is not None else 0,
    }

    if limit is not None and len(y_train) > limit:
        keep = stratified_choice(y_train, limit, seed)
        x_train, y_train = x_train[keep], y_train[keep]
    if limit is not None and y_test is not None and len(y_test) > limit:
        keep = stratified_choice(y_test, limit, seed + 1)
        x_test, y_test = x_test[keep], y_test[keep]

    if validation is not None:
        check_labels(y_val, "y_validation", num_classes)
        if limit is not None and len(y_val) > limit:
            keep = stratified_choice(y_val, limit, seed + 2)
            x_val, y_val = x_val[keep], y_val[keep]
        validation_part = ArraySplit(x_val, y_val)
        info["validation_source"] = "given"
    elif validation_split > 0:
        if len(y_train) < 2:
            raise DataError(
                "train split has fewer than 2 examples: cannot carve a validation "
                "split. Pass more data, a larger limit, or validation_split=0."
            )
        kept, held = stratified_split(y_train, validation_split, seed)
        validation_part = ArraySplit(x_train[held], y_train[held])
        x_train, y_train = x_train[kept], y_train[kept]
        info["validation_source"] = "stratified split of the training data"
    else:
        validation_part = None
        info["validation_source"] = "none"

    return DatasetSplits(
        name=name,
        train=ArraySplit(x_train, y_train),
        validation=validation_part,
        test=ArraySplit(x_test, y_test) if x_test is not None else None,
        num_classes=num_classes,
        input_shape=tuple(int(d) for d in x_train.shape[1:]),
        class_names=class_names,
        info=info,
    )
