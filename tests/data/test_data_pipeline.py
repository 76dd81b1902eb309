"""make_dataset: batching, normalisation, seeded augmentation, soft labels, side inputs."""

import numpy as np
import pytest
import tensorflow as tf

from keras_distill import data

NUM_CLASSES = 10


def sample_data(n=64, size=8, channels=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (n, size, size, channels), dtype=np.uint8)
    y = np.arange(n) % NUM_CLASSES
    return x, y


def collect(dataset):
    """All batches of one pass as numpy (x may be a dict)."""
    return [tf.nest.map_structure(lambda t: t.numpy(), batch) for batch in dataset]


def images_of(batches):
    return np.concatenate([b[0]["inputs"] if isinstance(b[0], dict) else b[0] for b in batches])


def test_evaluation_pipeline_keeps_order_and_scales():
    x, y = sample_data(n=50)
    batches = collect(data.make_dataset(x, y, batch_size=16))
    assert [len(b[1]) for b in batches] == [16, 16, 16, 2]
    images = images_of(batches)
    assert images.dtype == np.float32
    np.testing.assert_allclose(images, x / 255.0, atol=1e-6)
    np.testing.assert_array_equal(np.concatenate([b[1] for b in batches]), y)
    dropped = collect(data.make_dataset(x, y, batch_size=16, drop_remainder=True))
    assert len(dropped) == 3


def test_array_split_input_and_float_images():
    x, y = sample_data(n=8)
    split = data.ArraySplit(x.astype(np.float32) / 255.0, y)
    ((images, labels),) = collect(data.make_dataset(split, batch_size=8))
    np.testing.assert_allclose(images, x / 255.0, atol=1e-6)  # floats in [0, 1] stay there
    assert labels.dtype == np.int64


def test_standardize_with_training_statistics():
    x, y = sample_data(n=40)
    stats = data.channel_stats(x)
    scaled = x.astype(np.float64) / 255.0
    np.testing.assert_allclose(stats.mean, scaled.mean(axis=(0, 1, 2)), rtol=1e-6)
    np.testing.assert_allclose(stats.std, scaled.std(axis=(0, 1, 2)), rtol=1e-6)
    images = images_of(collect(data.make_dataset(x, y, batch_size=40, normalize=stats)))
    np.testing.assert_allclose(images.mean(axis=(0, 1, 2)), 0.0, atol=1e-4)
    np.testing.assert_allclose(images.std(axis=(0, 1, 2)), 1.0, atol=1e-3)
    train = images_of(
        collect(data.make_dataset(x, y, 40, training=True, normalize="standardize", seed=0))
    )
    np.testing.assert_allclose(np.sort(train.ravel()), np.sort(images.ravel()), atol=1e-5)


def test_standardize_refused_on_evaluation_data():
    x, y = sample_data()
    with pytest.raises(data.DataError, match=r"normalize=channel_stats\(x_train\)"):
        data.make_dataset(x, y, 8, training=False, normalize="standardize")


@pytest.mark.parametrize("augment", ["crop_flip", "cutmix"])
def test_augmentation_is_seeded_and_changes_images(augment):
    x, y = sample_data(n=32)

    def first_pass(seed):
        dataset = data.make_dataset(
            x, y, 16, training=True, augment=augment, seed=seed, num_classes=NUM_CLASSES
        )
        return images_of(collect(dataset))

    a, b, c = first_pass(1), first_pass(1), first_pass(2)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    # Same shuffle without augmentation: augmentation really changed the images.
    plain = images_of(collect(data.make_dataset(x, y, 16, training=True, seed=1)))
    assert a.shape == plain.shape == (32, 8, 8, 3)
    assert not np.allclose(a, plain)


def test_randaugment_is_seeded_and_changes_images():
    # RandAugment traces 11 Keras layers: one small batch, two builds.
    x, y = sample_data(n=16)
    policy = data.get_augmentation("randaugment", num_ops=1, base="none")
    a, b = (
        images_of(collect(data.make_dataset(x, y, 16, training=True, augment=policy, seed=4)))
        for _ in range(2)
    )
    np.testing.assert_array_equal(a, b)
    plain = images_of(collect(data.make_dataset(x, y, 16, training=True, seed=4)))
    changed = [not np.allclose(a[i], plain[i], atol=1e-3) for i in range(16)]
    assert sum(changed) >= 12  # a few ops (e.g. auto_contrast) may leave an image as is
    assert a.min() >= -1e-3 and a.max() <= 1 + 1e-3  # stays in the value range


def test_epochs_differ_but_runs_repeat():
    x, y = sample_data(n=32)
    dataset = data.make_dataset(x, y, 32, training=True, augment="crop_flip", seed=7)
    epoch_1, epoch_2 = images_of(collect(dataset)), images_of(collect(dataset))
    assert not np.array_equal(epoch_1, epoch_2)
    again = data.make_dataset(x, y, 32, training=True, augment="crop_flip", seed=7)
    np.testing.assert_array_equal(images_of(collect(again)), epoch_1)
    np.testing.assert_array_equal(images_of(collect(again)), epoch_2)


def test_crop_flip_keeps_image_label_pairs():
    # Image i is constant i+1 (1..64): after a pad-4 crop and flip its non-zero
    # pixels still equal i+1, and its label is still y[i].
    n = 64
    x = np.broadcast_to(
        np.arange(1, n + 1, dtype=np.uint8)[:, None, None, None], (n, 8, 8, 1)
    ).copy()
    y = np.arange(n) % NUM_CLASSES
    dataset = data.make_dataset(
        x, y, 16, training=True, augment="crop_flip", seed=0, normalize="none", with_index=True
    )
    padded_images = 0
    for inputs, labels in collect(dataset):
        for image, label, index in zip(inputs["inputs"], labels, inputs["index"]):
            assert label == y[index]
            assert set(np.unique(image)) <= {0.0, float(index + 1)}
            padded_images += int((image == 0).any())
    assert padded_images > n // 2  # most crops show some zero padding


def test_with_index_after_shuffling():
    x, y = sample_data(n=50)
    batches = collect(
        data.make_dataset(x, y, 16, training=True, seed=3, with_index=True, normalize="none")
    )
    index = np.concatenate([b[0]["index"] for b in batches])
    assert index.dtype == np.int64
    assert sorted(index) == list(range(50)) and not np.array_equal(index, np.arange(50))
    np.testing.assert_array_equal(np.concatenate([b[1] for b in batches]), y[index])
    np.testing.assert_array_equal(images_of(batches), x[index].astype(np.float32))


def test_sample_weight_and_extra_inputs():
    x, y = sample_data(n=20)
    weights = np.linspace(0, 1, 20)
    teacher_logits = np.random.default_rng(0).normal(size=(20, NUM_CLASSES)).astype(np.float32)
    batches = collect(
        data.make_dataset(
            x,
            y,
            8,
            training=True,
            seed=0,
            sample_weight=weights,
            extra={"teacher_logits": teacher_logits},
            with_index=True,
        )
    )
    inputs, labels, batch_weights = batches[0]
    assert set(inputs) == {"inputs", "index", "teacher_logits"}
    np.testing.assert_allclose(batch_weights, weights[inputs["index"]], rtol=1e-6)
    np.testing.assert_array_equal(inputs["teacher_logits"], teacher_logits[inputs["index"]])


@pytest.mark.parametrize("augment", ["mixup", "cutmix"])
def test_mixing_gives_soft_labels(augment):
    x, y = sample_data(n=64)
    dataset = data.make_dataset(
        x, y, 32, training=True, augment=augment, seed=0, num_classes=NUM_CLASSES
    )
    images, labels = collect(dataset)[0]
    assert images.shape == (32, 8, 8, 3) and labels.shape == (32, NUM_CLASSES)
    np.testing.assert_allclose(labels.sum(axis=1), 1.0, atol=1e-5)
    assert ((labels > 0) & (labels < 1)).any()  # some labels are mixed
    assert data.get_augmentation(augment).soft_labels
    # Evaluation pipelines keep integer labels unless asked for one-hot.
    _, eval_labels = collect(data.make_dataset(x, y, 64, augment=augment))[0]
    assert eval_labels.shape == (64,)
    _, eval_one_hot = collect(data.make_dataset(x, y, 64, num_classes=NUM_CLASSES, one_hot=True))[0]
    np.testing.assert_array_equal(eval_one_hot.argmax(axis=1), y)


def test_mixing_without_num_classes_is_explained():
    x, y = sample_data()
    with pytest.raises(data.DataError, match="pass num_classes=.*CategoricalCrossentropy"):
        data.make_dataset(x, y, 8, training=True, augment="mixup")


def test_augmentation_only_in_training():
    x, y = sample_data(n=16)
    evaluated = images_of(collect(data.make_dataset(x, y, 16, augment="crop_flip")))
    np.testing.assert_allclose(evaluated, x / 255.0, atol=1e-6)


def test_streamed_input():
    x, y = sample_data(n=24)
    stream = tf.data.Dataset.from_tensor_slices((x, y))
    batches = collect(
        data.make_dataset(
            stream, batch_size=10, training=True, seed=0, augment="flip", with_index=True
        )
    )
    index = np.concatenate([b[0]["index"] for b in batches])
    assert sorted(index) == list(range(24))
    np.testing.assert_array_equal(np.concatenate([b[1] for b in batches]), y[index])


def test_augmentation_registry():
    assert data.available_augmentations() == sorted(
        ["none", "flip", "crop", "crop_flip", "randaugment", "mixup", "cutmix"]
    )
    assert data.is_deterministic("none") and data.is_deterministic(None)
    assert data.is_deterministic([]) and data.is_deterministic(["none"])
    for name in ["flip", "crop", "crop_flip", "randaugment", "mixup", "cutmix"]:
        assert not data.is_deterministic(name)
    assert not data.is_deterministic(["none", "flip"])
    assert data.get_augmentation("crop_flip", padding=2).padding == 2
    assert data.get_augmentation(["crop", "mixup"]).soft_labels
    with pytest.raises(
        ValueError, match="Unknown augmentation 'autoaugment'. Known: crop, crop_flip"
    ):
        data.get_augmentation("autoaugment")


def test_label_errors_in_pipeline():
    x, y = sample_data(n=8)
    with pytest.raises(data.DataError, match="looks like one-hot"):
        data.make_dataset(x, np.eye(NUM_CLASSES)[y], 4)
    with pytest.raises(data.DataError, match="out of range for num_classes=5"):
        data.make_dataset(x, y, 4, num_classes=5)
    with pytest.raises(data.DataError, match="8 images but 7 labels"):
        data.make_dataset(x, y[:7], 4)
