"""Datasets, `tf.data` pipelines, augmentation and robustness transforms.

Loaders return a `DatasetSplits` (train / validation / test, `num_classes`,
`input_shape`, `class_names`):

- `load(name, data_dir=None, validation_split=0.1, seed=0, download=True,
  limit=None)`: Fashion-MNIST (default), MNIST, or any TFDS dataset.
- `from_arrays(x_train, y_train, x_test=None, y_test=None, ...)`.
- `from_directory(path, image_size, ...)`: one sub-folder per class.

Pipelines: `make_dataset(x, y, batch_size, training, augment=..., ...)`;
`with_unlabeled(train, images, batch_size)` adds unlabeled images to each
batch (KD+'s extra inputs), `load_unlabeled(source, image_shape)` reads them.
Transforms (training split only): `symmetric_label_noise`,
`asymmetric_label_noise`, `long_tailed_imbalance`.

See docs/data.md.
"""

from keras_distill.data.augment import (
    Augmentation,
    available_augmentations,
    get_augmentation,
    is_deterministic,
    register_augmentation,
)
from keras_distill.data.custom import from_arrays, from_directory
from keras_distill.data.idx import read_idx, write_idx
from keras_distill.data.loaders import BUILTIN_DATASETS, load
from keras_distill.data.pipeline import (
    ChannelStats,
    channel_stats,
    infer_value_range,
    make_dataset,
)
from keras_distill.data.unlabeled import load_unlabeled, with_unlabeled
from keras_distill.data.splits import (
    ArraySplit,
    DataError,
    DataNotFoundError,
    DatasetSplits,
    stratified_split,
)
from keras_distill.data.transforms import (
    ASYMMETRIC_NOISE_MAPS,
    asymmetric_label_noise,
    long_tailed_counts,
    long_tailed_imbalance,
    symmetric_label_noise,
)

__all__ = [
    "ASYMMETRIC_NOISE_MAPS",
    "ArraySplit",
    "Augmentation",
    "BUILTIN_DATASETS",
    "ChannelStats",
    "DataError",
    "DataNotFoundError",
    "DatasetSplits",
    "asymmetric_label_noise",
    "available_augmentations",
    "channel_stats",
    "from_arrays",
    "from_directory",
    "get_augmentation",
    "infer_value_range",
    "is_deterministic",
    "load",
    "load_unlabeled",
    "long_tailed_counts",
    "long_tailed_imbalance",
    "make_dataset",
    "with_unlabeled",
    "read_idx",
    "register_augmentation",
    "stratified_split",
    "symmetric_label_noise",
    "write_idx",
]
