"""The zoo registry: `get`, `available`, `load`, `feature_taps`, `TAPS`."""

from __future__ import annotations

import dataclasses
import difflib
import os
import types
from typing import Callable

import keras

from keras_distill.models import applications, fmnist, mobilenet, resnet, shufflenet, vgg, wrn

CIFAR_INPUT_SHAPE = (32, 32, 3)
_CRD = "Tian et al., Contrastive Representation Distillation, ICLR 2020 (RepDistiller)"


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """What the registry knows about a zoo model.

    Attributes:
        name: Canonical name, as `get` and `available` spell it.
        builder: `builder(num_classes=..., input_shape=..., **kwargs) -> keras.Model`.
        taps: Ordered stage tap names (layer names), shallow to deep.
        input_shape: Default `(height, width, channels)`.
        reference: The paper / code the architecture follows.
        aliases: Other accepted names (matched case-insensitively).
    """

    name: str
    builder: Callable[..., keras.Model]
    taps: tuple
    input_shape: tuple = CIFAR_INPUT_SHAPE
    reference: str = _CRD
    aliases: tuple = ()


def _specs():
    specs = []
    for name in ("resnet8", "resnet14", "resnet20", "resnet32", "resnet44", "resnet56",
                 "resnet110", "resnet8x4", "resnet32x4"):
        specs.append(ModelSpec(name, getattr(resnet, name), resnet.TAPS,
                               reference=f"He et al., CVPR 2016; {_CRD}"))
    for name in ("wrn_16_1", "wrn_16_2", "wrn_40_1", "wrn_40_2"):
        specs.append(ModelSpec(name, getattr(wrn, name), wrn.TAPS,
                               reference=f"Zagoruyko and Komodakis, BMVC 2016; {_CRD}",
                               aliases=(name.replace("_", "-"),)))
    for name in ("vgg8", "vgg11", "vgg13", "vgg16", "vgg19"):
        specs.append(ModelSpec(name, getattr(vgg, name), vgg.TAPS,
                               reference=f"Simonyan and Zisserman, ICLR 2015; {_CRD}",
                               aliases=(f"{name}_bn",)))
    specs.append(ModelSpec(
        "mobilenetv2", mobilenet.mobilenetv2, mobilenet.TAPS,
        reference=f"Sandler et al., CVPR 2018; CIFAR variant of Jin et al., ICCV 2019; {_CRD}",
        aliases=("mobile_half", "mobilenet_v2")))
    specs.append(ModelSpec("shufflenetv1", shufflenet.shufflenetv1, shufflenet.TAPS,
                           reference=f"Zhang et al., CVPR 2018; {_CRD}",
                           aliases=("ShuffleV1", "shufflenet_v1")))
    specs.append(ModelSpec("shufflenetv2", shufflenet.shufflenetv2, shufflenet.TAPS,
                           reference=f"Ma et al., ECCV 2018; {_CRD}",
                           aliases=("ShuffleV2", "shufflenet_v2")))
    for name in ("fmnist_teacher", "fmnist_teacher_tiny", "fmnist_teacher_small",
                 "fmnist_teacher_medium", "fmnist_teacher_large", "fmnist_student",
                 "fmnist_student_small", "fmnist_student_wide"):
        specs.append(ModelSpec(name, getattr(fmnist, name), fmnist.TAPS,
                               input_shape=fmnist.FMNIST_INPUT_SHAPE,
                               reference="keras_distill (this project)"))
    return specs


SPECS = types.MappingProxyType({entry.name: entry for entry in _specs()})
"""Read-only mapping: canonical name -> `ModelSpec`."""
TAPS = types.MappingProxyType({name: entry.taps for name, entry in SPECS.items()})
"""Stage tap names of every zoo model: `TAPS["resnet8x4"] == ("stage1", "stage2", "stage3")`."""


def _key(name):
    return name.strip().lower().replace("-", "_")


_LOOKUP = {_key(alias): model_spec for model_spec in SPECS.values()
           for alias in (model_spec.name,) + model_spec.aliases}


def available(include_applications=False):
    """Names `get` accepts, in zoo order (families together).

    Args:
        include_applications: Also list every `keras.applications.<Name>`.

    Returns:
        A list of model names.

    Example:
        >>> "resnet8x4" in available()
        True
    """
    names = list(SPECS)
    if include_applications:
        names += [applications.PREFIX + n for n in applications.application_names()]
    return names


def spec(name):
    """Returns the `ModelSpec` of a zoo model name or alias.

    Raises:
        ValueError: For an unknown name, listing the available ones and the
            closest matches.
    """
    if not isinstance(name, str):
        raise TypeError(f"A model name must be a string, got {type(name).__name__}.")
    found = _LOOKUP.get(_key(name))
    if found is None:
        close = difflib.get_close_matches(_key(name), list(_LOOKUP), n=3, cutoff=0.5)
        close = list(dict.fromkeys(_LOOKUP[c].name for c in close))
        hint = f" Did you mean {close}?" if close else ""
        raise ValueError(
            f"Unknown model {name!r}.{hint} Available: {available()}, or any "
            f"keras.applications model as '{applications.PREFIX}<Name>' "
            "(e.g. 'keras.applications.ResNet50').")
    return found


def get(name, num_classes, input_shape=None, **kwargs):
    """Builds a zoo model (or a `keras.applications` model) by name.

    Args:
        name: A name from `available()` (case-insensitive; RepDistiller /
            mdistiller spellings such as "ShuffleV1", "mobile_half",
            "vgg13_bn" are accepted), or "keras.applications.<Name>".
        num_classes: Number of output logits.
        input_shape: `(height, width, channels)`. None means the model's own
            default: 32x32x3 for the CIFAR zoo and keras.applications,
            28x28x1 for the `fmnist_*` models.
        **kwargs: Passed to the builder, e.g. `width_multiplier=1.0` for
            mobilenetv2, `width=2` for fmnist models, `alpha=0.35` or
            `weights="imagenet"` for keras.applications (default
            `weights=None`).

    Returns:
        A functional `keras.Model` that outputs logits, with taps named
        `stage1`.. (see `feature_taps`), `embedding` and `logits`.

    Raises:
        ValueError: For an unknown name (listing the available names and the
            closest matches) or an input too small for an application.

    Example:
        >>> model = get("resnet8x4", num_classes=100)
        >>> model.get_layer("stage3").output.shape
        (None, 8, 8, 256)
        >>> app = get("keras.applications.MobileNetV2", num_classes=10,
        ...           input_shape=(32, 32, 3), alpha=0.35)
    """
    if isinstance(name, str) and name.startswith(applications.PREFIX):
        return applications.build_application(
            name, num_classes, input_shape or CIFAR_INPUT_SHAPE, **kwargs)
    model_spec = spec(name)
    return model_spec.builder(num_classes=num_classes,
                              input_shape=tuple(input_shape or model_spec.input_shape),
                              **kwargs)


def load(path_or_name, num_classes=None, input_shape=None, compile=False, **kwargs):
    """Loads a saved `.keras` model, or builds a zoo model by name.

    Args:
        path_or_name: A path to a `.keras` (or legacy `.h5`) model file, or a
            model name for `get`.
        num_classes: Number of logits (names only).
        input_shape: Input shape (names only).
        compile: Whether to restore the training configuration of a file.
        **kwargs: For a file, passed to `keras.saving.load_model` (e.g.
            `safe_mode`); for a name, passed to `get`.

    Returns:
        A `keras.Model`.

    Raises:
        FileNotFoundError: For a `.keras` path that does not exist.
        ValueError: For a weights-only file, an unknown name or a name
            without `num_classes`.

    Example:
        >>> model = load("wrn_16_2", num_classes=100)
        >>> model.save("/tmp/wrn.keras")
        >>> same = load("/tmp/wrn.keras")
    """
    text = os.fspath(path_or_name)
    if text.endswith(".weights.h5"):
        raise ValueError(
            f"{text!r} holds weights only: build the model with get(name, num_classes) "
            "and call model.load_weights(path).")
    if text.endswith((".keras", ".h5")):
        if not os.path.isfile(text):
            raise FileNotFoundError(f"No model file at {text!r}.")
        if num_classes is not None or input_shape is not None:
            raise ValueError("num_classes and input_shape apply to model names, not files.")
        return keras.saving.load_model(text, compile=compile, **kwargs)
    if os.path.exists(text):
        raise ValueError(
            f"{text!r} is not a .keras file. Keras 3 loads whole models from '.keras' "
            "files; for a TF SavedModel use keras.layers.TFSMLayer.")
    if num_classes is None:
        raise ValueError(
            f"{text!r} is not a .keras file, so it is read as a model name and needs "
            "num_classes.")
    return get(text, num_classes, input_shape, **kwargs)


def feature_taps(model_or_name):
    """Ordered stage tap names (shallow to deep) of a zoo model.

    Args:
        model_or_name: A model name (zoo or "keras.applications.<Name>") or a
            built `keras.Model` whose layers follow the zoo naming
            (`stage1`, `stage2`, ...; `features` for applications).

    Returns:
        A list of layer names, e.g. `["stage1", "stage2", "stage3"]`.

    Raises:
        ValueError: For an unknown name or a model without stage taps.

    Example:
        >>> feature_taps("vgg13")
        ['stage1', 'stage2', 'stage3', 'stage4']
    """
    if isinstance(model_or_name, str):
        if model_or_name.startswith(applications.PREFIX):
            return list(applications.TAPS)
        return list(spec(model_or_name).taps)
    names = {layer.name for layer in model_or_name.layers}
    taps = []
    while f"stage{len(taps) + 1}" in names:
        taps.append(f"stage{len(taps) + 1}")
    if not taps and "features" in names:
        taps = ["features"]
    if not taps:
        raise ValueError(
            f"Model {model_or_name.name!r} has no stage taps (layers named 'stage1', "
            "'stage2', ...). Build it with keras_distill.models.get, or name the layers "
            "after each stage (e.g. keras.layers.Identity(name='stage1')).")
    return taps
