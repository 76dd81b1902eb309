"""Writing artifacts: a SavedModel, and TFLite files converted from it.

Every TFLite format is converted from the SavedModel that
`keras.Model.export(format="tf_saved_model")` writes, the path TensorFlow
documents for Keras 3 models. The converter is restricted to TFLite builtin
ops (no Flex/Select TF ops), so a model that needs TensorFlow kernels at run
time fails here, at conversion, not on the device.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

FORMATS = (
    "saved_model",
    "tflite_float32",
    "tflite_float16",
    "tflite_dynamic_int8",
    "tflite_int8",
)
"""Every export format, in the order they are written."""

TFLITE_FORMATS = FORMATS[1:]

FORMAT_DESCRIPTIONS = {
    "saved_model": "TensorFlow SavedModel, float32, `serving_default` signature",
    "tflite_float32": "TFLite, float32 weights and activations",
    "tflite_float16": "TFLite, float16 weights, float32 compute and I/O",
    "tflite_dynamic_int8": "TFLite, int8 weights, float activations and I/O (dynamic range)",
    "tflite_int8": "TFLite, full integer: int8 weights, activations, input and output",
}


HALF_PRECISION_POLICIES = ("mixed_bfloat16", "mixed_float16", "bfloat16", "float16")


def _policy_names(config):
    """Names of every dtype policy in a serialised Keras object."""
    if isinstance(config, dict):
        if str(config.get("class_name", "")).endswith("DTypePolicy"):
            return {config.get("config", {}).get("name")}
        return set().union(*(_policy_names(value) for value in config.values()))
    if isinstance(config, list):
        return set().union(set(), *(_policy_names(value) for value in config))
    return set()


def _to_float32_policies(config):
    if isinstance(config, dict):
        if str(config.get("class_name", "")).endswith("DTypePolicy"):
            name = config.get("config", {}).get("name")
            return "float32" if name in HALF_PRECISION_POLICIES else config
        return {key: _to_float32_policies(value) for key, value in config.items()}
    if isinstance(config, list):
        return [_to_float32_policies(value) for value in config]
    return config


def float32_model(model):
    """A float32 copy of a model trained under a mixed-precision policy.

    TFLite has no bfloat16 kernels and converts float16 compute poorly, so a
    student trained with `mixed_bfloat16` / `mixed_float16` is exported as
    the same architecture and weights (the variables are float32 already)
    computing in float32. Layer and weight names are unchanged.

    Args:
        model: A functional or sequential `keras.Model`.

    Returns:
        `(model_to_export, note)`: `model` itself and `"float32"` when no
        layer computes in half precision, else the copy and a note naming
        the policies replaced.

    Example:

    ```python
    exported, note = float32_model(student)  # note: "float32 copy of a mixed_bfloat16 model"
    ```
    """
    config = keras.saving.serialize_keras_object(model)
    half = sorted(_policy_names(config) & set(HALF_PRECISION_POLICIES))
    if not half:
        return model, "float32"
    copy = keras.saving.deserialize_keras_object(_to_float32_policies(config))
    copy.set_weights(model.get_weights())
    return copy, f"float32 copy of a {', '.join(half)} model"


def write_saved_model(model, path):
    """Exports `model` as a SavedModel with a `serving_default` signature.

    Only the variables `model` tracks end up in the artifact: pass the
    student, never a `Distiller` (which also tracks the teacher and the
    adapters).

    Args:
        model: A built `keras.Model`.
        path: Directory to write; must not exist yet.

    Returns:
        `path`, as a string.

    Example:

    ```python
    write_saved_model(student, "/tmp/export/saved_model/1")
    loaded = tf.saved_model.load("/tmp/export/saved_model/1")
    logits = loaded.signatures["serving_default"](image=x)["output_0"]
    ```
    """
    path = str(path)
    model.export(path, format="tf_saved_model", verbose=False)
    return path


def representative_dataset(examples):
    """Returns the calibration generator the TFLite converter consumes.

    Args:
        examples: Float32 array of shape `(num_examples, *input_shape)`,
            exactly what the Keras model takes as input.

    Returns:
        A callable yielding one single-example batch `[x[i:i+1]]` at a time.
    """
    examples = np.asarray(examples, dtype=np.float32)

    def generator():
        for index in range(len(examples)):
            yield [examples[index : index + 1]]

    return generator


def convert_to_tflite(saved_model_dir, format, calibration_examples=None):
    """Converts a SavedModel to one of the TFLite formats.

    | format | weights | activations | input / output |
    |---|---|---|---|
    | `tflite_float32` | float32 | float32 | float32 |
    | `tflite_float16` | float16 | float32 | float32 |
    | `tflite_dynamic_int8` | int8 | float32 (int8 where kernels allow) | float32 |
    | `tflite_int8` | int8 | int8 | **int8**, quantisation params in the file |

    The full-integer model takes and returns int8 tensors: that is what
    integer-only targets (Edge TPU, microcontrollers, NPUs) require, and the
    reason to choose full integer over dynamic range at all. Callers quantise
    inputs with `q = round(x / scale) + zero_point` and dequantise outputs with
    `(q - zero_point) * scale`; `keras_distill.export.load_artifact` does it.

    Args:
        saved_model_dir: A SavedModel written by `write_saved_model`.
        format: One of `TFLITE_FORMATS`.
        calibration_examples: Float32 model inputs drawn from the training
            data; required for `tflite_int8`, ignored otherwise.

    Returns:
        The TFLite flatbuffer, as `bytes`.

    Raises:
        ValueError: For an unknown format, or `tflite_int8` without
            calibration examples.

    Reference:
        https://ai.google.dev/edge/litert/models/post_training_quantization
    """
    if format not in TFLITE_FORMATS:
        raise ValueError(f"Unknown TFLite format {format!r}; expected one of {TFLITE_FORMATS}.")
    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model_dir))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if format == "tflite_float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif format == "tflite_dynamic_int8":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif format == "tflite_int8":
        if calibration_examples is None or len(calibration_examples) == 0:
            raise ValueError(
                "tflite_int8 (full integer) needs calibration examples drawn from the "
                "training data: pass calibration_data (e.g. 200 training images)."
            )
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative_dataset(calibration_examples)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    return converter.convert()
