"""Building blocks shared by the zoo: named conv/BN/ReLU helpers and the head.

Every layer gets an explicit name so that a model built twice has the same
layer names (taps and weight files stay stable), and so that the tap names
documented in `keras_distill.models` (`stem`, `stage1`..`stage4`,
`embedding`, `logits`) are plain layer names.

Conventions that follow the PyTorch reference code (RepDistiller):
- BatchNormalization uses `epsilon=1e-5, momentum=0.9` (PyTorch's
  `eps=1e-5, momentum=0.1`).
- A strided convolution with PyTorch `padding=k // 2` is written as an
  explicit `ZeroPadding2D` + `"valid"` convolution. Keras's `"same"` pads
  only on the bottom/right for even inputs, which shifts the sampling grid
  by one pixel relative to PyTorch; explicit padding keeps the two
  frameworks' outputs identical, so reference weights could be ported.
"""

from __future__ import annotations

import keras
from keras import layers

def conv_initializer():
    """He-normal on fan-out, untruncated: `kaiming_normal_(mode="fan_out")` and
    `normal_(0, sqrt(2 / (k * k * out_channels)))` in the reference code."""
    return keras.initializers.VarianceScaling(
        scale=2.0, mode="fan_out", distribution="untruncated_normal")


def pad_for_stride(x, kernel_size, strides, name):
    """Pads like PyTorch's `padding=kernel_size // 2` when the op is strided.

    Returns:
        `(tensor, padding)` where `padding` is the Keras padding mode to use.
    """
    if strides > 1 and kernel_size > 1:
        x = layers.ZeroPadding2D(kernel_size // 2, name=f"{name}_pad")(x)
        return x, "valid"
    return x, "same"


def conv(x, filters, kernel_size, strides=1, *, name, groups=1, use_bias=False):
    """2D convolution with PyTorch-aligned padding."""
    x, padding = pad_for_stride(x, kernel_size, strides, name)
    return layers.Conv2D(
        filters, kernel_size, strides=strides, padding=padding, groups=groups,
        use_bias=use_bias, kernel_initializer=conv_initializer(), name=name)(x)


def depthwise_conv(x, kernel_size=3, strides=1, *, name):
    """Depthwise convolution (PyTorch `groups=in_channels`), no bias."""
    x, padding = pad_for_stride(x, kernel_size, strides, name)
    return layers.DepthwiseConv2D(
        kernel_size, strides=strides, padding=padding, use_bias=False,
        depthwise_initializer=conv_initializer(), name=name)(x)


def batch_norm(x, *, name):
    """BatchNormalization with PyTorch's defaults (eps 1e-5, momentum 0.1)."""
    return layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name=name)(x)


def relu(x, *, name):
    return layers.ReLU(name=name)(x)


def conv_bn(x, filters, kernel_size, strides=1, *, name, groups=1, activation=True,
            use_bias=False, bn_name=None, relu_name=None):
    """conv -> BN (-> ReLU). Layer names: `{name}_conv`, `{name}_bn`, `{name}_relu`."""
    x = conv(x, filters, kernel_size, strides, name=f"{name}_conv", groups=groups,
             use_bias=use_bias)
    x = batch_norm(x, name=bn_name or f"{name}_bn")
    if activation:
        x = relu(x, name=relu_name or f"{name}_relu")
    return x


def channel_shuffle(x, groups, *, name):
    """ShuffleNet channel shuffle: (H, W, g * n) -> (H, W, n * g).

    Same channel order as the PyTorch `view(N, g, C // g, H, W).permute(0, 2, 1, 3, 4)`.
    Uses only stock layers (Reshape, Permute), so saved models load without
    custom objects. Needs static height and width.
    """
    height, width, channels = x.shape[1], x.shape[2], x.shape[3]
    if height is None or width is None:
        raise ValueError(
            f"{name}: channel shuffle needs a static spatial input shape, got {x.shape}. "
            "Pass input_shape with explicit height and width.")
    x = layers.Reshape((height, width, groups, channels // groups), name=f"{name}_split")(x)
    x = layers.Permute((1, 2, 4, 3), name=f"{name}_permute")(x)
    return layers.Reshape((height, width, channels), name=name)(x)


def classifier_head(x, num_classes, *, embedding_name="embedding", logits_name="logits"):
    """Global average pooling (tap `embedding`) and a Dense layer (tap `logits`).

    The reference nets pool with a kernel equal to the final map size
    (`AvgPool2d(8)` on 8x8 etc.), which is global average pooling.
    """
    embedding = layers.GlobalAveragePooling2D(name=embedding_name)(x)
    return logits_layer(num_classes, name=logits_name)(embedding)


def logits_layer(num_classes, name="logits"):
    """The final Dense layer. Under a mixed precision policy it computes in
    float32, as Keras recommends for the output layer, so logits (and the
    softmax / KL of every distillation loss) stay float32."""
    mixed = keras.config.dtype_policy().name.startswith("mixed")
    return layers.Dense(num_classes, name=name, dtype="float32" if mixed else None)


def make_input(input_shape):
    input_shape = tuple(input_shape)
    if len(input_shape) != 3:
        raise ValueError(
            f"input_shape must be (height, width, channels), got {input_shape}.")
    return keras.Input(shape=input_shape, name="image")
