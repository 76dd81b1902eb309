"""Small Fashion-MNIST (28x28x1) teachers and students, fast on CPU.

One plain BN CNN family, `fmnist_cnn`: three stages of `conv3x3-BN-ReLU`
(28x28, 14x14, 7x7; 2x2 max pooling between stages), global average pooling,
optional dropout and a linear layer. Teachers use (1, 2, 2) convs per stage
(a second conv at 28x28 costs a quarter of the compute for little accuracy),
students one; a `width` multiplier scales every stage for capacity sweeps.
All stages keep the same resolutions (28, 14, 7), so teacher and student
maps can be compared position by position (attention transfer, DPK).

| name | widths | convs/stage | trainable params (10 classes) | conv MACs |
|---|---|---|---|---|
| fmnist_teacher_tiny | (8, 16, 32) | 1, 2, 2 | 18k | 1.4M |
| fmnist_teacher_small | (16, 32, 64) | 1, 2, 2 | 70k | 5.5M |
| fmnist_teacher (= _medium) | (32, 64, 128) | 1, 2, 2 | 279k | 21.9M |
| fmnist_teacher_large | (64, 128, 256) | 1, 2, 2 | 1.11M | 87M |
| fmnist_student_small | (6, 12, 24) | 1 | 3.6k | 0.3M |
| fmnist_student | (12, 24, 48) | 1 | 13.7k | 1.1M |
| fmnist_student_wide | (24, 48, 96) | 1 | 53k | 4.2M |

The `_tiny` / `_small` / `_large` / `_wide` names are the base builders with
`width=0.25` / `0.5` / `2` / `2`; any of them accepts `width=` to go further.

Taps: `stage1` (28x28), `stage2` (14x14), `stage3` (7x7), each after the
stage's last ReLU and before pooling, `embedding` (pooled), `logits`.
"""

from __future__ import annotations

import keras

from keras_distill.models import _common as C

TAPS = ("stage1", "stage2", "stage3")
FMNIST_INPUT_SHAPE = (28, 28, 1)


def fmnist_cnn(num_classes=10, input_shape=FMNIST_INPUT_SHAPE, widths=(32, 64, 128),
               convs_per_stage=2, width=1.0, dropout_rate=0.0, name="fmnist_cnn"):
    """Builds a 3-stage BN CNN for small grey images.

    Args:
        num_classes: Number of output logits.
        input_shape: `(height, width, channels)`; 28x28x1 for Fashion-MNIST.
        widths: Channels of the three stages before the multiplier.
        convs_per_stage: 3x3 convolutions in each stage (an int or 3 ints).
        width: Multiplier applied to `widths` (rounded, at least 1 channel).
        dropout_rate: Dropout on the pooled features before the classifier.
        name: Model name.

    Returns:
        A functional `keras.Model` mapping images to logits.

    Example:
        >>> model = fmnist_cnn(num_classes=10, widths=(16, 32, 64), convs_per_stage=1)
        >>> model.get_layer("stage3").output.shape
        (None, 7, 7, 64)
    """
    if isinstance(convs_per_stage, int):
        convs_per_stage = (convs_per_stage,) * len(widths)
    inputs = C.make_input(input_shape)
    x = inputs
    for stage, (base, convs) in enumerate(zip(widths, convs_per_stage), start=1):
        filters = max(1, int(round(base * width)))
        for index in range(1, convs + 1):
            last = index == convs
            x = C.conv_bn(x, filters, 3, name=f"stage{stage}_{index}",
                          relu_name=f"stage{stage}" if last else None)
        if stage < len(widths):
            x = keras.layers.MaxPooling2D(2, name=f"pool{stage}")(x)
    embedding = keras.layers.GlobalAveragePooling2D(name="embedding")(x)
    if dropout_rate > 0:
        embedding = keras.layers.Dropout(dropout_rate, name="dropout")(embedding)
    outputs = C.logits_layer(num_classes)(embedding)
    return keras.Model(inputs, outputs, name=name)


def fmnist_teacher(num_classes=10, input_shape=FMNIST_INPUT_SHAPE, width=1.0,
                   dropout_rate=0.2, name="fmnist_teacher"):
    """Fashion-MNIST teacher: (1, 2, 2) convs per stage, widths (32, 64, 128) x width.

    279k trainable parameters at `width=1`. Train it properly (augmentation, SGD with a
    schedule, tens of epochs) to open a gap to `fmnist_student`.

    Args:
        num_classes: Number of output logits.
        input_shape: `(height, width, channels)`.
        width: Channel multiplier (0.5 -> 70k parameters, 2 -> 1.11M).
        dropout_rate: Dropout before the classifier.
        name: Model name.

    Returns:
        A functional `keras.Model` mapping images to logits.

    Example:
        >>> teacher = fmnist_teacher()
        >>> [teacher.get_layer(t).output.shape[1] for t in ("stage1", "stage2", "stage3")]
        [28, 14, 7]
    """
    return fmnist_cnn(num_classes, input_shape, (32, 64, 128), (1, 2, 2), width, dropout_rate, name)


def fmnist_student(num_classes=10, input_shape=FMNIST_INPUT_SHAPE, width=1.0,
                   dropout_rate=0.0, name="fmnist_student"):
    """Fashion-MNIST student: 1 conv per stage, widths (12, 24, 48) x width.

    13.7k trainable parameters at `width=1`; trained alone it stays a few
    points below `fmnist_teacher`, the capacity gap distillation needs.

    Args:
        num_classes: Number of output logits.
        input_shape: `(height, width, channels)`.
        width: Channel multiplier (0.5 -> 3.6k parameters, 2 -> 53k).
        dropout_rate: Dropout before the classifier.
        name: Model name.

    Returns:
        A functional `keras.Model` mapping images to logits.

    Example:
        >>> student = fmnist_student(width=0.5)
    """
    return fmnist_cnn(num_classes, input_shape, (12, 24, 48), 1, width, dropout_rate, name)


def _sized(base, fn_name, default_width, summary):
    def build(num_classes=10, input_shape=FMNIST_INPUT_SHAPE, width=default_width, **kwargs):
        return base(num_classes, input_shape, width=width, name=fn_name, **kwargs)

    build.__name__ = build.__qualname__ = fn_name
    build.__doc__ = f"""{summary}

    `{base.__name__}` with `width={default_width}` by default.

    Args:
        num_classes: Number of output logits.
        input_shape: `(height, width, channels)`.
        width: Channel multiplier (default {default_width}).
        **kwargs: `dropout_rate`.

    Returns:
        A functional `keras.Model` mapping images to logits.

    Example:
        >>> model = {fn_name}(num_classes=10)
    """
    return build


fmnist_teacher_tiny = _sized(fmnist_teacher, "fmnist_teacher_tiny", 0.25,
                             "Tiny Fashion-MNIST teacher (18k parameters; teacher-size sweeps).")
fmnist_teacher_small = _sized(fmnist_teacher, "fmnist_teacher_small", 0.5,
                              "Small Fashion-MNIST teacher (70k parameters).")
fmnist_teacher_medium = _sized(fmnist_teacher, "fmnist_teacher_medium", 1.0,
                               "Medium Fashion-MNIST teacher, same as `fmnist_teacher` (279k).")
fmnist_teacher_large = _sized(fmnist_teacher, "fmnist_teacher_large", 2.0,
                              "Large Fashion-MNIST teacher (1.11M parameters).")
fmnist_student_small = _sized(fmnist_student, "fmnist_student_small", 0.5,
                              "Small Fashion-MNIST student (3.6k parameters).")
fmnist_student_wide = _sized(fmnist_student, "fmnist_student_wide", 2.0,
                             "Wide Fashion-MNIST student (53k parameters).")
