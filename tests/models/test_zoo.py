"""The CIFAR zoo against the reference PyTorch nets (RepDistiller / mdistiller).

Parameter counts. PyTorch's `sum(p.numel() for p in model.parameters())`
counts conv/linear weights and biases plus BatchNorm's 2 trainable values per
channel (weight, bias); its running mean/var are buffers, not parameters.
Keras's BatchNormalization holds 4 weights per channel (gamma, beta trainable;
moving mean, moving variance non-trainable) and `model.count_params()` counts
all 4. So we compare like with like: OUR TRAINABLE count against the
reference's `parameters()` count (what the CRD / DKD papers report), exactly,
and against the papers' rounded figures within 1%. The non-trainable count
must equal the BN buffers (= the trainable BN count).

`REFERENCE_PARAMS` was counted from the reference code for num_classes=100
(the architectures of HobbitLong/RepDistiller models/*.py, identical in
megvii-research/mdistiller); `PAPER_PARAMS` are the figures the KD papers
print (in millions).
"""

import numpy as np
import keras
import pytest

from keras_distill import models
from keras_distill.models import _common

REFERENCE_PARAMS = {
    "resnet8": 83_892, "resnet14": 181_108, "resnet20": 278_324, "resnet32": 472_756,
    "resnet44": 667_188, "resnet56": 861_620, "resnet110": 1_736_564,
    "resnet8x4": 1_233_540, "resnet32x4": 7_433_860,
    "wrn_16_1": 180_916, "wrn_16_2": 703_284, "wrn_40_1": 569_780, "wrn_40_2": 2_255_156,
    "vgg8": 3_965_028, "vgg11": 9_277_284, "vgg13": 9_462_180, "vgg16": 14_774_436,
    "vgg19": 20_086_692,
    "mobilenetv2": 812_836, "shufflenetv1": 949_258, "shufflenetv2": 1_355_528,
}
PAPER_PARAMS_M = {
    "resnet20": 0.28, "resnet32": 0.47, "resnet56": 0.86, "resnet110": 1.74,
    "resnet8x4": 1.23, "resnet32x4": 7.43, "wrn_16_2": 0.70, "wrn_40_1": 0.57,
    "wrn_40_2": 2.26, "vgg8": 3.96, "vgg13": 9.46, "mobilenetv2": 0.81,
    "shufflenetv1": 0.95, "shufflenetv2": 1.36,
}
CIFAR_ZOO = list(REFERENCE_PARAMS)

_THIN = {"stem": (32, 32, 16), "stage1": (32, 32, 16), "stage2": (16, 16, 32),
         "stage3": (8, 8, 64), "embedding": (64,)}
_X4 = {"stem": (32, 32, 32), "stage1": (32, 32, 64), "stage2": (16, 16, 128),
       "stage3": (8, 8, 256), "embedding": (256,)}
_WRN2 = {"stem": (32, 32, 16), "stage1": (32, 32, 32), "stage2": (16, 16, 64),
         "stage3": (8, 8, 128), "embedding": (128,)}
_VGG = {"stem": (32, 32, 64), "stage1": (16, 16, 128), "stage2": (8, 8, 256),
        "stage3": (4, 4, 512), "stage4": (4, 4, 512), "embedding": (512,)}
EXPECTED_SHAPES = {
    **{f"resnet{d}": _THIN for d in (8, 14, 20, 32, 44, 56, 110)},
    "resnet8x4": _X4, "resnet32x4": _X4,
    "wrn_16_1": _THIN, "wrn_40_1": _THIN, "wrn_16_2": _WRN2, "wrn_40_2": _WRN2,
    **{f"vgg{d}": _VGG for d in (8, 11, 13, 16, 19)},
    "mobilenetv2": {"stem": (16, 16, 16), "stage1": (16, 16, 12), "stage2": (8, 8, 16),
                    "stage3": (4, 4, 48), "stage4": (2, 2, 160), "embedding": (1280,)},
    "shufflenetv1": {"stem": (32, 32, 24), "stage1": (16, 16, 240), "stage2": (8, 8, 480),
                     "stage3": (4, 4, 960), "embedding": (960,)},
    "shufflenetv2": {"stem": (32, 32, 24), "stage1": (16, 16, 116), "stage2": (8, 8, 232),
                     "stage3": (4, 4, 464), "embedding": (1024,)},
}


@pytest.fixture(scope="module")
def zoo():
    """Builds each CIFAR model once (100 classes) for the whole module."""
    cache = {}

    def build(name):
        if name not in cache:
            cache[name] = models.get(name, num_classes=100)
        return cache[name]

    return build


def _count(weights):
    return sum(int(np.prod(w.shape)) for w in weights)


def test_zoo_lists_every_cifar_model():
    assert set(CIFAR_ZOO) <= set(models.available())
    assert set(EXPECTED_SHAPES) == set(CIFAR_ZOO)


@pytest.mark.parametrize("name", CIFAR_ZOO)
def test_parameter_count_matches_reference(zoo, name):
    model = zoo(name)
    trainable = _count(model.trainable_weights)
    non_trainable = _count(model.non_trainable_weights)
    assert trainable == REFERENCE_PARAMS[name]
    if name in PAPER_PARAMS_M:
        assert trainable / 1e6 == pytest.approx(PAPER_PARAMS_M[name], rel=0.01)
    # Keras BN keeps moving mean/var as non-trainable weights: as many as gamma/beta.
    bn_trainable = _count(w for layer in model.layers
                          if isinstance(layer, keras.layers.BatchNormalization)
                          for w in layer.trainable_weights)
    assert non_trainable == bn_trainable
    assert model.count_params() == trainable + non_trainable


@pytest.mark.parametrize("name", CIFAR_ZOO)
def test_taps_exist_with_expected_shapes(zoo, name):
    model = zoo(name)
    for tap, shape in EXPECTED_SHAPES[name].items():
        assert tuple(model.get_layer(tap).output.shape[1:]) == shape, tap
    assert tuple(model.get_layer("logits").output.shape) == (None, 100)
    assert model.outputs[0] is model.get_layer("logits").output
    taps = models.feature_taps(model)
    assert taps == models.feature_taps(name)
    assert taps == [t for t in EXPECTED_SHAPES[name] if t.startswith("stage")]


@pytest.mark.parametrize("name", CIFAR_ZOO)
def test_forward_gives_logits(zoo, name):
    model = zoo(name)
    images = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype("float32")
    logits = keras.ops.convert_to_numpy(model(images, training=False))
    assert logits.shape == (2, 100)
    assert np.all(np.isfinite(logits))


@pytest.mark.parametrize("name", ["resnet8x4", "wrn_16_2", "vgg8", "shufflenetv1"])
def test_stage_taps_are_post_activation_and_preact_is_before_it(zoo, name):
    model = zoo(name)
    taps = models.feature_taps(model)
    names = taps + [f"{t}_preact" for t in taps]
    extractor = keras.Model(model.input, [model.get_layer(n).output for n in names])
    images = np.random.default_rng(1).normal(size=(2, 32, 32, 3)).astype("float32")
    values = dict(zip(names, (keras.ops.convert_to_numpy(v) for v in extractor(images))))
    for tap in taps:
        assert values[tap].min() >= 0.0
        np.testing.assert_allclose(values[tap], np.maximum(values[f"{tap}_preact"], 0.0),
                                   atol=1e-6)


def test_wrn_exposes_the_reference_residual_features(zoo):
    model = zoo("wrn_40_2")
    for stage, shape in zip((1, 2, 3), ((32, 32, 32), (16, 16, 64), (8, 8, 128))):
        layer = model.get_layer(f"stage{stage}_residual")
        assert isinstance(layer, keras.layers.Add)
        assert tuple(layer.output.shape[1:]) == shape


def test_layer_names_are_stable_across_builds():
    first = [layer.name for layer in models.get("resnet8", num_classes=10).layers]
    second = [layer.name for layer in models.get("resnet8", num_classes=10).layers]
    assert first == second
    assert len(set(first)) == len(first)


def test_other_input_sizes_and_class_counts():
    model = models.get("resnet8x4", num_classes=7, input_shape=(64, 64, 3))
    assert tuple(model.get_layer("stage3").output.shape[1:]) == (16, 16, 256)
    assert tuple(model.output.shape) == (None, 7)
    vgg = models.get("vgg8", num_classes=5, input_shape=(64, 64, 3))
    # As the reference: block 3 is pooled for 64x64 (Tiny ImageNet) inputs.
    assert tuple(vgg.get_layer("stage4").output.shape[1:]) == (4, 4, 512)


def test_width_arguments_change_the_model():
    full = models.get("mobilenetv2", num_classes=100, width_multiplier=1.0)
    assert _count(full.trainable_weights) > 2 * REFERENCE_PARAMS["mobilenetv2"]
    assert tuple(full.get_layer("stage4").output.shape[1:]) == (2, 2, 320)


def test_strided_conv_pads_like_pytorch():
    # PyTorch Conv2d(k=3, stride=2, padding=1) centres output (0, 0) on input
    # (0, 0); Keras "same" on an even input would centre it on (1, 1).
    inputs = keras.Input((4, 4, 1))
    outputs = _common.conv(inputs, 1, 3, 2, name="probe")
    model = keras.Model(inputs, outputs)
    kernel = np.arange(9, dtype="float32").reshape(3, 3, 1, 1)
    model.get_layer("probe").set_weights([kernel])
    image = np.zeros((1, 4, 4, 1), "float32")
    image[0, 0, 0, 0] = 1.0
    out = keras.ops.convert_to_numpy(model(image))
    assert out.shape == (1, 2, 2, 1)
    assert out[0, 0, 0, 0] == kernel[1, 1, 0, 0]  # centre tap, as PyTorch


def test_channel_shuffle_matches_pytorch_order():
    groups, channels = 3, 12
    inputs = keras.Input((2, 2, channels))
    model = keras.Model(inputs, _common.channel_shuffle(inputs, groups, name="shuffle"))
    nhwc = np.random.default_rng(2).normal(size=(1, 2, 2, channels)).astype("float32")
    nchw = nhwc.transpose(0, 3, 1, 2)
    n, c, h, w = nchw.shape
    # ShuffleBlock.forward: x.view(N, g, C // g, H, W).permute(0, 2, 1, 3, 4).reshape(N, C, H, W)
    expected = nchw.reshape(n, groups, c // groups, h, w).transpose(0, 2, 1, 3, 4)
    expected = expected.reshape(n, c, h, w).transpose(0, 2, 3, 1)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(model(nhwc)), expected)


def test_saved_shufflenet_loads_without_custom_objects(tmp_path):
    model = models.get("shufflenetv2", num_classes=10)
    path = str(tmp_path / "shufflenetv2.keras")
    model.save(path)
    restored = models.load(path)
    images = np.random.default_rng(3).normal(size=(2, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(restored(images)),
                               keras.ops.convert_to_numpy(model(images)), atol=1e-5)
    assert models.feature_taps(restored) == ["stage1", "stage2", "stage3"]
