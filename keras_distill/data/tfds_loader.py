"""Any TensorFlow Datasets (TFDS) classification dataset by name.

Small datasets (fixed image shape, at most `max_in_memory_bytes` of uint8
training images: CIFAR-10/100, SVHN, ...) are materialised to numpy so the
training-set transforms can act on their labels. Large ones (ImageNet, or any
dataset whose images vary in size) stay `tf.data.Dataset` pipelines of
unbatched `(image, label)` pairs, resized to `image_size`. `in_memory=True`
/ `False` overrides the choice.

Split names: the training data is TFDS's `"train"`; the test split is TFDS's
`"test"`, or its `"validation"` when there is no `"test"` or when the test
split has no labels (ImageNet: `imagenet2012*` names). Our
validation split is always carved from `"train"`.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np

from keras_distill.data.classes import KNOWN_CLASS_NAMES
from keras_distill.data.splits import (
    DataError,
    DataNotFoundError,
    DatasetSplits,
    build_array_splits,
    check_fraction,
    check_limit,
)

DEFAULT_MAX_IN_MEMORY_BYTES = 2 * 1024**3
DEFAULT_STREAM_IMAGE_SIZE = (224, 224)


def _import_tfds():
    try:
        import tensorflow_datasets as tfds
    except ImportError as error:  # pragma: no cover - depends on the install
        raise DataError(
            "tensorflow_datasets is needed for TFDS datasets: "
            "`pip install tensorflow-datasets importlib_resources`."
        ) from error
    return tfds


def unknown_dataset_error(name: str, builtin_names: Sequence[str]) -> DataError:
    """The error for a name that is neither built in nor a TFDS dataset."""
    import difflib

    candidates = list(builtin_names)
    try:
        candidates += list(_import_tfds().list_builders())
    except Exception:  # a suggestion is a nicety; never fail on it
        pass
    close = difflib.get_close_matches(name.lower(), candidates, n=3, cutoff=0.6)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    known = ", ".join(repr(n) for n in builtin_names)
    return DataError(
        f"Unknown dataset {name!r}.{hint} Known names: {known} (read from IDX "
        "files or keras.datasets), or any TensorFlow Datasets name such as "
        "'cifar10', 'cifar100', 'imagenet2012' (full list: "
        "tensorflow_datasets.list_builders()). For your own data use "
        "keras_distill.data.from_arrays(...) or from_directory(...)."
    )


def load_tfds(
    name: str,
    *,
    builtin_names: Sequence[str] = (),
    data_dir: Optional[str] = None,
    validation_split: float = 0.1,
    seed: int = 0,
    download: bool = True,
    limit: Optional[int] = None,
    image_size: Optional[tuple] = None,
    in_memory: Optional[bool] = None,
    manual_dir: Optional[str] = None,
    max_in_memory_bytes: int = DEFAULT_MAX_IN_MEMORY_BYTES,
) -> DatasetSplits:
    """Loads a TFDS classification dataset; see `keras_distill.data.load`."""
    validation_split = check_fraction(validation_split, "validation_split")
    limit = check_limit(limit)
    tfds = _import_tfds()
    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError:
        raise unknown_dataset_error(name, builtin_names) from None
    info = builder.info
    if not info.supervised_keys or len(info.supervised_keys) != 2:
        raise DataError(
            f"TFDS dataset {name!r} has no (image, label) supervised keys: it is "
            "not an image classification dataset this loader understands. Load it "
            "yourself and use from_arrays(...)."
        )
    image_key, label_key = info.supervised_keys
    image_shape = tuple(getattr(info.features[image_key], "shape", ()) or ())
    label_feature = info.features[label_key]
    num_classes = getattr(label_feature, "num_classes", None)
    if num_classes is None:
        raise DataError(f"TFDS dataset {name!r}: label {label_key!r} is not a ClassLabel.")
    class_names = list(label_feature.names)
    base_name = name.split(":")[0].split("/")[0]
    if class_names == [str(i) for i in range(num_classes)] and base_name in KNOWN_CLASS_NAMES:
        class_names = list(KNOWN_CLASS_NAMES[base_name])  # names appear only once prepared

    available = set(info.splits.keys()) or {
        "train",
        "test",
        "validation",
    }  # empty before preparation
    if base_name.startswith("imagenet2012"):
        available.discard("test")  # TFDS's ImageNet test split has no labels (-1)
    if "train" not in available:
        raise DataError(
            f"TFDS dataset {name!r} has no 'train' split (it has: "
            f"{', '.join(sorted(available))}); this loader carves validation from 'train'."
        )
    if info.splits or base_name.startswith("imagenet2012"):
        test_name = (
            "test" if "test" in available else ("validation" if "validation" in available else None)
        )
    else:
        test_name = "test"
    split_sizes = {key: split.num_examples for key, split in info.splits.items()}

    fixed_shape = len(image_shape) == 3 and all(d is not None for d in image_shape)
    if image_size is not None:
        image_size = tuple(int(d) for d in image_size)
        if len(image_size) != 2:
            raise DataError(f"image_size must be (height, width), got {image_size}.")
    resize_to = None
    if not fixed_shape:
        resize_to = image_size or DEFAULT_STREAM_IMAGE_SIZE
    elif image_size is not None and image_size != tuple(image_shape[:2]):
        resize_to = image_size
    channels = image_shape[-1] if image_shape and image_shape[-1] else 3
    input_shape = (resize_to or tuple(image_shape[:2])) + (int(channels),)

    if in_memory is None:
        if not fixed_shape:  # images of varying size: ImageNet-like, stream them
            in_memory = False
        else:
            estimated = split_sizes.get("train", 0) * int(np.prod(input_shape))
            in_memory = estimated <= max_in_memory_bytes

    load_kwargs = {"data_dir": data_dir, "download": download}
    if manual_dir is not None:
        load_kwargs["download_and_prepare_kwargs"] = {
            "download_config": tfds.download.DownloadConfig(manual_dir=manual_dir)
        }

    def load_split(spec: str, take: Optional[int] = None):
        try:
            dataset = tfds.load(
                name, split=spec, as_supervised=True, shuffle_files=False, **load_kwargs
            )
        except AssertionError as error:  # TFDS's "could not find data in ..."
            raise DataNotFoundError(
                f"TFDS dataset {name!r} is not prepared in data_dir={data_dir!r} "
                f"({error}). Pass download=True (needs internet; for imagenet2012 "
                "also manual_dir= with the downloaded tar files), or prepare it on "
                "another machine with `tfds build` and copy it into data_dir."
            ) from None
        if take is not None:
            dataset = dataset.take(take)
        if resize_to is not None:
            dataset = dataset.map(
                lambda image, label: (_center_crop_resize(image, resize_to), label),
                num_parallel_calls=_autotune(),
            )
        return dataset

    train_spec = f"train[:{limit}]" if limit else "train"
    test_spec = (f"{test_name}[:{limit}]" if limit else test_name) if test_name else None
    details = {
        "source": "tfds",
        "tfds_name": name,
        "data_dir": data_dir,
        "train_split": train_spec,
        "test_split": test_spec,
    }

    if in_memory:
        x_train, y_train = _to_numpy(load_split(train_spec, limit), f"{name} {train_spec}")
        x_test = y_test = None
        if test_spec:
            x_test, y_test = _to_numpy(load_split(test_spec, limit), f"{name} {test_spec}")
            if y_test.min() < 0:
                raise DataError(
                    f"TFDS split {test_name!r} of {name!r} has no labels (label -1). Use "
                    "a dataset with a labelled test split, or load it with tfds yourself "
                    "and pass arrays to from_arrays(...)."
                )
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
            info=details,
        )

    # Streamed: validation is the tail of TFDS's (already shuffled) train split.
    total = split_sizes.get("train") or None
    if total is None:
        total = int(load_split("train").cardinality())
        if total < 0:
            raise DataError(f"TFDS dataset {name!r}: the size of 'train' is unknown.")
    pool = min(limit, total) if limit else total
    if pool == 0:
        raise DataError(f"TFDS dataset {name!r}: the 'train' split is empty.")
    held = int(math.floor(validation_split * pool + 0.5))
    if validation_split > 0:
        held = min(max(held, 1), pool - 1)
    kept = pool - held
    if split_sizes:
        train = load_split(f"train[:{kept}]", kept)
        validation = load_split(f"train[{kept}:{pool}]", held) if held else None
        details["train_split"] = f"train[:{kept}]"
        details["validation_split_spec"] = f"train[{kept}:{pool}]" if held else None
    else:  # sizes unknown (dataset not prepared, e.g. under tfds.testing.mock_data)
        full = load_split("train", pool)
        train = full.take(kept)
        validation = full.skip(kept).take(held) if held else None
        details["validation_split_spec"] = f"train examples {kept}..{pool - 1}"
    test = load_split(test_spec, limit) if test_spec else None
    details.update(
        {
            "seed": int(seed),
            "validation_split": validation_split,
            "limit": limit,
            "validation_source": "tail of the TFDS train split (not stratified)",
            "resized_to": list(resize_to) if resize_to else None,
        }
    )
    return DatasetSplits(
        name=name,
        train=train,
        validation=validation,
        test=test,
        num_classes=int(num_classes),
        input_shape=tuple(int(d) for d in input_shape),
        class_names=tuple(str(c) for c in class_names),
        info=details,
    )


def _autotune():
    import tensorflow as tf

    return tf.data.AUTOTUNE


def _center_crop_resize(image, size):
    """Crops the largest central window of the target aspect ratio, resizes to `size`."""
    import tensorflow as tf

    height, width = size
    shape = tf.shape(image)
    in_height = tf.cast(shape[0], tf.float32)
    in_width = tf.cast(shape[1], tf.float32)
    scale = tf.minimum(in_height / height, in_width / width)
    crop_height = tf.cast(tf.round(height * scale), tf.int32)
    crop_width = tf.cast(tf.round(width * scale), tf.int32)
    top = (shape[0] - crop_height) // 2
    left = (shape[1] - crop_width) // 2
    image = image[top : top + crop_height, left : left + crop_width]
    image = tf.image.resize(image, (height, width), antialias=True)
    return tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)


def _to_numpy(dataset, what: str):
    images, labels = [], []
    for image_batch, label_batch in dataset.batch(1024).as_numpy_iterator():
        images.append(image_batch)
        labels.append(label_batch)
    if not images:
        raise DataError(f"{what} is empty (0 examples).")
    return np.concatenate(images), np.concatenate(labels).astype(np.int64)
