"""Wide Residual Networks for CIFAR (wrn_16_1, wrn_16_2, wrn_40_1, wrn_40_2).

Pre-activation wide ResNet as in RepDistiller / mdistiller `models/wrn.py`:
a 3x3 stem conv (no BN), three groups of `n = (depth - 4) / 6` blocks
`BN-ReLU-conv3x3-BN-ReLU-conv3x3` with widths `(16, 32, 64) * widen_factor`,
then BN-ReLU, global average pooling and a linear layer.

Because the blocks are pre-activation, the tensor leaving a group is a raw
residual sum; the next group's first block normalises and activates it (and
its shortcut reads the activated tensor). The taps therefore are:
- `stageK_residual`: the residual sum leaving group K (RepDistiller's
  `is_feat` features, `preact=False`);
- `stageK_preact`: that sum after the next BN (RepDistiller's
  `preact=True` features);
- `stageK`: after the following ReLU, the post-activation map the next group
  (or the classifier, for stage 3) consumes.
"""

from __future__ import annotations

import keras

from keras_distill.models import _common as C

TAPS = ("stage1", "stage2", "stage3")


def wide_resnet(depth, widen_factor, num_classes=100, input_shape=(32, 32, 3),
                dropout_rate=0.0, name=None):
    """Builds a CIFAR Wide ResNet WRN-depth-widen_factor.

    Taps: `stem` (32x32, conv output), `stage1` (32x32x16k), `stage2`
    (16x16x32k), `stage3` (8x8x64k), plus `stageK_preact`,
    `stageK_residual` (see the module docstring), `embedding`, `logits`.

    Args:
        depth: Total depth `6 n + 4` (16, 22, 28, 40, ...).
        widen_factor: Width multiplier k of the three groups.
        num_classes: Number of output logits.
        input_shape: `(height, width, channels)`; 32x32x3 for CIFAR.
        dropout_rate: Dropout between the two convolutions of a block
            (0 in the distillation benchmarks).
        name: Model name; defaults to `wrn_{depth}_{widen_factor}`.

    Returns:
        A functional `keras.Model` mapping images to logits.

    Example:
        >>> model = wide_resnet(16, 2, num_classes=100)
        >>> model.get_layer("stage3").output.shape
        (None, 8, 8, 128)

    Reference:
        Zagoruyko and Komodakis, "Wide Residual Networks", BMVC 2016.
    """
    if (depth - 4) % 6 != 0:
        raise ValueError(f"depth must be 6n + 4 (16, 22, 28, 40, ...), got {depth}.")
    blocks_per_group = (depth - 4) // 6
    channels = (16, 16 * widen_factor, 32 * widen_factor, 64 * widen_factor)
    inputs = C.make_input(input_shape)
    x = C.conv(inputs, channels[0], 3, name="stem")
    for group, stride in zip((1, 2, 3), (1, 2, 2)):
        for block in range(blocks_per_group):
            prefix = f"stage{group}_block{block + 1}"
            in_planes = channels[group - 1] if block == 0 else channels[group]
            out_planes = channels[group]
            strides = stride if block == 0 else 1
            # The first block of groups 2 and 3 activates the previous group's
            # output: that activation is the previous stage's tap.
            tap = f"stage{group - 1}" if block == 0 and group > 1 else None
            activated = C.batch_norm(x, name=f"{tap}_preact" if tap else f"{prefix}_bn1")
            activated = C.relu(activated, name=tap or f"{prefix}_relu1")
            y = C.conv(activated, out_planes, 3, strides, name=f"{prefix}_conv1")
            y = C.batch_norm(y, name=f"{prefix}_bn2")
            y = C.relu(y, name=f"{prefix}_relu2")
            if dropout_rate > 0:
                y = keras.layers.Dropout(dropout_rate, name=f"{prefix}_dropout")(y)
            y = C.conv(y, out_planes, 3, name=f"{prefix}_conv2")
            if in_planes == out_planes:
                shortcut = x
            else:
                shortcut = C.conv(activated, out_planes, 1, strides, name=f"{prefix}_shortcut")
            last = block == blocks_per_group - 1
            x = keras.layers.Add(name=f"stage{group}_residual" if last else f"{prefix}_add")(
                [shortcut, y])
    x = C.batch_norm(x, name="stage3_preact")
    x = C.relu(x, name="stage3")
    outputs = C.classifier_head(x, num_classes)
    return keras.Model(inputs, outputs, name=name or f"wrn_{depth}_{widen_factor}")


_DOC = """WRN-{depth}-{widen} for CIFAR ({params} parameters for 100 classes).

    See `wide_resnet` for the taps.

    Args:
        num_classes: Number of output logits.
        input_shape: `(height, width, channels)`; 32x32x3 for CIFAR.
        dropout_rate: Dropout inside each block (default 0).

    Returns:
        A functional `keras.Model` mapping images to logits.

    Example:
        >>> model = {fn}(num_classes=100)

    Reference:
        Zagoruyko and Komodakis, "Wide Residual Networks", BMVC 2016;
        configuration from Tian et al., "Contrastive Representation
        Distillation" (CRD), ICLR 2020.
    """


def _variant(fn_name, depth, widen, params):
    def build(num_classes=100, input_shape=(32, 32, 3), dropout_rate=0.0):
        return wide_resnet(depth, widen, num_classes, input_shape, dropout_rate, name=fn_name)

    build.__name__ = build.__qualname__ = fn_name
    build.__doc__ = _DOC.format(depth=depth, widen=widen, params=params, fn=fn_name)
    return build


wrn_16_1 = _variant("wrn_16_1", 16, 1, "0.18M")
wrn_16_2 = _variant("wrn_16_2", 16, 2, "0.70M")
wrn_40_1 = _variant("wrn_40_1", 40, 1, "0.57M")
wrn_40_2 = _variant("wrn_40_2", 40, 2, "2.26M")
