"""Unlabeled images for KD+ (plus_source=unlabeled): loading, checks, zipping."""

import numpy as np
import pytest
import tensorflow as tf

from keras_distill.data import DataError, DataNotFoundError, load_unlabeled, make_dataset
from keras_distill.data import with_unlabeled


def _images(n=10, shape=(8, 8), seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, *shape), dtype="uint8")


def test_npy_and_npz_files(tmp_path):
    images = _images()
    np.save(tmp_path / "u.npy", images)
    loaded = load_unlabeled(str(tmp_path / "u.npy"), (8, 8, 1))
    np.testing.assert_array_equal(loaded, images[..., None])  # (N, H, W) gains a channel
    np.savez(tmp_path / "u.npz", x=images, other=np.zeros(3))
    np.testing.assert_array_equal(load_unlabeled(str(tmp_path / "u.npz"), (8, 8, 1))[..., 0],
                                  images)
    np.savez(tmp_path / "two.npz", a=images, b=images)
    with pytest.raises(DataError, match="name the images 'x'"):
        load_unlabeled(str(tmp_path / "two.npz"), (8, 8, 1))
    subset = load_unlabeled(str(tmp_path / "u.npy"), (8, 8, 1), limit=4, seed=1)
    assert subset.shape == (4, 8, 8, 1)
    assert all(any((row == image).all() for image in images[..., None]) for row in subset)


def test_folder_of_images_is_resized(tmp_path):
    import keras

    for i in range(3):
        keras.utils.save_img(tmp_path / f"{i}.png", np.full((16, 12, 1), 40 * i, "uint8"),
                             scale=False)
    loaded = load_unlabeled(str(tmp_path), (8, 8, 1))
    assert loaded.shape == (3, 8, 8, 1) and loaded.dtype == np.uint8
    np.testing.assert_array_equal(sorted(loaded.reshape(3, -1)[:, 0]), [0, 40, 80])


def test_tfds_source():
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=6):
        loaded = load_unlabeled("tfds:mnist:train", (28, 28, 1))
    assert loaded.shape == (6, 28, 28, 1)


def test_clear_errors(tmp_path):
    with pytest.raises(DataNotFoundError, match="does not exist; give a .npy file"):
        load_unlabeled(str(tmp_path / "missing.npy"), (8, 8, 1))
    np.save(tmp_path / "u.npy", _images(shape=(9, 9)))
    with pytest.raises(DataError, match=r"shape \(9, 9, 1\), the training images \(8, 8, 1\)"):
        load_unlabeled(str(tmp_path / "u.npy"), (8, 8, 1))
    (tmp_path / "u.txt").write_text("x")
    with pytest.raises(DataError, match="unsupported"):
        load_unlabeled(str(tmp_path / "u.txt"), (8, 8, 1))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="empty"):
        load_unlabeled(str(tmp_path / "empty"), (8, 8, 1))


def test_every_batch_gets_scaled_unlabeled_images_without_replacement():
    """12 labeled examples in batches of 4 (3 batches); 8 unlabeled images, pixel value
    = 10 * i: each pass over them (2 batches) holds each image once, scaled by 1/255."""
    labeled = make_dataset(_images(12), np.arange(12) % 3, batch_size=4, num_classes=3)
    unlabeled = (np.arange(8, dtype="uint8")[:, None, None] * 10 * np.ones((8, 8, 8), "uint8"))
    zipped = with_unlabeled(labeled, unlabeled, batch_size=4, seed=0,
                            value_range=(0.0, 255.0))
    batches = list(zipped)
    assert len(batches) == 3
    for x, y in batches:
        assert set(x) == {"inputs", "unlabeled"} and x["unlabeled"].shape == (4, 8, 8, 1)
    seen = np.concatenate([np.round(b[0]["unlabeled"].numpy()[:, 0, 0, 0] * 255 / 10)
                           for b in batches[:2]])
    assert sorted(seen) == list(range(8))
    # a dict x (e.g. with the row index) keeps its keys
    indexed = make_dataset(_images(12), np.arange(12) % 3, batch_size=4, with_index=True)
    x, _ = next(iter(with_unlabeled(indexed, unlabeled, batch_size=4, key="extra")))
    assert set(x) == {"inputs", "index", "extra"}
    with pytest.raises(DataError, match="fewer than one batch"):
        with_unlabeled(labeled, unlabeled[:3], batch_size=4)
