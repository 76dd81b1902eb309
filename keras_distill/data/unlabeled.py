"""Unlabeled images zipped with a labeled pipeline (KD+'s `plus_source=unlabeled`).

The teacher labels these images and the student matches it on them with a
distillation-only term: they need no labels, only the training images'
shape and value range.
"""

import os
from typing import Optional

import numpy as np
import tensorflow as tf

from keras_distill.data.pipeline import infer_value_range, make_dataset
from keras_distill.data.splits import DataError, DataNotFoundError, check_images

SOURCES_HELP = ("a .npy file of images (N, H, W, C), a .npz file (array 'x' or 'images', "
                "else its only array), a folder of image files, or tfds:<name>[:<split>]")


def load_unlabeled(source: str, image_shape: tuple, limit: Optional[int] = None,
                   seed: int = 0) -> np.ndarray:
    """Loads unlabeled images into memory, checked against the training images' shape.

    Args:
        source: A `.npy` file of images `(N, H, W, C)`; a `.npz` file (array
            `x` or `images`, else its only array); a folder of image files
            (read with `keras.utils.image_dataset_from_directory`, resized to
            `image_shape`, any sub-folders included, labels ignored); or
            `tfds:<name>[:<split>]` (default split `train`, feature `image`).
        image_shape: `(H, W, C)` of the labeled training images.
        limit: Keep at most this many images (a seeded random subset).
        seed: Seed of `limit`'s subset.

    Returns:
        Images `(N, H, W, C)`, uint8 or float as stored.

    Raises:
        DataNotFoundError: the file or folder does not exist.
        DataError: no images, or images of another shape than `image_shape`.

    Example:

    ```python
    extra = load_unlabeled("unlabeled.npy", image_shape=(28, 28, 1))
    train = with_unlabeled(train, extra, batch_size=128, seed=0)
    ```
    """
    image_shape = tuple(int(d) for d in image_shape)
    if source.startswith("tfds:"):
        images = _from_tfds(source[len("tfds:"):])
    elif os.path.isdir(source):
        images = _from_folder(source, image_shape)
    elif not os.path.exists(source):
        raise DataNotFoundError(f"Unlabeled data {source!r} does not exist; give {SOURCES_HELP}.")
    elif source.endswith(".npy"):
        images = np.load(source, allow_pickle=False)
    elif source.endswith(".npz"):
        with np.load(source, allow_pickle=False) as archive:
            preferred = [n for n in ("x", "images") if n in archive.files]
            if not preferred and len(archive.files) != 1:
                raise DataError(f"{source} holds arrays {archive.files}: name the images 'x'.")
            images = archive[(preferred or archive.files)[0]]
    else:
        raise DataError(f"Unlabeled data {source!r}: unsupported; give {SOURCES_HELP}.")
    images = check_images(images, "unlabeled images")  # (N, H, W) gains a channel axis
    if tuple(images.shape[1:]) != image_shape:
        raise DataError(f"Unlabeled images have shape {tuple(images.shape[1:])}, the training "
                        f"images {image_shape}: resize them (a folder is resized for you).")
    if limit is not None and len(images) > limit:
        keep = np.sort(np.random.default_rng(seed).choice(len(images), limit, replace=False))
        images = images[keep]
    return images


def _from_folder(folder, image_shape):
    import keras

    color_mode = {1: "grayscale", 3: "rgb", 4: "rgba"}.get(image_shape[-1])
    if color_mode is None:
        raise DataError(f"Images with {image_shape[-1]} channels cannot be read from a folder.")
    try:
        dataset = keras.utils.image_dataset_from_directory(
            folder, labels=None, image_size=image_shape[:2], color_mode=color_mode,
            batch_size=256, shuffle=False, verbose=False)
    except ValueError as error:  # "No images found in directory ..."
        raise DataError(f"Unlabeled data folder {folder!r}: {error}") from error
    images = np.concatenate([np.asarray(batch) for batch in dataset])
    return np.clip(np.round(images), 0, 255).astype("uint8")


def _from_tfds(spec):
    import tensorflow_datasets as tfds

    name, _, split = spec.partition(":")
    dataset = tfds.load(name, split=split or "train")
    images = [example["image"] for example in tfds.as_numpy(dataset)]
    if not images:
        raise DataError(f"tfds:{spec} has no images.")
    return np.stack(images)


def with_unlabeled(dataset: tf.data.Dataset, images: np.ndarray, batch_size: int,
                   key: str = "unlabeled", seed: Optional[int] = None,
                   value_range: Optional[tuple] = None) -> tf.data.Dataset:
    """Adds a batch of unlabeled images to every batch of a labeled pipeline.

    Each `(x, y, ...)` element becomes `({"inputs": x, key: u}, y, ...)` (or
    `x` gains `key` when it is already a dict). `u` is `batch_size` images
    drawn without replacement, reshuffled every pass, and scaled like
    `make_dataset` scales the labeled images with the same `value_range`.
    The unlabeled stream restarts from its beginning when a resumed training
    rebuilds the pipeline (the labeled order is replayed exactly).

    Args:
        dataset: A batched labeled pipeline (e.g. from `make_dataset`).
        images: Unlabeled images `(N, H, W, C)` of the training images' shape.
        batch_size: Unlabeled images per batch (usually the labeled batch size).
        key: Side-input key (the `SideInput` view reads it; default `"unlabeled"`).
        seed: Shuffle seed.
        value_range: `(low, high)` of the labeled images' pixels; default
            inferred from `images`.

    Returns:
        The zipped `tf.data.Dataset`.
    """
    if len(images) < batch_size:
        raise DataError(f"{len(images)} unlabeled images are fewer than one batch of "
                        f"{batch_size}.")
    value_range = value_range or infer_value_range(images)
    stream = make_dataset(images, np.zeros(len(images), "int64"), batch_size=batch_size,
                          training=True, seed=seed, drop_remainder=True,
                          value_range=value_range).map(lambda x, y: x).repeat()

    def merge(element, extra):
        x, rest = element[0], element[1:]
        x = {**x, key: extra} if isinstance(x, dict) else {"inputs": x, key: extra}
        return (x, *rest)

    return tf.data.Dataset.zip(dataset, stream).map(merge).prefetch(tf.data.AUTOTUNE)
