"""ShuffleNetV1 and ShuffleNetV2 for CIFAR, as in RepDistiller / mdistiller.

Both use the reference's CIFAR adaptation: a 1x1 stem conv to 24 channels at
full 32x32 resolution (no max pooling), three stages that each start with a
stride-2 block (16x16, 8x8, 4x4), global average pooling and a linear layer.
Channel shuffle and channel split are built from stock Keras layers/ops, so
saved models load without custom objects.
"""

from __future__ import annotations

import keras

from keras_distill.models import _common as C

TAPS = ("stage1", "stage2", "stage3")


def shufflenetv1(num_classes=100, input_shape=(32, 32, 3), out_planes=(240, 480, 960),
                 num_blocks=(4, 8, 4), groups=3, name="shufflenetv1"):
    """Builds the CIFAR ShuffleNetV1 of the KD benchmarks (`ShuffleV1`, g=3).

    Block: grouped 1x1 conv -> BN -> ReLU -> channel shuffle -> depthwise 3x3
    -> BN -> ReLU -> grouped 1x1 conv -> BN, added to the input, or, for the
    stride-2 first block of a stage, concatenated with a 3x3 average pool of
    it (padding counted, as PyTorch's default), then ReLU. The first block
    reading the 24-channel stem uses an ungrouped first conv, as the reference.

    Taps: `stem` (32x32x24), `stage1` (16x16x240), `stage2` (8x8x480),
    `stage3` (4x4x960) after the last block's ReLU, `stageK_preact` before
    it, `embedding` (960), `logits`.

    Args:
        num_classes: Number of output logits.
        input_shape: `(height, width, channels)`; 32x32x3 for CIFAR.
        out_planes: Output channels of the three stages.
        num_blocks: Blocks per stage.
        groups: Groups of the 1x1 convolutions.
        name: Model name.

    Returns:
        A functional `keras.Model` mapping images to logits.

    Example:
        >>> model = shufflenetv1(num_classes=100)  # 0.95M parameters

    Reference:
        Zhang et al., "ShuffleNet: An Extremely Efficient Convolutional Neural
        Network for Mobile Devices", CVPR 2018.
    """
    inputs = C.make_input(input_shape)
    x = C.conv_bn(inputs, 24, 1, name="stem", relu_name="stem")
    in_planes = 24
    for stage, (planes, blocks) in enumerate(zip(out_planes, num_blocks), start=1):
        for block in range(blocks):
            prefix = f"stage{stage}_block{block + 1}"
            strides = 2 if block == 0 else 1
            branch_planes = planes - in_planes if block == 0 else planes
            mid = branch_planes // 4
            first_groups = 1 if in_planes == 24 else groups
            y = C.conv_bn(x, mid, 1, name=f"{prefix}_1", groups=first_groups)
            if first_groups > 1:
                y = C.channel_shuffle(y, first_groups, name=f"{prefix}_shuffle")
            y = C.depthwise_conv(y, 3, strides, name=f"{prefix}_depthwise")
            y = C.batch_norm(y, name=f"{prefix}_depthwise_bn")
            y = C.relu(y, name=f"{prefix}_depthwise_relu")
            y = C.conv_bn(y, branch_planes, 1, name=f"{prefix}_3", groups=groups,
                          activation=False)
            last = block == blocks - 1
            merge_name = f"stage{stage}_preact" if last else f"{prefix}_merge"
            if strides == 2:
                shortcut = keras.layers.ZeroPadding2D(1, name=f"{prefix}_pool_pad")(x)
                shortcut = keras.layers.AveragePooling2D(3, 2, name=f"{prefix}_pool")(shortcut)
                y = keras.layers.Concatenate(name=merge_name)([y, shortcut])
            else:
                y = keras.layers.Add(name=merge_name)([y, x])
            x = C.relu(y, name=f"stage{stage}" if last else f"{prefix}_out")
            in_planes = planes
    outputs = C.classifier_head(x, num_classes)
    return keras.Model(inputs, outputs, name=name)


_V2_CONFIGS = {
    0.5: ((48, 96, 192, 1024), (3, 7, 3)),
    1.0: ((116, 232, 464, 1024), (3, 7, 3)),
    1.5: ((176, 352, 704, 1024), (3, 7, 3)),
    2.0: ((224, 488, 976, 2048), (3, 7, 3)),
}


def shufflenetv2(num_classes=100, input_shape=(32, 32, 3), net_size=1.0, name="shufflenetv2"):
    """Builds the CIFAR ShuffleNetV2 of the KD benchmarks (`ShuffleV2`, size 1).

    Each stage is a stride-2 down block (two branches, concatenated and
    shuffled) followed by basic blocks that split the channels in half,
    transform one half (1x1 conv-BN-ReLU, depthwise 3x3-BN, 1x1 conv-BN-ReLU),
    concatenate and shuffle. A 1x1 conv-BN-ReLU to 1024 channels precedes
    the pooling.

    Taps: `stem` (32x32x24), `stage1` (16x16x116), `stage2` (8x8x232),
    `stage3` (4x4x464) after each stage's last shuffle, `embedding` (1024),
    `logits`.

    Args:
        num_classes: Number of output logits.
        input_shape: `(height, width, channels)`; 32x32x3 for CIFAR.
        net_size: 0.5, 1.0, 1.5 or 2.0 (the reference's configurations).
        name: Model name.

    Returns:
        A functional `keras.Model` mapping images to logits.

    Example:
        >>> model = shufflenetv2(num_classes=100)  # 1.36M parameters

    Reference:
        Ma et al., "ShuffleNet V2: Practical Guidelines for Efficient CNN
        Architecture Design", ECCV 2018.
    """
    if float(net_size) not in _V2_CONFIGS:
        raise ValueError(f"net_size must be one of {sorted(_V2_CONFIGS)}, got {net_size}.")
    out_channels, num_blocks = _V2_CONFIGS[float(net_size)]
    inputs = C.make_input(input_shape)
    x = C.conv_bn(inputs, 24, 1, name="stem", relu_name="stem")
    for stage, (channels, blocks) in enumerate(zip(out_channels[:3], num_blocks), start=1):
        prefix = f"stage{stage}_down"
        mid = channels // 2
        left = C.depthwise_conv(x, 3, 2, name=f"{prefix}_left_depthwise")
        left = C.batch_norm(left, name=f"{prefix}_left_depthwise_bn")
        left = C.conv_bn(left, mid, 1, name=f"{prefix}_left_1")
        right = C.conv_bn(x, mid, 1, name=f"{prefix}_right_1")
        right = C.depthwise_conv(right, 3, 2, name=f"{prefix}_right_depthwise")
        right = C.batch_norm(right, name=f"{prefix}_right_depthwise_bn")
        right = C.conv_bn(right, mid, 1, name=f"{prefix}_right_2")
        x = keras.layers.Concatenate(name=f"{prefix}_concat")([left, right])
        x = C.channel_shuffle(x, 2, name=f"{prefix}_shuffle")
        for block in range(blocks):
            prefix = f"stage{stage}_block{block + 1}"
            half = channels // 2
            kept, branch = keras.ops.split(x, [half], axis=-1)
            y = C.conv_bn(branch, half, 1, name=f"{prefix}_1")
            y = C.depthwise_conv(y, 3, 1, name=f"{prefix}_depthwise")
            y = C.batch_norm(y, name=f"{prefix}_depthwise_bn")
            y = C.conv_bn(y, half, 1, name=f"{prefix}_3")
            y = keras.layers.Concatenate(name=f"{prefix}_concat")([kept, y])
            last = block == blocks - 1
            x = C.channel_shuffle(y, 2, name=f"stage{stage}" if last else f"{prefix}_shuffle")
    x = C.conv_bn(x, out_channels[3], 1, name="head")
    outputs = C.classifier_head(x, num_classes)
    return keras.Model(inputs, outputs, name=name)
