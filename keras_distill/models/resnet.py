"""CIFAR ResNets (resnet8 ... resnet110, resnet8x4, resnet32x4).

The 3-stage CIFAR ResNet of He et al. with basic blocks, as in RepDistiller /
mdistiller `models/resnet.py`: a 3x3 stem, three stages of `n = (depth - 2) / 6`
basic blocks (strides 1, 2, 2), global average pooling and a linear layer.
The `x4` variants widen every stage 4x-8x (`filters=(32, 64, 128, 256)`).
"""

from __future__ import annotations

import keras

from keras_distill.models import _common as C

TAPS = ("stage1", "stage2", "stage3")


def cifar_resnet(depth, filters, num_classes=100, input_shape=(32, 32, 3), name=None):
    """Builds a CIFAR ResNet with basic blocks.

    Taps: `stem` (32x32), `stage1` (32x32), `stage2` (16x16), `stage3`
    (8x8) = the ReLU output of each stage's last block, `stageK_preact` =
    the residual sum before that ReLU (RepDistiller's `preact=True`
    features), `embedding` = pooled features, `logits`.

    Args:
        depth: Total depth `6 n + 2` (8, 14, 20, 32, 44, 56, 110).
        filters: Four widths: stem, stage 1, stage 2, stage 3.
        num_classes: Number of output logits.
        input_shape: `(height, width, channels)`; 32x32x3 for CIFAR.
        name: Model name; defaults to `resnet{depth}`.

    Returns:
        A functional `keras.Model` mapping images to logits.

    Example:
        >>> model = cifar_resnet(20, (16, 16, 32, 64), num_classes=10)
        >>> model.get_layer("stage3").output.shape
        (None, 8, 8, 64)

    Reference:
        He et al., "Deep Residual Learning for Image Recognition", CVPR 2016.
    """
    if (depth - 2) % 6 != 0:
        raise ValueError(f"depth must be 6n + 2 (8, 14, 20, 32, ...), got {depth}.")
    blocks_per_stage = (depth - 2) // 6
    inputs = C.make_input(input_shape)
    x = C.conv_bn(inputs, filters[0], 3, name="stem", relu_name="stem")
    in_planes = filters[0]
    for stage, (planes, stride) in enumerate(zip(filters[1:], (1, 2, 2)), start=1):
        for block in range(blocks_per_stage):
            prefix = f"stage{stage}_block{block + 1}"
            last = block == blocks_per_stage - 1
            strides = stride if block == 0 else 1
            shortcut = x
            y = C.conv_bn(x, planes, 3, strides, name=f"{prefix}_1")
            y = C.conv_bn(y, planes, 3, name=f"{prefix}_2", activation=False)
            if block == 0 and (strides != 1 or in_planes != planes):
                shortcut = C.conv_bn(x, planes, 1, strides, name=f"{prefix}_downsample",
                                     activation=False)
            y = keras.layers.Add(name=f"stage{stage}_preact" if last else f"{prefix}_add")(
                [y, shortcut])
            x = C.relu(y, name=f"stage{stage}" if last else f"{prefix}_out")
            in_planes = planes
    outputs = C.classifier_head(x, num_classes)
    return keras.Model(inputs, outputs, name=name or f"resnet{depth}")


_DOC = """{title}

    CIFAR ResNet, depth {depth}, widths {filters} (stem, stage 1-3); see
    `cifar_resnet` for the taps. {params} parameters for 100 classes.

    Args:
        num_classes: Number of output logits.
        input_shape: `(height, width, channels)`; 32x32x3 for CIFAR.

    Returns:
        A functional `keras.Model` mapping images to logits.

    Example:
        >>> model = {fn}(num_classes=100)

    Reference:
        He et al., "Deep Residual Learning for Image Recognition", CVPR 2016;
        configuration from Tian et al., "Contrastive Representation
        Distillation" (CRD), ICLR 2020 (github.com/HobbitLong/RepDistiller).
    """


def _variant(fn_name, depth, filters, params):
    def build(num_classes=100, input_shape=(32, 32, 3)):
        return cifar_resnet(depth, filters, num_classes, input_shape, name=fn_name)

    build.__name__ = build.__qualname__ = fn_name
    build.__doc__ = _DOC.format(title=f"ResNet-{depth} for CIFAR.", depth=depth,
                                filters=filters, params=params, fn=fn_name)
    return build


_THIN = (16, 16, 32, 64)
_WIDE = (32, 64, 128, 256)
resnet8 = _variant("resnet8", 8, _THIN, "0.08M")
resnet14 = _variant("resnet14", 14, _THIN, "0.18M")
resnet20 = _variant("resnet20", 20, _THIN, "0.28M")
resnet32 = _variant("resnet32", 32, _THIN, "0.47M")
resnet44 = _variant("resnet44", 44, _THIN, "0.67M")
resnet56 = _variant("resnet56", 56, _THIN, "0.86M")
resnet110 = _variant("resnet110", 110, _THIN, "1.74M")
resnet8x4 = _variant("resnet8x4", 8, _WIDE, "1.23M")
resnet32x4 = _variant("resnet32x4", 32, _WIDE, "7.43M")
