"""Running an exported artifact exactly as a deployment would.

`load_artifact(path)` returns a runner with one interface for both kinds of
artifact: `predict(x)` takes float32 inputs as the Keras student does and
returns float32 logits. For a full-integer TFLite model it quantises the
input and dequantises the output with the parameters stored in the file, so
numbers from every format compare directly with the Keras student's.

TFLite files run in the LiteRT interpreter (`ai_edge_litert`, the
`ai-edge-litert` package) when it is installed, else in the deprecated
`tf.lite.Interpreter`.
"""

from __future__ import annotations

import os
import statistics
import time

import numpy as np
import tensorflow as tf


def tflite_interpreter_class():
    """Returns `(Interpreter class, runtime name)`, preferring LiteRT."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        return tf.lite.Interpreter, f"tf.lite {tf.__version__}"
    try:
        from importlib.metadata import version

        runtime_version = version("ai-edge-litert")
    except Exception:  # metadata missing in a vendored install: name only
        runtime_version = "unknown"
    return Interpreter, f"ai_edge_litert {runtime_version}"


def _median_milliseconds(function, runs, warmup):
    for _ in range(warmup):
        function()
    timings = []
    for _ in range(runs):
        start = time.perf_counter()
        function()
        timings.append((time.perf_counter() - start) * 1000.0)
    return statistics.median(timings)


def _shape_list(shape):
    return [None if (dimension is None or dimension < 0) else int(dimension) for dimension in shape]


class SavedModelRunner:
    """Runs the `serving_default` signature of a SavedModel.

    Args:
        path: SavedModel directory.
        signature: Signature key to run.

    Example:

    ```python
    runner = SavedModelRunner("/tmp/export/saved_model/1")
    logits = runner.predict(x_test)
    ```
    """

    kind = "saved_model"

    def __init__(self, path, signature="serving_default"):
        self.path = str(path)
        self.loaded = tf.saved_model.load(self.path)
        if signature not in self.loaded.signatures:
            raise ValueError(
                f"SavedModel {self.path} has no signature {signature!r}; "
                f"it has {sorted(self.loaded.signatures)}."
            )
        self._function = self.loaded.signatures[signature]
        _, input_specs = self._function.structured_input_signature
        output_specs = self._function.structured_outputs
        if len(input_specs) != 1 or len(output_specs) != 1:
            raise ValueError(
                f"Expected one input and one output in signature {signature!r}, got inputs "
                f"{sorted(input_specs)} and outputs {sorted(output_specs)}."
            )
        ((self._input_name, input_spec),) = input_specs.items()
        ((self._output_name, output_spec),) = output_specs.items()
        self._input_dtype = input_spec.dtype
        self.runtime = f"tensorflow {tf.__version__}"
        self.input_spec = {
            "name": self._input_name,
            "shape": _shape_list(input_spec.shape),
            "dtype": input_spec.dtype.name,
            "quantization": None,
        }
        self.output_spec = {
            "name": self._output_name,
            "shape": _shape_list(output_spec.shape),
            "dtype": output_spec.dtype.name,
            "quantization": None,
        }

    @property
    def variables(self):
        """The variables the SavedModel holds (what it would ship)."""
        return list(self.loaded.variables)

    def _run(self, batch):
        inputs = tf.constant(batch, dtype=self._input_dtype)
        return self._function(**{self._input_name: inputs})[self._output_name]

    def predict(self, x, batch_size=256):
        """Returns float32 outputs for float32 inputs `x`, batch by batch."""
        x = np.asarray(x)
        outputs = [
            self._run(x[start : start + batch_size]).numpy()
            for start in range(0, len(x), batch_size)
        ]
        return np.concatenate(outputs).astype(np.float32)

    def latency_ms(self, example, runs=50, warmup=5):
        """Median milliseconds of one call on a batch of one example."""
        batch = tf.constant(np.asarray(example)[None], dtype=self._input_dtype)
        return _median_milliseconds(
            lambda: self._function(**{self._input_name: batch})[self._output_name].numpy(),
            runs,
            warmup,
        )


class TFLiteRunner:
    """Runs a TFLite model, quantising / dequantising integer I/O.

    Args:
        path: `.tflite` file.
        num_threads: Interpreter threads (1 = the usual on-device latency
            measure; `None` lets the runtime choose).

    Example:

    ```python
    runner = TFLiteRunner("/tmp/export/tflite_int8/model.tflite")
    runner.input_spec["dtype"], runner.input_spec["quantization"]
    # ('int8', {'scale': 1.0, 'zero_point': -128})
    logits = runner.predict(x_test)  # float32 in, dequantised float32 out
    ```
    """

    kind = "tflite"

    def __init__(self, path, num_threads=1):
        self.path = str(path)
        self.num_threads = num_threads
        interpreter_class, self.runtime = tflite_interpreter_class()
        self._interpreter = interpreter_class(model_path=self.path, num_threads=num_threads)
        inputs = self._interpreter.get_input_details()
        outputs = self._interpreter.get_output_details()
        if len(inputs) != 1 or len(outputs) != 1:
            raise ValueError(
                f"Expected one input and one output in {self.path}, got {len(inputs)} and "
                f"{len(outputs)}."
            )
        self._input, self._output = inputs[0], outputs[0]
        self._dynamic_batch = int(self._input["shape_signature"][0]) == -1
        self._batch_size = int(self._input["shape"][0])
        self._interpreter.allocate_tensors()
        self.input_spec = self._spec(self._input)
        self.output_spec = self._spec(self._output)

    @staticmethod
    def _spec(detail):
        scale, zero_point = detail["quantization"]
        quantized = np.issubdtype(detail["dtype"], np.integer) and scale > 0
        return {
            "name": detail["name"],
            "shape": _shape_list(detail["shape_signature"]),
            "dtype": np.dtype(detail["dtype"]).name,
            "quantization": (
                {"scale": float(scale), "zero_point": int(zero_point)} if quantized else None
            ),
        }

    def quantize_input(self, x):
        """Maps float32 inputs to the model's input type (identity for float)."""
        x = np.asarray(x, dtype=np.float32)
        quantization = self.input_spec["quantization"]
        dtype = np.dtype(self.input_spec["dtype"])
        if quantization is None:
            return x.astype(dtype)
        limits = np.iinfo(dtype)
        quantized = np.round(x / quantization["scale"]) + quantization["zero_point"]
        return np.clip(quantized, limits.min, limits.max).astype(dtype)

    def dequantize_output(self, y):
        """Maps raw outputs back to float32 logits (identity for float)."""
        quantization = self.output_spec["quantization"]
        if quantization is None:
            return np.asarray(y, dtype=np.float32)
        return (
            (np.asarray(y, dtype=np.float32) - quantization["zero_point"]) * quantization["scale"]
        ).astype(np.float32)

    def _set_batch_size(self, batch_size):
        if batch_size != self._batch_size:
            shape = [batch_size, *self._input["shape"][1:]]
            self._interpreter.resize_tensor_input(self._input["index"], shape)
            self._interpreter.allocate_tensors()
            self._batch_size = batch_size

    def _invoke(self, quantized_batch):
        self._interpreter.set_tensor(self._input["index"], quantized_batch)
        self._interpreter.invoke()
        return self._interpreter.get_tensor(self._output["index"]).copy()

    def predict_raw(self, x, batch_size=256):
        """Runs already-quantised inputs; returns the raw output tensor."""
        x = np.asarray(x)
        if not self._dynamic_batch:
            batch_size = self._batch_size
        outputs = []
        for start in range(0, len(x), batch_size):
            batch = x[start : start + batch_size]
            count = len(batch)
            if self._dynamic_batch:
                self._set_batch_size(count)
            elif count < batch_size:  # fixed batch: pad the last one
                padding = np.zeros((batch_size - count, *batch.shape[1:]), batch.dtype)
                batch = np.concatenate([batch, padding])
            outputs.append(self._invoke(batch)[:count])
        return np.concatenate(outputs)

    def predict(self, x, batch_size=256):
        """Returns float32 logits for float32 inputs `x`, batch by batch."""
        return self.dequantize_output(self.predict_raw(self.quantize_input(x), batch_size))

    def latency_ms(self, example, runs=50, warmup=5):
        """Median milliseconds of one `invoke` on a batch of one example."""
        if self._dynamic_batch:
            self._set_batch_size(1)
        batch = self.quantize_input(np.asarray(example)[None])
        if not self._dynamic_batch and self._batch_size != 1:
            batch = np.repeat(batch, self._batch_size, axis=0)
        return _median_milliseconds(lambda: self._invoke(batch), runs, warmup)


def load_artifact(path, num_threads=1):
    """Opens an exported artifact for inference.

    Args:
        path: A SavedModel directory or a `.tflite` file.
        num_threads: TFLite interpreter threads; ignored for SavedModels.

    Returns:
        A `SavedModelRunner` or a `TFLiteRunner`.

    Raises:
        ValueError: If `path` is neither.

    Example:

    ```python
    runner = load_artifact(reports["tflite_int8"]["path"])
    logits = runner.predict(x_test.astype("float32"))
    ```
    """
    path = os.fspath(path)
    if os.path.isdir(path) and os.path.exists(os.path.join(path, "saved_model.pb")):
        return SavedModelRunner(path)
    if os.path.isfile(path) and path.endswith(".tflite"):
        return TFLiteRunner(path, num_threads=num_threads)
    raise ValueError(f"{path} is neither a SavedModel directory nor a .tflite file.")
