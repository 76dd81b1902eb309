"""`export_student`: every artifact, its report and its parity check."""

from __future__ import annotations

import json
import os
import shutil
import tempfile

import keras
import numpy as np
import tensorflow as tf

from keras_distill.export.convert import (
    FORMATS,
    TFLITE_FORMATS,
    convert_to_tflite,
    float32_model,
    write_saved_model,
)
from keras_distill.export.parity import evaluate_runner, raise_for_failures, resolve_thresholds
from keras_distill.export.runners import load_artifact

SAVED_MODEL_VERSION = "1"
"""The SavedModel goes to `saved_model/1/`: the versioned layout TF Serving reads."""

REPORT_NAME = "report.json"
SUMMARY_NAME = "reports.json"


def artifact_path(output_dir, format):
    """Where `export_student` writes `format` inside `output_dir`.

    `saved_model/1/` (a SavedModel directory; `saved_model/` is a TF Serving
    model base path) or `<format>/model.tflite`. Each sits next to its
    `report.json`.
    """
    if format == "saved_model":
        return os.path.join(output_dir, "saved_model", SAVED_MODEL_VERSION)
    return os.path.join(output_dir, format, "model.tflite")


def _existing_entries(output_dir):
    if not os.path.isdir(output_dir):
        return []
    names = [*FORMATS, SUMMARY_NAME]
    return [name for name in names if os.path.exists(os.path.join(output_dir, name))]


def prepare_output_dir(output_dir, overwrite=False):
    """Creates `output_dir`, refusing to replace an export unless asked.

    With `overwrite=True` every entry an earlier export wrote (all format
    directories and `reports.json`, even of formats not requested now, so no
    stale artifact survives) is removed; other files are left alone.

    Args:
        output_dir: Export directory.
        overwrite: Replace an existing export.

    Raises:
        FileExistsError: If `output_dir` already holds an export and
            `overwrite` is false.
    """
    existing = _existing_entries(output_dir)
    if existing and not overwrite:
        raise FileExistsError(
            f"Export directory {output_dir} already holds an export ({', '.join(existing)}). "
            "Refusing to overwrite it: pass overwrite=True (recipe flag --overwrite) to replace "
            "it, or choose another output directory."
        )
    for name in existing:
        path = os.path.join(output_dir, name)
        shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
    os.makedirs(output_dir, exist_ok=True)


def _size_bytes(path):
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(
        os.path.getsize(os.path.join(root, name))
        for root, _, names in os.walk(path)
        for name in names
    )


def _normalise_formats(formats):
    if isinstance(formats, str):
        formats = [name.strip() for name in formats.split(",") if name.strip()]
    formats = list(dict.fromkeys(formats))  # unique, in order
    unknown = [name for name in formats if name not in FORMATS]
    if unknown or not formats:
        raise ValueError(
            f"Unknown or no export formats {unknown or formats}; choose from {FORMATS}."
        )
    return [name for name in FORMATS if name in formats]


def _check_student(student):
    if not isinstance(student, keras.Model):
        raise TypeError(f"export_student needs a keras.Model, got {type(student).__name__}.")
    if isinstance(getattr(student, "teacher", None), keras.Model):
        raise TypeError(
            f"{type(student).__name__} {student.name!r} holds a teacher (a Distiller?): "
            "exporting it would ship the teacher and the adapters. Pass the student alone, e.g. "
            "export_student(distiller.student, ...)."
        )
    if not student.built:
        raise ValueError(f"Model {student.name!r} is not built: call it on a batch first.")
    inputs, outputs = getattr(student, "inputs", None), getattr(student, "outputs", None)
    if inputs is not None and (len(inputs) != 1 or len(outputs) != 1):
        raise ValueError(
            f"export_student handles one input and one output (logits); {student.name!r} has "
            f"{len(inputs)} inputs and {len(outputs)} outputs."
        )


def _student_input_spec(student):
    inputs = getattr(student, "inputs", None)
    if not inputs:
        return None
    tensor = inputs[0]
    return {"name": tensor.name, "shape": list(tensor.shape), "dtype": str(tensor.dtype)}


def _inputs_of(data):
    """`(x, labels or None)` from `x`, an `(x, y)` pair or a split with `.x`/`.y`."""
    if isinstance(data, (tuple, list)) and len(data) == 2:
        return data[0], data[1]
    if hasattr(data, "x") and hasattr(data, "y"):  # keras_distill.data.ArraySplit
        return data.x, data.y
    return data, None


def _sample(x, count, seed):
    if count is None or count >= len(x):
        return x
    indices = np.sort(np.random.default_rng(seed).choice(len(x), size=count, replace=False))
    return x[indices]


def export_student(
    student,
    output_dir,
    formats=FORMATS,
    calibration_data=None,
    eval_data=None,
    overwrite=False,
    thresholds=None,
    *,
    num_calibration=200,
    max_eval_examples=None,
    num_threads=1,
    latency_runs=50,
    batch_size=256,
    seed=0,
    preprocessing=None,
):
    """Exports a trained student to SavedModel / TFLite and checks each artifact.

    For every format: write the artifact, run it on the held-out data as a
    deployment would, compare it with the Keras student, measure latency and
    write `<output_dir>/<format>/report.json`; then `<output_dir>/reports.json`
    with all of them. Only `student` is exported: pass `distiller.student`,
    never the Distiller, whose teacher and adapters must not ship.

    A student trained under a mixed-precision policy is exported as a
    float32 copy (same weights): TFLite has no bfloat16 kernels. Its parity
    is still measured against the student as trained.

    Inputs stay as the Keras student takes them: float32 (uint8 images are
    cast, not rescaled; put normalisation inside the student, e.g. a
    `keras.layers.Rescaling`, or apply it before calling the artifact). The
    `tflite_int8` model takes and returns int8 tensors; its quantisation
    parameters are in its report (`input.quantization`, `output.quantization`).

    Args:
        student: The trained Keras student (one input, one logits output).
        output_dir: Export directory.
        formats: Sequence (or comma-separated string) of `saved_model`,
            `tflite_float32`, `tflite_float16`, `tflite_dynamic_int8`,
            `tflite_int8`. Defaults to all.
        calibration_data: Training inputs `x` (or an `(x, y)` pair) for the
            full-integer calibration; `num_calibration` of them are drawn at
            random. Required for `tflite_int8`.
        eval_data: Held-out `(x, y)` (or `x` alone: no accuracy) for the parity
            check and the accuracies. Defaults to the calibration inputs,
            which gives parity but no held-out accuracy.
        overwrite: Replace an export already in `output_dir`; without it, an
            existing export raises `FileExistsError`.
        thresholds: Per-format minimum top-1 agreement overriding
            `DEFAULT_THRESHOLDS` (0.99 float formats, 0.97 int8 formats).
        num_calibration: Calibration examples for `tflite_int8`; `None`
            uses all of `calibration_data`.
        max_eval_examples: Evaluate on the first N held-out examples only.
        num_threads: TFLite interpreter threads when measuring.
        latency_runs: Timed batch-1 calls per artifact (median reported).
        batch_size: Batch size for the accuracy / parity runs.
        seed: Seed of the calibration sample.
        preprocessing: How callers turn raw data into the student's input,
            e.g. `"x / 255 (uint8 pixels to [0, 1])"`; recorded in every
            report next to the observed `input_range`. `None` records
            "none": the artifact takes what the data holds.

    Returns:
        `dict[format, report]`; a report holds `format`, `path`,
        `size_bytes`, `input`/`output` specs (name, shape, dtype,
        quantization), `student_input`, `preprocessing`, `input_range`
        (min / max of the evaluation inputs), `parity` (`examples`,
        `max_abs_logit_difference`, `top1_agreement`, `threshold`, `passed`),
        `accuracy`, `keras_accuracy`, `latency_ms_per_example`, `latency`
        (how it was measured), `num_calibration` and `versions`.

    Raises:
        FileExistsError: `output_dir` holds an export and not `overwrite`.
        ExportParityError: An artifact's top-1 agreement is under its
            threshold. Every artifact and report is still written (for
            debugging); the error lists the failures and carries `.reports`.
        TypeError: `student` is not a Keras model, or holds a teacher.
        ValueError: Unknown format, `tflite_int8` without calibration data,
            or no data at all to check parity on.

    Example:

    ```python
    reports = export_student(
        distiller.student,
        "runs/kd/export",
        formats=("saved_model", "tflite_int8"),
        calibration_data=x_train,
        eval_data=(x_test, y_test),
    )
    reports["tflite_int8"]["parity"]["top1_agreement"]  # e.g. 0.995
    ```
    """
    _check_student(student)
    formats = _normalise_formats(formats)
    thresholds = resolve_thresholds(thresholds)
    calibration_x, _ = _inputs_of(calibration_data)
    if "tflite_int8" in formats and (calibration_x is None or len(calibration_x) == 0):
        raise ValueError(
            "tflite_int8 (full integer) needs calibration_data drawn from the training data "
            "(e.g. 200 training images)."
        )
    if eval_data is None:
        if calibration_x is None:
            raise ValueError(
                "The parity check needs data: pass eval_data=(x_test, y_test) "
                "(or calibration_data)."
            )
        eval_data = calibration_x
    eval_x, eval_y = _inputs_of(eval_data)
    if max_eval_examples is not None:
        eval_x = eval_x[:max_eval_examples]
        eval_y = None if eval_y is None else eval_y[:max_eval_examples]
    eval_x = np.asarray(eval_x, dtype=np.float32)
    if len(eval_x) == 0:
        raise ValueError("eval_data is empty: the parity check needs held-out examples.")
    calibration_examples = None
    if "tflite_int8" in formats:
        calibration_examples = np.asarray(_sample(calibration_x, num_calibration, seed), np.float32)

    output_dir = os.fspath(output_dir)
    prepare_output_dir(output_dir, overwrite=overwrite)

    reference_logits = np.asarray(student.predict(eval_x, batch_size=batch_size, verbose=0))
    model_to_export, exported_precision = float32_model(student)
    common = {
        "exported_precision": exported_precision,
        "student_input": _student_input_spec(student),
        "preprocessing": preprocessing or "none",
        "input_range": {"min": float(eval_x.min()), "max": float(eval_x.max())},
        "student_parameters": int(student.count_params()),
        "versions": {"tensorflow": tf.__version__, "keras": keras.__version__},
    }
    reports = {}
    with tempfile.TemporaryDirectory() as scratch:
        if "saved_model" in formats:
            saved_model_dir = write_saved_model(
                model_to_export, artifact_path(output_dir, "saved_model")
            )
        else:  # the TFLite converter reads a SavedModel: write a throw-away one
            scratch_dir = os.path.join(scratch, "saved_model")
            saved_model_dir = write_saved_model(model_to_export, scratch_dir)
        for format in formats:
            path = artifact_path(output_dir, format)
            if format in TFLITE_FORMATS:
                os.makedirs(os.path.dirname(path), exist_ok=True)
                with open(path, "wb") as file:
                    file.write(convert_to_tflite(saved_model_dir, format, calibration_examples))
            runner = load_artifact(path, num_threads=num_threads)
            report = {
                "format": format,
                "path": os.path.abspath(path),
                "size_bytes": _size_bytes(path),
                "input": runner.input_spec,
                "output": runner.output_spec,
                **common,
                **evaluate_runner(
                    runner, reference_logits, eval_x, eval_y, thresholds[format], batch_size
                ),
                "latency_ms_per_example": runner.latency_ms(eval_x[0], runs=latency_runs),
                "latency": {
                    "batch_size": 1,
                    "statistic": f"median of {latency_runs} runs",
                    "runtime": runner.runtime,
                    "num_threads": num_threads if runner.kind == "tflite" else "tensorflow default",
                },
                "num_calibration": len(calibration_examples) if format == "tflite_int8" else None,
            }
            with open(os.path.join(output_dir, format, REPORT_NAME), "w") as file:
                json.dump(report, file, indent=2)
            reports[format] = report
    with open(os.path.join(output_dir, SUMMARY_NAME), "w") as file:
        json.dump(reports, file, indent=2)
    raise_for_failures(reports)
    return reports


def format_table(reports):
    """A Markdown table of the reports: format, size, accuracy, agreement, latency.

    Args:
        reports: `dict[format, report]` from `export_student` (or
            `ExportParityError.reports`).

    Returns:
        The table as a string; the first row is the Keras student.
    """

    def percent(value):
        return "-" if value is None else f"{100 * value:.2f}%"

    rows = [
        "| format | size | accuracy | top-1 agreement | max abs logit diff "
        "| latency (ms/example) | parity |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    if reports:
        first = next(iter(reports.values()))
        rows.append(
            f"| keras (reference) | - | {percent(first.get('keras_accuracy'))} | - | - | - | - |"
        )
    for format, report in reports.items():
        parity = report["parity"]
        rows.append(
            f"| {format} | {report['size_bytes'] / 1024:.1f} KiB | {percent(report['accuracy'])} "
            f"| {percent(parity['top1_agreement'])} | {parity['max_abs_logit_difference']:.4f} "
            f"| {report['latency_ms_per_example']:.3f} "
            f"| {'pass' if parity['passed'] else 'FAIL'} (>= {percent(parity['threshold'])}) |"
        )
    return "\n".join(rows)
