"""Feature taps: one multi-output model per network, built once.

`build_extractor(model, taps)` returns a functional model mapping the
network's inputs to `{"logits": ..., tap: feature, ...}` so the Distiller
gets logits and every requested feature from ONE forward pass.

Tap names are layer names. A layer inside a nested functional model is
found by its plain name when unique, or by a path `"outer/inner/layer"`.
"""

from __future__ import annotations

import difflib

import keras


class TapError(ValueError):
    """A tap cannot be read from a model; the message says how to fix it."""


def is_graph_model(model):
    """True for Functional and Sequential models (whose layers can be tapped)."""
    try:
        return model.inputs is not None and len(model.inputs) > 0 and \
            getattr(model, "outputs", None) is not None
    except (AttributeError, ValueError):
        return False


def _walk(model, prefix=""):
    """Yields (path, layer, owner_model) for every layer, recursing into sub-models."""
    for layer in model.layers:
        path = f"{prefix}{layer.name}"
        yield path, layer, model
        if isinstance(layer, keras.Model) and is_graph_model(layer):
            yield from _walk(layer, prefix=f"{path}/")


def available_taps(model):
    """All tap names of a graph model (paths for nested layers)."""
    return [path for path, _, _ in _walk(model)]


def find_layer(model, tap, role="model"):
    """Finds the layer a tap names.

    Args:
        model: A Functional or Sequential model.
        tap: A layer name or a `/`-separated path through nested models.
        role: "teacher" or "student", for messages.

    Returns:
        `(layer, path)`.

    Raises:
        TapError: naming the tap and listing what exists.
    """
    entries = list(_walk(model))
    exact = [(path, layer) for path, layer, _ in entries if path == tap]
    if not exact:
        exact = [(path, layer) for path, layer, _ in entries if layer.name == tap]
    if len(exact) == 1:
        return exact[0][1], exact[0][0]
    names = [p for p, _, _ in entries]
    if len(exact) > 1:
        raise TapError(
            f"Tap {tap!r} on the {role} is ambiguous: layers {[p for p, _ in exact]} "
            "share that name. Use the full path.")
    close = difflib.get_close_matches(tap, names, n=3)
    hint = f" Did you mean {close}?" if close else ""
    raise TapError(
        f"The {role} {model.name!r} has no layer named {tap!r}.{hint} "
        f"Available layers: {names}")


def build_extractor(model, taps, role="model"):
    """Builds `inputs -> {"logits": ..., tap: ...}` once for a network.

    Args:
        model: The teacher or student (Functional or Sequential when `taps`
            is not empty; any callable model otherwise).
        taps: Iterable of tap names.
        role: "teacher" or "student", for error messages.

    Returns:
        A callable `(inputs, training) -> dict`.

    Raises:
        TapError: for subclassed models with taps, unknown names, and nested
            models called on a new `Input` (keras-team/keras#16123).
    """
    taps = [t for t in dict.fromkeys(taps) if t != "logits"]
    if not taps:
        def logits_only(inputs, training=False):
            return {"logits": single_output(model(inputs, training=training), role)}
        return logits_only
    if not is_graph_model(model):
        raise TapError(
            f"The {role} {model.name!r} is a subclassed model, so its layer outputs "
            f"{taps} cannot be tapped. Build it as a Functional or Sequential model, "
            "or use methods that read logits only (KD, DKD, ...).")
    outputs = {"logits": single_output(model.outputs, role)}
    for tap in taps:
        layer, _ = find_layer(model, tap, role)
        outputs[tap] = layer.output
    try:
        extractor = keras.Model(model.inputs, outputs, name=f"{model.name}_taps")
    except ValueError as error:
        raise TapError(
            f"Tap(s) {taps} of the {role} {model.name!r} are not connected to its "
            "inputs. This happens when a nested model is called on a NEW "
            "keras.Input (keras-team/keras#16123): the inner layers' outputs "
            "belong to the inner model's own graph. Fix: build the outer model "
            "on the inner model's input, e.g. `outer = keras.Model(inner.input, "
            "head(inner.output))`, or tap a layer of the outer model. "
            f"(Keras said: {error})") from error

    def tapped(inputs, training=False):
        return extractor(inputs, training=training)
    tapped.model = extractor
    return tapped


def single_output(outputs, role):
    """The one logits tensor of a network's outputs (a tensor, a 1-list, or a dict's "logits").

    Raises:
        TapError: several outputs, or a dict without `"logits"`, naming the fix.
    """
    if isinstance(outputs, dict):
        if "logits" in outputs:
            return outputs["logits"]
        raise TapError(
            f"The {role} returns a dict {list(outputs)}; the Distiller needs the "
            "logits: return a tensor, or a dict with a 'logits' key.")
    if isinstance(outputs, (list, tuple)):
        if len(outputs) == 1:
            return outputs[0]
        raise TapError(
            f"The {role} has {len(outputs)} outputs; the Distiller needs one "
            "logits output. Wrap it in a model that returns the logits only.")
    return outputs


def shapes(model, taps, role="model"):
    """`output_shapes` of a graph model; `{"logits": None}` (unknown) for a subclassed one."""
    if is_graph_model(model):
        return output_shapes(model, taps, role)
    return {"logits": None}


def output_shapes(model, taps, role="model"):
    """Shapes `{name: shape}` of the logits and taps, without running the model."""
    if not is_graph_model(model):
        return {"logits": tuple(model.compute_output_shape(model.input_shape))
                if hasattr(model, "input_shape") else None}
    shapes = {"logits": tuple(single_output(model.outputs, role).shape)}
    for tap in taps:
        if tap == "logits":
            continue
        layer, _ = find_layer(model, tap, role)
        shapes[tap] = tuple(layer.output.shape)
    return shapes
