"""Fashion-MNIST teachers and students: shapes, taps, sizes, and that they learn."""

import numpy as np
import keras
import pytest

from keras_distill import models

TEACHERS = ["fmnist_teacher_tiny", "fmnist_teacher_small", "fmnist_teacher_medium",
            "fmnist_teacher_large"]
STUDENTS = ["fmnist_student_small", "fmnist_student", "fmnist_student_wide"]


@pytest.fixture(scope="module")
def built():
    return {name: models.get(name, num_classes=10)
            for name in TEACHERS + STUDENTS + ["fmnist_teacher"]}


def _trainable(model):
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


@pytest.mark.parametrize("name", TEACHERS + STUDENTS + ["fmnist_teacher"])
def test_forward_and_taps(built, name):
    model = built[name]
    assert tuple(model.input.shape) == (None, 28, 28, 1)
    assert models.feature_taps(model) == ["stage1", "stage2", "stage3"]
    sizes = [model.get_layer(t).output.shape[1:3] for t in ("stage1", "stage2", "stage3")]
    assert sizes == [(28, 28), (14, 14), (7, 7)]
    assert model.get_layer("embedding").output.shape[-1] == model.get_layer(
        "stage3").output.shape[-1]
    images = np.random.default_rng(0).normal(size=(4, 28, 28, 1)).astype("float32")
    assert tuple(model(images, training=False).shape) == (4, 10)


def test_parameter_ranges_leave_a_capacity_gap(built):
    params = {name: _trainable(model) for name, model in built.items()}
    assert 200_000 <= params["fmnist_teacher"] <= 1_000_000
    assert params["fmnist_teacher"] == params["fmnist_teacher_medium"]
    assert 10_000 <= params["fmnist_student"] <= 30_000
    assert params["fmnist_teacher"] >= 10 * params["fmnist_student"]
    sizes = [params[n] for n in TEACHERS]
    assert sizes == sorted(sizes) and sizes[-1] <= 1_500_000
    sizes = [params[n] for n in STUDENTS]
    assert sizes == sorted(sizes) and sizes[-1] < params["fmnist_teacher_small"] * 2


def test_width_multiplier_scales_channels():
    for width in (0.5, 1.0, 3.0):
        model = models.get("fmnist_student", num_classes=10, width=width)
        assert model.get_layer("stage1").output.shape[-1] == round(12 * width)


def test_student_learns_a_small_batch():
    rng = np.random.default_rng(0)
    images = rng.normal(size=(64, 28, 28, 1)).astype("float32")
    labels = rng.integers(0, 10, size=64)
    images += labels[:, None, None, None].astype("float32") * 0.3  # a learnable signal
    keras.utils.set_random_seed(0)
    model = models.get("fmnist_student", num_classes=10)
    model.compile(keras.optimizers.Adam(1e-2),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    history = model.fit(images, labels, batch_size=64, epochs=12, verbose=0)
    assert history.history["loss"][-1] < 0.5 * history.history["loss"][0]


def test_logits_stay_float32_under_mixed_precision():
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        model = models.get("fmnist_student", num_classes=10)
    finally:
        keras.config.set_dtype_policy(previous)
    assert model.get_layer("stage1").compute_dtype == "bfloat16"
    images = np.zeros((2, 28, 28, 1), "float32")
    assert keras.backend.standardize_dtype(model(images).dtype) == "float32"
