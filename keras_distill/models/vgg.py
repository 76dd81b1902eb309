"""VGG with BatchNorm for CIFAR (vgg8, vgg11, vgg13, vgg16, vgg19).

As RepDistiller / mdistiller `models/vgg.py` with `batch_norm=True` (the
`vggX_bn` builders the KD benchmarks use): five conv blocks of
`conv3x3(bias) -> BN -> ReLU`, max pooling after blocks 0-2 (and after block
3 for inputs of 64 pixels or more), global average pooling and ONE linear
layer (no VGG fully connected stack).

Taps: `stem` = block 0 (32x32x64), `stage1` = block 1 (16x16x128),
`stage2` = block 2 (8x8x256), `stage3` = block 3 (4x4x512), `stage4` =
block 4 (4x4x512), each after its final ReLU and before pooling;
`stageK_preact` = the BN output before that ReLU.
"""

from __future__ import annotations

import keras

from keras_distill.models import _common as C

TAPS = ("stage1", "stage2", "stage3", "stage4")

CONFIGS = {
    "S": ((64,), (128,), (256,), (512,), (512,)),
    "A": ((64,), (128,), (256, 256), (512, 512), (512, 512)),
    "B": ((64, 64), (128, 128), (256, 256), (512, 512), (512, 512)),
    "D": ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512)),
    "E": ((64, 64), (128, 128), (256,) * 4, (512,) * 4, (512,) * 4),
}


def cifar_vgg(config, num_classes=100, input_shape=(32, 32, 3), name=None):
    """Builds a CIFAR VGG with BatchNorm.

    Args:
        config: "S" (vgg8), "A" (vgg11), "B" (vgg13), "D" (vgg16), "E" (vgg19),
            or a sequence of five sequences of conv widths.
        num_classes: Number of output logits.
        input_shape: `(height, width, channels)`; 32x32x3 for CIFAR.
        name: Model name.

    Returns:
        A functional `keras.Model` mapping images to logits.

    Example:
        >>> model = cifar_vgg("B", num_classes=100)
        >>> model.get_layer("stage4").output.shape
        (None, 4, 4, 512)

    Reference:
        Simonyan and Zisserman, "Very Deep Convolutional Networks for
        Large-Scale Image Recognition", ICLR 2015.
    """
    blocks = CONFIGS[config] if isinstance(config, str) else tuple(config)
    if len(blocks) != 5:
        raise ValueError(f"A VGG config has 5 blocks of conv widths, got {config!r}.")
    inputs = C.make_input(input_shape)
    x = inputs
    for index, widths in enumerate(blocks):
        stage = "stem" if index == 0 else f"stage{index}"
        for conv_index, width in enumerate(widths, start=1):
            last = conv_index == len(widths)
            x = C.conv_bn(x, width, 3, name=f"{stage}_{conv_index}", use_bias=True,
                          bn_name=f"{stage}_preact" if last else None,
                          relu_name=stage if last else None)
        # The reference pools after block 3 only for 64x64 inputs (Tiny ImageNet).
        if index < 3 or (index == 3 and input_shape[0] >= 64):
            x = keras.layers.MaxPooling2D(2, name=f"pool{index}")(x)
    outputs = C.classifier_head(x, num_classes)
    return keras.Model(inputs, outputs, name=name or "vgg")


_DOC = """VGG-{depth} with BatchNorm for CIFAR ({params} parameters for 100 classes).

    Configuration "{config}"; see `cifar_vgg` for the taps.

    Args:
        num_classes: Number of output logits.
        input_shape: `(height, width, channels)`; 32x32x3 for CIFAR.

    Returns:
        A functional `keras.Model` mapping images to logits.

    Example:
        >>> model = {fn}(num_classes=100)

    Reference:
        Simonyan and Zisserman, "Very Deep Convolutional Networks for
        Large-Scale Image Recognition", ICLR 2015; CIFAR configuration from
        Tian et al., "Contrastive Representation Distillation", ICLR 2020.
    """


def _variant(fn_name, config, depth, params):
    def build(num_classes=100, input_shape=(32, 32, 3)):
        return cifar_vgg(config, num_classes, input_shape, name=fn_name)

    build.__name__ = build.__qualname__ = fn_name
    build.__doc__ = _DOC.format(depth=depth, config=config, params=params, fn=fn_name)
    return build


vgg8 = _variant("vgg8", "S", 8, "3.97M")
vgg11 = _variant("vgg11", "A", 11, "9.28M")
vgg13 = _variant("vgg13", "B", 13, "9.46M")
vgg16 = _variant("vgg16", "D", 16, "14.77M")
vgg19 = _variant("vgg19", "E", 19, "20.09M")
