"""Any `keras.applications` network as a zoo model with `embedding`/`logits` taps.

`get("keras.applications.ResNet50", num_classes=10, input_shape=(64, 64, 3))`
builds the application without its top (`include_top=False`), then adds
global average pooling (tap `embedding`) and a Dense layer (tap `logits`)
on the SAME graph: the result is one flat functional model, so every layer
of the application can also be tapped by its own name (no nested model,
which avoids keras-team/keras#16123). The last feature map is also exposed
as the tap `features`.

Inputs must be preprocessed as the application expects (for instance
`keras.applications.resnet50.preprocess_input`); some applications
(EfficientNet, ConvNeXt) include their own rescaling.
"""

from __future__ import annotations

import re

import keras

from keras_distill.models import _common

PREFIX = "keras.applications."
TAPS = ("features",)
_OUR_TAPS = ("features", "embedding", "logits")


def application_names():
    """Names of the model builders in `keras.applications` (e.g. "ResNet50")."""
    return sorted(
        name for name in dir(keras.applications)
        if name[:1].isupper() and callable(getattr(keras.applications, name)))


def build_application(application, num_classes, input_shape=(224, 224, 3), weights=None,
                      **kwargs):
    """Wraps a `keras.applications` builder as a classifier with named taps.

    Args:
        application: The builder's name, with or without the
            "keras.applications." prefix (e.g. "MobileNetV2").
        num_classes: Number of output logits.
        input_shape: `(height, width, channels)`; at least the application's
            minimum (32x32 for most, 71x71 for Xception, 75x75 for Inception).
        weights: None (random initialisation, the default) or "imagenet"
            (downloads the ImageNet weights of the feature extractor; needs
            network access and 3 channels).
        **kwargs: Passed to the builder (e.g. `alpha=0.35` for MobileNetV2).

    Returns:
        A functional `keras.Model` with taps `features` (last feature map),
        `embedding` (pooled) and `logits`, named after the application.

    Raises:
        ValueError: For an unknown application or an input too small for it.

    Example:
        >>> model = build_application("MobileNetV2", num_classes=10,
        ...                           input_shape=(32, 32, 3), alpha=0.35)
        >>> model.output.shape
        (None, 10)
    """
    name = application[len(PREFIX):] if application.startswith(PREFIX) else application
    if name not in application_names():
        import difflib

        close = difflib.get_close_matches(name, application_names(), n=3)
        hint = f" Did you mean {[PREFIX + c for c in close]}?" if close else ""
        raise ValueError(
            f"keras.applications has no model named {name!r}.{hint} "
            f"Available: {application_names()}")
    for reserved in ("include_top", "pooling", "classes"):
        if reserved in kwargs:
            raise ValueError(
                f"{reserved!r} is set by the zoo wrapper (no top, our own pooling and "
                f"Dense layer of num_classes); don't pass it for {PREFIX}{name}.")
    input_shape = tuple(input_shape)
    try:
        base = getattr(keras.applications, name)(
            include_top=False, weights=weights, input_shape=input_shape, **kwargs)
    except ValueError as error:
        minimum = re.search(r"at least (\d+)x(\d+)", str(error))
        if minimum is None:
            raise
        raise ValueError(
            f"input_shape={input_shape} is too small for {PREFIX}{name}: it needs at "
            f"least {minimum.group(1)}x{minimum.group(2)} pixels. Resize the images "
            "(e.g. keras.layers.Resizing in the data pipeline) or pick a zoo model made "
            f"for small inputs (keras_distill.models.available()). Keras said: {error}"
        ) from error
    clashes = [layer.name for layer in base.layers if layer.name in _OUR_TAPS]
    if clashes:
        raise ValueError(f"{PREFIX}{name} already has layers named {clashes}.")
    features = keras.layers.Identity(name="features")(base.output)
    embedding = keras.layers.GlobalAveragePooling2D(name="embedding")(features)
    logits = _common.logits_layer(num_classes)(embedding)
    inputs = base.inputs[0] if len(base.inputs) == 1 else base.inputs
    return keras.Model(inputs, logits, name=f"keras_applications_{name.lower()}")
