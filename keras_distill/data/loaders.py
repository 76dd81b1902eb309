"""`load(name, ...)`: one entry point for every dataset the toolkit knows."""

from __future__ import annotations

from typing import Optional

from keras_distill.data import idx
from keras_distill.data.splits import (
    DatasetSplits,
    build_array_splits,
    check_fraction,
    check_limit,
)

# Names served without TFDS (IDX files / keras.datasets). Everything else is TFDS.
BUILTIN_DATASETS = ("fashion_mnist", "mnist")


def load(
    name: str = "fashion_mnist",
    data_dir: Optional[str] = None,
    validation_split: float = 0.1,
    seed: int = 0,
    download: bool = True,
    limit: Optional[int] = None,
    *,
    image_size: Optional[tuple] = None,
    in_memory: Optional[bool] = None,
    manual_dir: Optional[str] = None,
) -> DatasetSplits:
    """Loads a classification dataset as train / validation / test splits.

    Sources:
    - `"fashion_mnist"` (default): the 4 IDX files in `data_dir`, else Debian's
      `/usr/share/datasets/fashion-mnist` (`apt-get install
      dataset-fashion-mnist`), else the Keras cache, else
      `keras.datasets.fashion_mnist.load_data()` (downloads; only when
      `download=True`).
    - `"mnist"`: IDX files in `data_dir`, else the Keras cache, else
      `keras.datasets.mnist.load_data()`.
    - any other name: TensorFlow Datasets (`"cifar10"`, `"cifar100"`,
      `"imagenet2012"`, ...), read from / prepared into `data_dir`.

    Fashion-MNIST, MNIST and small TFDS datasets come back as in-memory
    `ArraySplit`s (uint8 images with a channel axis, int64 labels). Large TFDS
    datasets (variable image size, or more than 2 GiB of training pixels)
    come back as `tf.data.Dataset`s of unbatched `(image, label)` pairs;
    check `splits.in_memory`.

    The validation split is carved from the training data with a seeded,
    stratified permutation (for streamed TFDS data: the tail `validation_split`
    of TFDS's train split, not stratified). The test split is never used for
    it.

    Args:
        name: Dataset name; `-` and `_` are interchangeable for built-in names.
        data_dir: Folder of IDX files (Fashion-MNIST / MNIST) or TFDS data
            directory.
        validation_split: Share of the training data held out, in `[0, 1)`;
            0 gives `validation=None`.
        seed: Seed of the validation split and of `limit`'s subsample.
        download: Allow downloads (keras.datasets / TFDS). Offline, TFDS
            retries for minutes before failing; pass `download=False` there.
        limit: Keep at most `limit` examples of the training pool (before the
            validation split is carved) and of the test split, for smoke
            runs. Arrays: a seeded stratified subset; TFDS: the first `limit`
            records (TFDS shuffles records when it prepares a dataset).
        image_size: TFDS only: `(height, width)` to resize images to
            (center crop to the aspect ratio, then resize). Needed for
            datasets whose images vary in size; default `(224, 224)` there.
        in_memory: TFDS only: force materialising to numpy (True) or
            streaming (False); default decides from the dataset size.
        manual_dir: TFDS only: folder of manually downloaded files
            (ImageNet's tar files).

    Returns:
        A `DatasetSplits`.

    Raises:
        DataError: unknown name (the message lists the known ones), bad
            arguments, empty data.
        DataNotFoundError: the data is not available locally and cannot be
            downloaded; the message lists the ways to get it.

    Example:

    ```python
    splits = load("fashion_mnist", limit=2000)
    x_train, y_train = splits.train
    train = make_dataset(x_train, y_train, batch_size=128, training=True,
                         augment="crop_flip", seed=0)
    ```
    """
    validation_split = check_fraction(validation_split, "validation_split")
    limit = check_limit(limit)
    key = name.strip().lower().replace("-", "_")
    if key in BUILTIN_DATASETS:
        x_train, y_train, x_test, y_test, class_names, info = idx.load_mnist_like(
            key, data_dir=data_dir, download=download
        )
        return build_array_splits(
            key,
            x_train,
            y_train,
            x_test,
            y_test,
            validation_split=validation_split,
            seed=seed,
            limit=limit,
            num_classes=len(class_names),
            class_names=class_names,
            info=info,
        )
    from keras_distill.data.tfds_loader import load_tfds

    return load_tfds(
        name.strip(),
        builtin_names=BUILTIN_DATASETS,
        data_dir=data_dir,
        validation_split=validation_split,
        seed=seed,
        download=download,
        limit=limit,
        image_size=image_size,
        in_memory=in_memory,
        manual_dir=manual_dir,
    )
