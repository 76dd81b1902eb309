"""Bring-your-own data: in-memory arrays and folders of images per class."""

from __future__ import annotations

import os
from typing import Optional, Sequence

import numpy as np

from keras_distill.data.splits import (
    DataError,
    DataNotFoundError,
    DatasetSplits,
    build_array_splits,
)


def from_arrays(
    x_train,
    y_train,
    x_test=None,
    y_test=None,
    *,
    validation_split: float = 0.1,
    seed: int = 0,
    num_classes: Optional[int] = None,
    class_names: Optional[Sequence[str]] = None,
    x_validation=None,
    y_validation=None,
    limit: Optional[int] = None,
    name: str = "arrays",
) -> DatasetSplits:
    """Wraps in-memory arrays as `DatasetSplits`.

    Args:
        x_train: Training images, `(N, H, W, C)` or `(N, H, W)` (grayscale; a
            channel axis is added), uint8 (0-255) or float.
        y_train: Integer class ids, `(N,)` or `(N, 1)`. One-hot labels are
            refused with the conversion to use.
        x_test: Optional test images of the same image shape.
        y_test: Optional test labels.
        validation_split: Share of the training data held out as a seeded,
            stratified validation split, in `[0, 1)`; 0 for none. Ignored
            when `x_validation`/`y_validation` are given.
        seed: Seed of the validation split and of `limit`'s subsample.
        num_classes: Number of classes; default `len(class_names)` or the
            largest label + 1.
        class_names: One name per class; default `"0"`, `"1"`, ...
        x_validation: Optional validation images you already hold out.
        y_validation: Their labels.
        limit: Keep a seeded, stratified subset of at most `limit` examples
            per split (smoke runs).
        name: Name recorded in the result.

    Returns:
        A `DatasetSplits` of `ArraySplit`s.

    Raises:
        DataError: empty arrays, one-hot labels, labels out of range,
            mismatched lengths or image shapes.

    Example:

    ```python
    splits = from_arrays(x, y, x_test, y_test, class_names=["cat", "dog"])
    ```
    """
    if (x_validation is None) != (y_validation is None):
        raise DataError("Pass both x_validation and y_validation, or neither.")
    validation = (x_validation, y_validation) if x_validation is not None else None
    return build_array_splits(
        name,
        x_train,
        y_train,
        x_test,
        y_test,
        validation_split=validation_split,
        seed=seed,
        limit=limit,
        num_classes=num_classes,
        class_names=class_names,
        validation=validation,
        info={"source": "arrays"},
    )


def from_directory(
    directory: str,
    image_size: tuple,
    *,
    test_directory: Optional[str] = None,
    validation_split: float = 0.1,
    seed: int = 0,
    color_mode: str = "rgb",
    interpolation: str = "bilinear",
    crop_to_aspect_ratio: bool = False,
    limit: Optional[int] = None,
    name: Optional[str] = None,
) -> DatasetSplits:
    """Loads a folder with one sub-folder of images per class into memory.

    ```
    directory/
      cat/  001.png 002.jpg ...
      dog/  ...
    ```
    Class ids follow the sorted sub-folder names. Images are read with
    `keras.utils.image_dataset_from_directory`, resized to `image_size` and
    stored as uint8.

    Args:
        directory: Root folder of the training images.
        image_size: `(height, width)` every image is resized to.
        test_directory: Optional root folder of test images with the same
            class sub-folders.
        validation_split: Share of the training images held out (seeded,
            stratified), in `[0, 1)`.
        seed: Seed of the validation split and of `limit`'s subsample.
        color_mode: `"rgb"`, `"grayscale"` or `"rgba"`.
        interpolation: Resize interpolation, e.g. `"bilinear"`, `"nearest"`.
        crop_to_aspect_ratio: Crop to the target aspect ratio before resizing
            instead of distorting.
        limit: Keep at most `limit` examples per split (seeded, stratified).
        name: Name recorded in the result (default: the folder's name).

    Returns:
        A `DatasetSplits` of `ArraySplit`s.

    Raises:
        DataNotFoundError: the folder does not exist.
        DataError: no images found.

    Example:

    ```python
    splits = from_directory("photos/", image_size=(64, 64))
    ```
    """
    import keras

    def read(folder, class_names=None):
        if not os.path.isdir(folder):
            raise DataNotFoundError(
                f"Image folder {folder!r} does not exist. Pass a folder with one "
                "sub-folder of images per class."
            )
        try:
            dataset = keras.utils.image_dataset_from_directory(
                folder,
                labels="inferred",
                label_mode="int",
                class_names=class_names,
                color_mode=color_mode,
                batch_size=None,
                image_size=tuple(image_size),
                shuffle=False,
                interpolation=interpolation,
                crop_to_aspect_ratio=crop_to_aspect_ratio,
                verbose=False,
            )
        except ValueError as error:
            raise DataError(
                f"Could not read images from {folder!r}: {error} Expected one "
                "sub-folder of images (.png, .jpg, .jpeg, .bmp, .gif) per class."
            ) from None
        found_names = list(dataset.class_names)
        images, labels = [], []
        for image_batch, label_batch in dataset.batch(256).as_numpy_iterator():
            images.append(np.clip(np.round(image_batch), 0, 255).astype(np.uint8))
            labels.append(label_batch)
        if not images:
            raise DataError(
                f"No images found in {folder!r}. Expected one sub-folder of images "
                "(.png, .jpg, .jpeg, .bmp, .gif) per class."
            )
        return np.concatenate(images), np.concatenate(labels), found_names

    x_train, y_train, class_names = read(directory)
    x_test = y_test = None
    if test_directory is not None:
        x_test, y_test, _ = read(test_directory, class_names)
    return build_array_splits(
        name or os.path.basename(os.path.normpath(directory)),
        x_train,
        y_train,
        x_test,
        y_test,
        validation_split=validation_split,
        seed=seed,
        limit=limit,
        num_classes=len(class_names),
        class_names=class_names,
        info={"source": "directory", "path": directory, "test_path": test_directory},
    )
