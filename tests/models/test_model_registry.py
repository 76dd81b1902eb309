"""Registry: names, aliases, errors, keras.applications wrapping and `load`."""

import numpy as np
import keras
import pytest

from keras_distill import models

ZOO_NAMES = [
    "resnet8", "resnet14", "resnet20", "resnet32", "resnet44", "resnet56", "resnet110",
    "resnet8x4", "resnet32x4", "wrn_16_1", "wrn_16_2", "wrn_40_1", "wrn_40_2",
    "vgg8", "vgg11", "vgg13", "vgg16", "vgg19", "mobilenetv2", "shufflenetv1",
    "shufflenetv2", "fmnist_teacher", "fmnist_teacher_tiny", "fmnist_teacher_small",
    "fmnist_teacher_medium", "fmnist_teacher_large", "fmnist_student", "fmnist_student_small",
    "fmnist_student_wide",
]


def test_available_lists_the_zoo_in_order():
    assert models.available() == ZOO_NAMES
    with_apps = models.available(include_applications=True)
    assert "keras.applications.ResNet50" in with_apps
    assert with_apps[:len(ZOO_NAMES)] == ZOO_NAMES


def test_taps_metadata_covers_every_model():
    assert set(models.TAPS) == set(ZOO_NAMES)
    assert models.TAPS["resnet8x4"] == ("stage1", "stage2", "stage3")
    assert models.TAPS["vgg13"] == ("stage1", "stage2", "stage3", "stage4")
    assert models.feature_taps("mobilenetv2") == ["stage1", "stage2", "stage3", "stage4"]
    assert models.feature_taps("keras.applications.ResNet50") == ["features"]


@pytest.mark.parametrize("alias, name", [
    ("ShuffleV1", "shufflenetv1"), ("ShuffleV2", "shufflenetv2"), ("MobileNetV2", "mobilenetv2"),
    ("mobile_half", "mobilenetv2"), ("vgg13_bn", "vgg13"), ("WRN-40-2", "wrn_40_2"),
    ("ResNet8x4", "resnet8x4"),
])
def test_reference_spellings_resolve(alias, name):
    assert models.spec(alias).name == name


def test_unknown_name_lists_names_and_close_matches():
    with pytest.raises(ValueError) as error:
        models.get("resnet8x5", num_classes=10)
    message = str(error.value)
    assert "Unknown model 'resnet8x5'" in message
    assert "Did you mean" in message and "'resnet8x4'" in message.split("Available")[0]
    for name in ZOO_NAMES:
        assert f"'{name}'" in message
    assert "keras.applications" in message
    with pytest.raises(ValueError, match="Unknown model"):
        models.feature_taps("no_such_model")


def test_kwargs_reach_the_builder():
    wide = models.get("fmnist_student", num_classes=10, width=2.0)
    assert wide.get_layer("stage3").output.shape[-1] == 2 * models.get(
        "fmnist_student", num_classes=10).get_layer("stage3").output.shape[-1]
    with pytest.raises(TypeError):
        models.get("resnet8", num_classes=10, no_such_argument=1)


def test_keras_application_small_input():
    model = models.get("keras.applications.MobileNetV2", num_classes=10,
                       input_shape=(32, 32, 3), alpha=0.35)
    assert models.feature_taps(model) == ["features"]
    assert tuple(model.get_layer("embedding").output.shape) == (None, 1280)
    assert tuple(model.get_layer("features").output.shape) == (None, 1, 1, 1280)
    # One flat graph: inner application layers can be tapped by their own names.
    assert not any(isinstance(layer, keras.Model) for layer in model.layers)
    assert model.get_layer("block_3_expand_relu") is not None
    images = np.random.default_rng(0).uniform(-1, 1, size=(2, 32, 32, 3)).astype("float32")
    assert tuple(model(images, training=False).shape) == (2, 10)


def test_keras_application_input_too_small():
    with pytest.raises(ValueError, match=r"too small for keras.applications.ResNet50.*32x32"):
        models.get("keras.applications.ResNet50", num_classes=10, input_shape=(16, 16, 3))
    with pytest.raises(ValueError, match=r"at least 75x75"):
        models.get("keras.applications.InceptionV3", num_classes=10, input_shape=(32, 32, 3))


def test_keras_application_unknown_and_reserved_arguments():
    with pytest.raises(ValueError, match="ResNet50"):
        models.get("keras.applications.ResNet51", num_classes=10)
    with pytest.raises(ValueError, match="include_top"):
        models.get("keras.applications.MobileNetV2", num_classes=10, include_top=True)


def test_keras_application_weights_pass_through(monkeypatch):
    seen = {}

    def spy(**kwargs):  # records the arguments, builds a tiny stand-in (no download)
        seen.update(kwargs)
        inputs = keras.Input(kwargs["input_shape"])
        return keras.Model(inputs, keras.layers.Conv2D(4, 3, name="conv")(inputs))

    monkeypatch.setattr(keras.applications, "MobileNetV2", spy)
    model = models.get("keras.applications.MobileNetV2", num_classes=3, alpha=0.35)
    assert seen["weights"] is None and seen["include_top"] is False and seen["alpha"] == 0.35
    assert tuple(model.get_layer("features").output.shape) == (None, 30, 30, 4)
    models.get("keras.applications.MobileNetV2", num_classes=3, alpha=0.35, weights="imagenet")
    assert seen["weights"] == "imagenet"
    assert seen["input_shape"] == (32, 32, 3)


def test_load_builds_names_and_reads_keras_files(tmp_path):
    model = models.load("fmnist_student", num_classes=10)
    assert model.name == "fmnist_student"
    path = tmp_path / "student.keras"
    model.save(path)
    restored = models.load(str(path))
    images = np.random.default_rng(1).normal(size=(3, 28, 28, 1)).astype("float32")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(restored(images)),
                               keras.ops.convert_to_numpy(model(images)), atol=1e-6)
    assert models.load(path).name == "fmnist_student"  # os.PathLike works too


def test_load_errors_are_explicit(tmp_path):
    with pytest.raises(FileNotFoundError):
        models.load(str(tmp_path / "missing.keras"))
    with pytest.raises(ValueError, match="weights only"):
        models.load(str(tmp_path / "student.weights.h5"))
    with pytest.raises(ValueError, match="needs num_classes"):
        models.load("resnet8")
    with pytest.raises(ValueError, match="not a .keras file"):
        models.load(str(tmp_path))


def test_feature_taps_refuses_a_model_without_taps():
    inputs = keras.Input((4,))
    plain = keras.Model(inputs, keras.layers.Dense(2)(inputs), name="plain")
    with pytest.raises(ValueError, match="no stage taps"):
        models.feature_taps(plain)
