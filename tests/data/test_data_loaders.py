"""Loaders: IDX (Debian, tiny data_dir), keras.datasets fallback, mocked TFDS, arrays, folders."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from keras_distill import data
from keras_distill.data import idx as idx_lib

DEBIAN_DIR = "/usr/share/datasets/fashion-mnist"


def write_tiny_idx(directory, num_train=30, num_test=10, gz=True, shape=(28, 28)):
    """Writes the 4 Fashion-MNIST IDX files with deterministic content; returns the arrays."""
    os.makedirs(directory, exist_ok=True)
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (num_train,) + shape, dtype=np.uint8),
        "train-labels-idx1-ubyte": (np.arange(num_train) % 10).astype(np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (num_test,) + shape, dtype=np.uint8),
        "t10k-labels-idx1-ubyte": (np.arange(num_test) % 10).astype(np.uint8),
    }
    for name, array in arrays.items():
        # Images gzipped, labels raw: both forms are read.
        suffix = ".gz" if gz and "images" in name else ""
        data.write_idx(os.path.join(directory, name + suffix), array)
    return arrays


@pytest.fixture
def no_local_fashion_mnist(monkeypatch, tmp_path):
    """Hides Debian's copy and the Keras cache, so only data_dir / keras.datasets remain."""
    monkeypatch.setattr(idx_lib, "DEBIAN_FASHION_MNIST_DIR", str(tmp_path / "no-debian"))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras-home"))


# ---------------------------------------------------------------- IDX / Fashion-MNIST


@pytest.mark.skipif(not os.path.isdir(DEBIAN_DIR), reason="dataset-fashion-mnist not installed")
def test_debian_fashion_mnist_full():
    splits = data.load("fashion_mnist", validation_split=0.1, seed=0)
    assert splits.info["source"] == "debian"
    assert splits.in_memory
    assert splits.info["source_sizes"] == {"train": 60000, "test": 10000}
    assert len(splits.train) == 54000 and len(splits.validation) == 6000
    assert splits.train.x.shape == (54000, 28, 28, 1) and splits.train.x.dtype == np.uint8
    assert splits.test.x.shape == (10000, 28, 28, 1)
    assert splits.test.y.shape == (10000,) and splits.test.y.dtype == np.int64
    for split in (splits.train, splits.validation, splits.test):
        assert split.y.min() == 0 and split.y.max() == 9
    # Fashion-MNIST is balanced: a stratified 10% validation split has 600 per class.
    assert np.bincount(splits.validation.y).tolist() == [600] * 10
    assert splits.num_classes == 10 and splits.input_shape == (28, 28, 1)
    assert splits.class_names[0] == "T-shirt/top" and splits.class_names[9] == "Ankle boot"
    json.dumps(splits.describe())


@pytest.mark.skipif(not os.path.isdir(DEBIAN_DIR), reason="dataset-fashion-mnist not installed")
def test_limit_keeps_a_stratified_subset():
    splits = data.load("fashion-mnist", limit=500, seed=1)  # '-' accepted
    assert (len(splits.train), len(splits.validation), len(splits.test)) == (450, 50, 500)
    assert np.bincount(splits.validation.y).tolist() == [5] * 10
    assert np.bincount(splits.test.y).tolist() == [50] * 10


def test_read_idx_round_trip(tmp_path):
    array = np.arange(24, dtype=np.int32).reshape(2, 3, 4) - 5
    for name in ("a.idx", "a.idx.gz"):
        data.write_idx(str(tmp_path / name), array)
        read = data.read_idx(str(tmp_path / name))
        np.testing.assert_array_equal(read, array)
        assert read.dtype == np.int32


def test_read_idx_rejects_garbage(tmp_path):
    (tmp_path / "bad").write_bytes(b"hello world")
    with pytest.raises(data.DataError, match="not an IDX file"):
        data.read_idx(str(tmp_path / "bad"))


def test_fashion_mnist_from_tiny_data_dir(tmp_path, no_local_fashion_mnist):
    arrays = write_tiny_idx(str(tmp_path / "fm"))
    splits = data.load("fashion_mnist", data_dir=str(tmp_path / "fm"), validation_split=0.2)
    assert splits.info["source"] == "data_dir"
    assert (len(splits.train), len(splits.validation), len(splits.test)) == (24, 6, 10)
    np.testing.assert_array_equal(splits.test.x[..., 0], arrays["t10k-images-idx3-ubyte"])
    np.testing.assert_array_equal(splits.test.y, arrays["t10k-labels-idx1-ubyte"])
    # Train + validation are exactly the training file, split without overlap.
    rebuilt = np.concatenate([splits.train.x, splits.validation.x])[..., 0]
    original = arrays["train-images-idx3-ubyte"]
    assert sorted(map(bytes, rebuilt)) == sorted(map(bytes, original))


def test_data_dir_subfolder_and_mnist(tmp_path):
    write_tiny_idx(str(tmp_path / "mnist"), gz=False)
    splits = data.load("mnist", data_dir=str(tmp_path), validation_split=0.0)
    assert splits.validation is None
    assert splits.class_names == tuple(str(i) for i in range(10))
    assert len(splits.train) == 30


def test_partial_idx_files_are_refused(tmp_path):
    write_tiny_idx(str(tmp_path))
    os.remove(tmp_path / "t10k-labels-idx1-ubyte")
    with pytest.raises(data.DataError, match="t10k-labels-idx1-ubyte"):
        data.load("fashion_mnist", data_dir=str(tmp_path))


def test_keras_datasets_fallback(monkeypatch, no_local_fashion_mnist):
    import keras

    fake = np.zeros((20, 28, 28), np.uint8), np.arange(20) % 10
    monkeypatch.setattr(keras.datasets.fashion_mnist, "load_data", lambda: (fake, fake))
    splits = data.load("fashion_mnist", download=True, validation_split=0.5)
    assert splits.info["source"] == "keras.datasets"
    assert len(splits.train) == 10 and len(splits.validation) == 10


def test_fashion_mnist_not_found_lists_the_three_ways(no_local_fashion_mnist, tmp_path):
    with pytest.raises(data.DataNotFoundError) as caught:
        data.load("fashion_mnist", data_dir=str(tmp_path / "empty"), download=False)
    message = str(caught.value)
    assert "--data_dir" in message and "train-images-idx3-ubyte" in message
    assert "apt-get install dataset-fashion-mnist" in message
    assert "keras.datasets.fashion_mnist.load_data()" in message and "internet" in message


def test_unknown_dataset_name():
    with pytest.raises(data.DataError) as caught:
        data.load("fashoin_mnist", download=False)
    message = str(caught.value)
    assert "Unknown dataset 'fashoin_mnist'" in message
    assert "Did you mean 'fashion_mnist'" in message
    assert "TensorFlow Datasets" in message and "cifar10" in message
    assert "from_arrays" in message


def test_bad_arguments():
    with pytest.raises(data.DataError, match=r"validation_split must be in \[0, 1\)"):
        data.load("fashion_mnist", validation_split=1.0)
    with pytest.raises(data.DataError, match="limit must be None or a positive integer"):
        data.load("fashion_mnist", limit=0)


# ---------------------------------------------------------------- TFDS (mocked)


def test_tfds_cifar10_in_memory(tmp_path):
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=40):
        splits = data.load("cifar10", data_dir=str(tmp_path), validation_split=0.25, seed=3)
    assert splits.in_memory and splits.info["source"] == "tfds"
    assert splits.num_classes == 10 and splits.input_shape == (32, 32, 3)
    assert splits.class_names[:2] == ("airplane", "automobile")
    assert (len(splits.train), len(splits.validation), len(splits.test)) == (30, 10, 40)
    assert splits.train.x.dtype == np.uint8 and splits.train.y.dtype == np.int64
    assert 0 <= splits.train.y.min() and splits.train.y.max() < 10
    json.dumps(splits.describe())


def test_tfds_limit(tmp_path):
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=40):
        splits = data.load("cifar100", data_dir=str(tmp_path), limit=20, validation_split=0.1)
    assert (len(splits.train), len(splits.validation), len(splits.test)) == (18, 2, 20)
    assert splits.num_classes == 100 and splits.class_names[0] == "apple"


def test_tfds_imagenet_is_streamed(tmp_path):
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=10):
        splits = data.load(
            "imagenet2012", data_dir=str(tmp_path), image_size=(24, 24), validation_split=0.2
        )
        assert not splits.in_memory
        assert splits.num_classes == 1000 and splits.input_shape == (24, 24, 3)
        assert isinstance(splits.train, tf.data.Dataset)
        assert splits.info["test_split"] == "validation"  # imagenet has no labelled test split
        images = [image for image, _ in splits.train]
        assert len(images) == 8 and len(list(splits.validation)) == 2
        assert images[0].shape == (24, 24, 3) and images[0].dtype == tf.uint8
        batches = data.make_dataset(
            splits.train, batch_size=4, training=True, augment="crop_flip", seed=0, with_index=True
        )
        inputs, labels = next(iter(batches))
        assert inputs["inputs"].shape == (4, 24, 24, 3) and labels.shape == (4,)
        assert sorted(int(i) for b, _ in batches for i in b["index"]) == list(range(8))


def test_tfds_not_prepared_and_no_download(tmp_path):
    with pytest.raises(data.DataNotFoundError, match="not prepared.*download=True"):
        data.load("cifar10", data_dir=str(tmp_path), download=False)


# ---------------------------------------------------------------- arrays


def coded_images(n):
    """Images whose single pixel holds their row number, to track rows through splits."""
    return np.arange(n, dtype=np.float32).reshape(n, 1, 1, 1)


def test_from_arrays_validation_is_disjoint_and_stratified():
    y = np.repeat([0, 1, 2], [500, 300, 200])
    splits = data.from_arrays(coded_images(1000), y, validation_split=0.1, seed=5)
    train_rows = splits.train.x.ravel().astype(int)
    val_rows = splits.validation.x.ravel().astype(int)
    assert set(train_rows).isdisjoint(val_rows)
    assert sorted(np.concatenate([train_rows, val_rows])) == list(range(1000))
    np.testing.assert_array_equal(splits.validation.y, y[val_rows])  # labels follow their rows
    assert np.bincount(splits.validation.y).tolist() == [50, 30, 20]
    assert splits.test is None and splits.num_classes == 3
    again = data.from_arrays(coded_images(1000), y, validation_split=0.1, seed=5)
    np.testing.assert_array_equal(again.validation.x, splits.validation.x)
    other = data.from_arrays(coded_images(1000), y, validation_split=0.1, seed=6)
    assert not np.array_equal(other.validation.x, splits.validation.x)


def test_from_arrays_shapes_and_names():
    x = np.zeros((20, 8, 8), np.uint8)  # grayscale without channel axis
    y = (np.arange(20) % 4).reshape(-1, 1)  # (N, 1) labels are accepted
    splits = data.from_arrays(x, y, x[:6], y[:6], class_names="abcd", validation_split=0.0)
    assert splits.input_shape == (8, 8, 1) and splits.num_classes == 4
    assert splits.class_names == ("a", "b", "c", "d") and splits.train.y.shape == (20,)
    assert len(splits.test) == 6


def test_from_arrays_given_validation():
    x, y = coded_images(10), np.arange(10) % 2
    splits = data.from_arrays(x, y, x_validation=x[:4], y_validation=y[:4])
    assert len(splits.train) == 10 and len(splits.validation) == 4


def test_with_train_replaces_only_train():
    splits = data.from_arrays(coded_images(10), np.arange(10) % 2, validation_split=0.2)
    changed = splits.with_train(splits.train.x[:3], np.zeros(3, int))
    assert len(changed.train) == 3 and changed.validation is splits.validation


@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        (
            dict(x_train=np.zeros((4, 2, 2)), y_train=np.eye(4)),
            r"y_train has shape \(4, 4\): it looks like one-hot.*np\.argmax\(y, axis=1\)",
        ),
        (
            dict(x_train=np.zeros((4, 2, 2)), y_train=[0, 1, 2, 7], num_classes=3),
            r"labels out of range for num_classes=3: found min=0, max=7.*\[0, 3\)",
        ),
        (
            dict(x_train=np.zeros((4, 2, 2)), y_train=[0, 1, -1, 1]),
            r"negative label -1",
        ),
        (
            dict(x_train=[np.zeros((2, 2)), np.zeros((3, 3))], y_train=[0, 1]),
            r"inconsistent shapes: image 0 has shape \(2, 2\) but image 1 has shape \(3, 3\)",
        ),
        (
            dict(
                x_train=np.zeros((4, 2, 2)),
                y_train=[0, 1, 0, 1],
                x_test=np.zeros((2, 3, 3)),
                y_test=[0, 1],
            ),
            r"inconsistent shape: x_train images have shape \(2, 2, 1\) but x_test",
        ),
        (dict(x_train=np.zeros((0, 2, 2)), y_train=[]), r"x_train is empty \(0 examples\)"),
        (dict(x_train=np.zeros((3, 2, 2)), y_train=[0, 1]), r"3 images but 2 labels"),
        (dict(x_train=np.zeros((4, 2, 2)), y_train=[0.5, 1, 0, 1]), r"integer class ids"),
    ],
)
def test_from_arrays_errors(kwargs, pattern):
    with pytest.raises(data.DataError, match=pattern):
        data.from_arrays(**kwargs)


# ---------------------------------------------------------------- image folders


def write_png_folders(root, classes=("cat", "dog", "owl"), per_class=4, size=6):
    for label, name in enumerate(classes):
        os.makedirs(os.path.join(root, name), exist_ok=True)
        for i in range(per_class):
            pixel = np.array([label * 80, i * 10, 7], np.uint8)
            image = np.broadcast_to(pixel, (size, size, 3)).copy()
            tf.io.write_file(os.path.join(root, name, f"{i}.png"), tf.io.encode_png(image))


def test_from_directory(tmp_path):
    write_png_folders(str(tmp_path / "train"))
    write_png_folders(str(tmp_path / "test"), per_class=2)
    splits = data.from_directory(
        str(tmp_path / "train"),
        image_size=(6, 6),
        test_directory=str(tmp_path / "test"),
        validation_split=0.25,
        seed=0,
    )
    assert splits.class_names == ("cat", "dog", "owl") and splits.num_classes == 3
    assert splits.input_shape == (6, 6, 3) and splits.train.x.dtype == np.uint8
    assert (len(splits.train), len(splits.validation), len(splits.test)) == (9, 3, 6)
    assert np.bincount(splits.validation.y).tolist() == [1, 1, 1]
    # Pixels survive exactly and labels follow the folders.
    np.testing.assert_array_equal(splits.train.x[:, 0, 0, 0], splits.train.y * 80)
    assert splits.name == "train"


def test_from_directory_errors(tmp_path):
    with pytest.raises(data.DataNotFoundError, match="does not exist"):
        data.from_directory(str(tmp_path / "missing"), image_size=(4, 4))
    (tmp_path / "empty" / "a").mkdir(parents=True)
    with pytest.raises(data.DataError, match="sub-folder of images"):
        data.from_directory(str(tmp_path / "empty"), image_size=(4, 4))
