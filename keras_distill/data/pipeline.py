"""`make_dataset`: batched, prefetched `tf.data` pipelines for training and evaluation.

In-memory arrays: shuffle row indices (training), batch them, gather the
rows. Streams: shuffle, batch. Then, per batch: cast to float32, augment the
images (training only, in the data's raw value range, 0-255 for uint8),
normalise, MixUp / CutMix (training only), prefetch. See `augment.py` for
the policies and their seeding.
"""

from __future__ import annotations

from typing import NamedTuple, Optional, Sequence, Union

import numpy as np
import tensorflow as tf

from keras_distill.data.augment import (
    Augmentation,
    Identity,
    SeedStream,
    available_augmentations,
    get_augmentation,
    is_deterministic,
    register_augmentation,
)
from keras_distill.data.splits import (
    ArraySplit,
    DataError,
    check_images,
    check_labels,
    check_same_length,
)

__all__ = [
    "ChannelStats",
    "available_augmentations",
    "channel_stats",
    "get_augmentation",
    "is_deterministic",
    "make_dataset",
    "register_augmentation",
]

_DEFAULT_STREAM_SHUFFLE_BUFFER = 10_000


class ChannelStats(NamedTuple):
    """Per-channel mean and standard deviation of images scaled to [0, 1]."""

    mean: list
    std: list


def infer_value_range(x) -> tuple:
    """The pixel range of images: (0, 255) for integers, else (0, 1) or (0, 255).

    Floating-point arrays count as (0, 1) when their maximum is at most 1;
    floating-point streams are assumed to be (0, 1). Pass `value_range=` to
    `make_dataset` when that guess is wrong.
    """
    if isinstance(x, tf.data.Dataset):
        dtype = tf.nest.flatten(x.element_spec)[0].dtype
        return (0.0, 255.0) if dtype.is_integer else (0.0, 1.0)
    if not np.issubdtype(x.dtype, np.floating):
        return (0.0, 255.0)
    return (0.0, 1.0) if float(np.max(x)) <= 1.0 else (0.0, 255.0)


def channel_stats(
    x, value_range: Optional[Sequence[float]] = None, chunk_size: int = 4096
) -> ChannelStats:
    """Per-channel mean and std of training images, on the [0, 1] scale.

    Compute them on the training split only and pass them to every pipeline:
    `make_dataset(..., normalize=channel_stats(x_train))`.

    Args:
        x: Images `(N, H, W, C)` (or `(N, H, W)`), uint8 or float.
        value_range: Pixel range; default inferred (0-255 for uint8).
        chunk_size: Examples per chunk (bounds the float64 working memory).

    Returns:
        `ChannelStats(mean, std)`, lists of one float per channel.

    Example:

    ```python
    stats = channel_stats(x_train)          # CIFAR-10: mean ~ [0.49, 0.48, 0.45]
    train = make_dataset(x_train, y_train, 128, True, normalize=stats)
    test = make_dataset(x_test, y_test, 256, False, normalize=stats)
    ```
    """
    if isinstance(x, ArraySplit):
        x = x.x
    x = check_images(x, "x")
    low, high = value_range or infer_value_range(x)
    total = np.zeros(x.shape[-1], np.float64)
    total_sq = np.zeros(x.shape[-1], np.float64)
    axes = tuple(range(x.ndim - 1))
    for start in range(0, len(x), chunk_size):
        chunk = (x[start : start + chunk_size].astype(np.float64) - low) / (high - low)
        total += chunk.sum(axis=axes)
        total_sq += np.square(chunk).sum(axis=axes)
    count = x.size / x.shape[-1]
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean**2, 0.0))
    return ChannelStats([float(m) for m in mean], [float(s) if s > 0 else 1.0 for s in std])


def _normalizer(normalize, x, value_range, training: bool, streamed: bool):
    low, high = (float(v) for v in value_range)
    if normalize is None or (isinstance(normalize, str) and normalize == "none"):
        return lambda image: image
    if isinstance(normalize, str) and normalize == "scale":
        return lambda image: (image - low) / (high - low)
    if isinstance(normalize, str) and normalize == "standardize":
        if streamed or not training:
            raise DataError(
                "normalize='standardize' computes the per-channel mean/std from x, "
                "which is only right for the training set (and needs arrays). For "
                "validation/test or streamed data pass the training statistics: "
                "normalize=channel_stats(x_train)."
            )
        normalize = channel_stats(x, value_range)
    if isinstance(normalize, str):
        raise DataError(
            f"Unknown normalize={normalize!r}. Use 'scale' ([0, 1]), 'standardize' "
            "(training set only), 'none', or a (mean, std) pair such as "
            "channel_stats(x_train)."
        )
    try:
        mean, std = normalize
        mean = tf.constant(np.asarray(mean, np.float32))
        std = tf.constant(np.asarray(std, np.float32))
    except (TypeError, ValueError):
        raise DataError(
            "normalize must be 'scale', 'standardize', 'none' or a (mean, std) pair; "
            f"got {normalize!r}."
        ) from None
    return lambda image: ((image - low) / (high - low) - mean) / std


def make_dataset(
    x,
    y=None,
    batch_size: int = 128,
    training: bool = False,
    *,
    augment: Union[str, Augmentation, Sequence, None] = "none",
    normalize="scale",
    seed: Optional[int] = None,
    shuffle_buffer: Optional[int] = None,
    drop_remainder: bool = False,
    num_classes: Optional[int] = None,
    one_hot: Optional[bool] = None,
    sample_weight=None,
    extra: Optional[dict] = None,
    with_index: bool = False,
    value_range: Optional[Sequence[float]] = None,
) -> tf.data.Dataset:
    """Builds a batched, prefetched `tf.data.Dataset` of `(x, y)`.

    Elements are `(x, y)`, or `(x, y, sample_weight)` when `sample_weight` is
    given. With side inputs (`with_index=True` or `extra`), `x` becomes a dict
    `{"inputs": images, "index": ..., **extra}`.

    Args:
        x: Images `(N, H, W, C)` (numpy, uint8 or float), an `ArraySplit`
            (then `y` is taken from it), or a streamed `tf.data.Dataset` of
            unbatched `(image, label)` pairs (then `y` must be None).
        y: Integer labels `(N,)`.
        batch_size: Examples per batch.
        training: Shuffle and augment. Augmentation never runs when False.
        augment: Policy name (`"none"`, `"flip"`, `"crop"`, `"crop_flip"`,
            `"randaugment"`, `"mixup"`, `"cutmix"`), an `Augmentation`
            (`get_augmentation("crop_flip", padding=2)`), or a list.
        normalize: `"scale"` (to [0, 1], default), `"standardize"`
            (per-channel mean/std of this `x`; training set only), `"none"`
            (float32, unchanged range), or a `(mean, std)` pair on the [0, 1]
            scale such as `channel_stats(x_train)`.
        seed: Seeds shuffling and augmentation. With a seed the stream of
            batches is identical run after run (epochs still differ from each
            other); None draws fresh randomness.
        shuffle_buffer: Shuffle buffer; default the whole array (a perfect
            shuffle), or 10 000 for streams.
        drop_remainder: Drop the last partial batch.
        num_classes: Number of classes; checked against `y` and required for
            one-hot labels.
        one_hot: Yield one-hot labels `(B, K)`; default True exactly when the
            policy mixes labels (MixUp/CutMix, training only). Pass True for
            a validation pipeline that must match such a training pipeline.
        sample_weight: Optional per-example weights `(N,)`.
        extra: Optional dict of per-example side inputs, arrays of length N,
            yielded next to the images in the `x` dict.
        with_index: Add `"index"`: each example's int64 position in `x`
            (row of the training array, or position in the stream), stable
            under shuffling; contrastive methods (CRD) need it.
        value_range: Pixel range of `x`; default 0-255 for uint8, else
            inferred (see `infer_value_range`).

    Returns:
        The `tf.data.Dataset`.

    Raises:
        DataError: bad labels (one-hot, out of range), mismatched lengths,
            one-hot output without `num_classes`, bad `normalize`.

    Example:

    ```python
    splits = load("cifar10")
    stats = channel_stats(splits.train.x)
    train = make_dataset(splits.train, batch_size=64, training=True,
                         augment="crop_flip", normalize=stats, seed=0)
    val = make_dataset(splits.validation, batch_size=256, normalize=stats)
    ```
    """
    if batch_size is None or int(batch_size) < 1:
        raise DataError(f"batch_size must be a positive integer, got {batch_size!r}.")
    if isinstance(x, ArraySplit):
        if y is not None:
            raise DataError("x is an ArraySplit, which holds the labels: pass y=None.")
        x, y = x.x, x.y
    policy = get_augmentation(augment) if training else Identity()
    streamed = isinstance(x, tf.data.Dataset)

    if streamed:
        if y is not None:
            raise DataError("x is a tf.data.Dataset of (image, label) pairs: pass y=None.")
        if sample_weight is not None or extra:
            raise DataError(
                "sample_weight and extra need in-memory arrays; add them to the "
                "streamed dataset yourself."
            )
        spec = x.element_spec
        if not (isinstance(spec, tuple) and len(spec) == 2):
            raise DataError(
                f"a streamed dataset must yield unbatched (image, label) pairs; got {spec}."
            )
        image_shape = tuple(spec[0].shape)
    else:
        x = check_images(x, "x")
        y = check_labels(y, "y", num_classes)
        check_same_length(x, y, "dataset")
        image_shape = tuple(x.shape[1:])
        columns = {"x": x, "y": y}
        if sample_weight is not None:
            sample_weight = np.asarray(sample_weight, np.float32)
            if sample_weight.shape != (len(x),):
                raise DataError(
                    f"sample_weight must have shape ({len(x)},), got {sample_weight.shape}."
                )
            columns["sample_weight"] = sample_weight
        for key, values in (extra or {}).items():
            if key in ("inputs", "index", "x", "y", "sample_weight"):
                raise DataError(f"extra input name {key!r} is reserved; rename it.")
            values = np.asarray(values)
            if len(values) != len(x):
                raise DataError(f"extra[{key!r}] has {len(values)} rows for {len(x)} examples.")
            columns["extra/" + key] = values

    if value_range is None:
        value_range = infer_value_range(x)
    normalizer = _normalizer(normalize, x, value_range, training, streamed)
    if one_hot is None:
        one_hot = policy.soft_labels
    if one_hot and num_classes is None:
        raise DataError(
            f"augment={policy.name!r} mixes labels into soft (one-hot) targets: pass "
            "num_classes=... (and use a loss that takes soft labels, e.g. "
            "keras.losses.CategoricalCrossentropy)."
        )
    images_fn = policy.images_fn(image_shape, value_range)
    mix_fn = policy.mix_fn(image_shape)
    if (images_fn or mix_fn) and len(image_shape) != 3:
        raise DataError(
            f"augment={policy.name!r} needs images of shape (H, W, C); got examples "
            f"of shape {image_shape}."
        )

    autotune = tf.data.AUTOTUNE
    if streamed:
        if with_index:
            dataset = x.enumerate().map(lambda i, pair: {"x": pair[0], "y": pair[1], "index": i})
        else:
            dataset = x.map(lambda image, label: {"x": image, "y": label})
        if training:
            size = int(x.cardinality())
            buffer = shuffle_buffer or (
                _DEFAULT_STREAM_SHUFFLE_BUFFER
                if size < 0
                else min(size, _DEFAULT_STREAM_SHUFFLE_BUFFER)
            )
            dataset = dataset.shuffle(buffer, seed=seed, reshuffle_each_iteration=True)
        dataset = dataset.batch(int(batch_size), drop_remainder=drop_remainder)
    else:
        # Shuffle and batch row indices, then gather whole batches of rows:
        # much faster than slicing the arrays into per-example elements.
        tensors = {key: tf.convert_to_tensor(value) for key, value in columns.items()}

        def gather(indices):
            element = {key: tf.gather(value, indices) for key, value in tensors.items()}
            if with_index:
                element["index"] = indices
            return element

        dataset = tf.data.Dataset.range(len(x))
        if training:
            dataset = dataset.shuffle(
                shuffle_buffer or len(x), seed=seed, reshuffle_each_iteration=True
            )
        dataset = dataset.batch(int(batch_size), drop_remainder=drop_remainder)
        dataset = dataset.map(gather, num_parallel_calls=autotune, deterministic=True)

    def finish_batch(element, batch_seed=None):
        stream = SeedStream(batch_seed) if batch_seed is not None else None
        images = tf.cast(element["x"], tf.float32)
        if images_fn is not None:
            images = images_fn(images, stream)
        images = normalizer(images)
        labels = tf.cast(element["y"], tf.int64)
        if one_hot:
            labels = tf.one_hot(labels, num_classes, dtype=tf.float32)
        if mix_fn is not None:
            images, labels = mix_fn(images, labels, stream)
        side = {
            key.replace("extra/", "", 1): value
            for key, value in element.items()
            if key == "index" or key.startswith("extra/")
        }
        inputs = {"inputs": images, **side} if side else images
        if "sample_weight" in element:
            return inputs, labels, element["sample_weight"]
        return inputs, labels

    if images_fn is not None or mix_fn is not None:
        # One seed per batch; per-image randomness is derived from it.
        seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
        dataset = tf.data.Dataset.zip(dataset, seeds)
    dataset = dataset.map(finish_batch, num_parallel_calls=autotune, deterministic=True)
    return dataset.prefetch(autotune)
