"""MobileNetV2 for CIFAR, as in RepDistiller / mdistiller `models/mobilenetv2.py`.

The KD benchmarks' "MobileNetV2" is `mobile_half`: expansion 6, width
multiplier 0.5, 0.81M parameters for 100 classes. Differences from the
ImageNet MobileNetV2 that the reference keeps (and so do we, to match it):
plain ReLU (not ReLU6), a 1x1 expansion conv even when the expansion is 1,
widths rounded with `int(c * width)` (no divisible-by-8 rounding), a stride-2
stem on 32x32 inputs, and a 1280-wide last conv unless width > 1.
"""

from __future__ import annotations

import keras

from keras_distill.models import _common as C

TAPS = ("stage1", "stage2", "stage3", "stage4")

# (expansion, channels, blocks, stride); expansion None means "the T argument".
_SETTING = (
    (1, 16, 1, 1),
    (None, 24, 2, 1),
    (None, 32, 3, 2),
    (None, 64, 4, 2),
    (None, 96, 3, 1),
    (None, 160, 3, 2),
    (None, 320, 1, 1),
)
# Block groups after which the reference reads features f1..f4.
_TAP_AFTER_GROUP = {1: "stage1", 2: "stage2", 4: "stage3", 6: "stage4"}


def mobilenetv2(num_classes=100, input_shape=(32, 32, 3), width_multiplier=0.5,
                expansion=6, name="mobilenetv2"):
    """Builds the CIFAR MobileNetV2 of the KD benchmarks.

    Taps (32x32 input, width 0.5): `stem` (16x16x16), `stage1` (16x16x12),
    `stage2` (8x8x16), `stage3` (4x4x48), `stage4` (2x2x160), each the
    linear-bottleneck output of the last block of the group (MobileNetV2 has
    no activation there), `embedding` (1280), `logits`.

    Args:
        num_classes: Number of output logits.
        input_shape: `(height, width, channels)`; 32x32x3 for CIFAR.
        width_multiplier: Channel multiplier; 0.5 is the benchmarks'
            `mobile_half`.
        expansion: Expansion ratio T of the inverted residual blocks.
        name: Model name.

    Returns:
        A functional `keras.Model` mapping images to logits.

    Example:
        >>> model = mobilenetv2(num_classes=100)  # 0.81M parameters
        >>> model.get_layer("stage4").output.shape
        (None, 2, 2, 160)

    Reference:
        Sandler et al., "MobileNetV2: Inverted Residuals and Linear
        Bottlenecks", CVPR 2018; CIFAR variant from Jin et al., "Knowledge
        Distillation via Route Constrained Optimization", ICCV 2019, as used by
        Tian et al., "Contrastive Representation Distillation", ICLR 2020.
    """
    inputs = C.make_input(input_shape)
    in_channels = int(32 * width_multiplier)
    x = C.conv_bn(inputs, in_channels, 3, 2, name="stem", relu_name="stem")
    for group, (t, channels, blocks, stride) in enumerate(_SETTING):
        t = expansion if t is None else t
        out_channels = int(channels * width_multiplier)
        for block in range(blocks):
            prefix = f"group{group}_block{block + 1}"
            strides = stride if block == 0 else 1
            hidden = in_channels * t
            residual = strides == 1 and in_channels == out_channels
            tap = _TAP_AFTER_GROUP.get(group) if block == blocks - 1 else None
            y = C.conv_bn(x, hidden, 1, name=f"{prefix}_expand")
            y = C.depthwise_conv(y, 3, strides, name=f"{prefix}_depthwise")
            y = C.batch_norm(y, name=f"{prefix}_depthwise_bn")
            y = C.relu(y, name=f"{prefix}_depthwise_relu")
            y = C.conv(y, out_channels, 1, name=f"{prefix}_project")
            y = C.batch_norm(y, name=(tap if tap and not residual else f"{prefix}_project_bn"))
            if residual:
                y = keras.layers.Add(name=tap or f"{prefix}_add")([x, y])
            x = y
            in_channels = out_channels
    last_channels = int(1280 * width_multiplier) if width_multiplier > 1.0 else 1280
    x = C.conv_bn(x, last_channels, 1, name="head")
    outputs = C.classifier_head(x, num_classes)
    return keras.Model(inputs, outputs, name=name)
