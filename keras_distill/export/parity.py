"""The parity check: an artifact must agree with the Keras student.

An exported artifact is compared with the Keras student it came from on
held-out data (the evaluation split): the largest absolute difference of
logits, the top-1 agreement (fraction of examples where both predict the
same class), and the accuracy of each. An artifact whose top-1 agreement
falls under its format's threshold fails with `ExportParityError`, so a
broken conversion never ships quietly.
"""

from __future__ import annotations

import numpy as np

from keras_distill.export.convert import FORMATS
from keras_distill.export.runners import load_artifact

DEFAULT_THRESHOLDS = {
    "saved_model": 0.99,
    "tflite_float32": 0.99,
    "tflite_float16": 0.99,
    "tflite_dynamic_int8": 0.97,
    "tflite_int8": 0.97,
}
"""Minimum top-1 agreement with the Keras student, per format."""


class ExportParityError(RuntimeError):
    """An exported artifact disagrees with the Keras student.

    Attributes:
        reports: `dict[format, report]` of every artifact checked, failing or
            not; `report["parity"]["passed"]` says which failed.
    """

    def __init__(self, message, reports=None):
        super().__init__(message)
        self.reports = dict(reports or {})


def resolve_thresholds(thresholds=None):
    """Merges per-format overrides into `DEFAULT_THRESHOLDS`.

    Args:
        thresholds: `None`, or a mapping `format -> minimum top-1 agreement`
            in `[0, 1]` overriding the defaults for those formats.

    Returns:
        A complete `dict[format, float]`.

    Raises:
        ValueError: For an unknown format or a value outside `[0, 1]`.
    """
    resolved = dict(DEFAULT_THRESHOLDS)
    for format, value in dict(thresholds or {}).items():
        if format not in FORMATS:
            raise ValueError(f"Unknown format {format!r} in thresholds; expected one of {FORMATS}.")
        if not 0.0 <= float(value) <= 1.0:
            raise ValueError(f"Threshold for {format} must be in [0, 1], got {value}.")
        resolved[format] = float(value)
    return resolved


def class_labels(labels):
    """Integer class labels from integer labels `(n,)`/`(n, 1)` or one-hot `(n, c)`."""
    labels = np.asarray(labels)
    if labels.ndim == 2 and labels.shape[1] > 1:
        return labels.argmax(axis=1)
    return labels.reshape(len(labels)).astype(np.int64)


def compare_logits(reference_logits, artifact_logits, labels=None):
    """Parity numbers of artifact logits against the Keras student's.

    Args:
        reference_logits: Keras student outputs, `(n, classes)`.
        artifact_logits: The artifact's (dequantised) outputs, same shape.
        labels: Optional labels for the accuracies (integer or one-hot).

    Returns:
        A dict with `examples`, `max_abs_logit_difference`, `top1_agreement`,
        and, when labels are given, `accuracy` (the artifact's) and
        `keras_accuracy` (the student's); else those two are `None`.

    Example:

    >>> numbers = compare_logits([[2.0, 1.0], [0.0, 1.0]],
    ...                          [[1.5, 1.0], [1.0, 0.5]], labels=[0, 1])
    >>> numbers["max_abs_logit_difference"], numbers["top1_agreement"]
    (1.0, 0.5)
    >>> numbers["accuracy"], numbers["keras_accuracy"]
    (0.5, 1.0)
    """
    reference_logits = np.asarray(reference_logits, dtype=np.float32)
    artifact_logits = np.asarray(artifact_logits, dtype=np.float32)
    if reference_logits.shape != artifact_logits.shape:
        raise ValueError(
            f"The artifact returned outputs of shape {artifact_logits.shape}, the Keras student "
            f"{reference_logits.shape}: it is not an export of this student."
        )
    reference_classes = reference_logits.argmax(axis=-1)
    artifact_classes = artifact_logits.argmax(axis=-1)
    result = {
        "examples": int(len(reference_logits)),
        "max_abs_logit_difference": float(np.max(np.abs(reference_logits - artifact_logits))),
        "top1_agreement": float(np.mean(reference_classes == artifact_classes)),
        "accuracy": None,
        "keras_accuracy": None,
    }
    if labels is not None:
        labels = class_labels(labels)
        result["accuracy"] = float(np.mean(artifact_classes == labels))
        result["keras_accuracy"] = float(np.mean(reference_classes == labels))
    return result


def failure_message(format, report):
    """One line saying why `report` failed its parity check."""
    parity = report["parity"]
    return (
        f"{format}: top-1 agreement {parity['top1_agreement']:.4f} with the Keras student on "
        f"{parity['examples']} held-out examples is under the threshold {parity['threshold']} "
        f"(max abs logit difference {parity['max_abs_logit_difference']:.4g}); artifact "
        f"{report['path']}"
    )


def raise_for_failures(reports):
    """Raises `ExportParityError` naming every report whose parity check failed.

    Args:
        reports: `dict[format, report]`.

    Raises:
        ExportParityError: If any `report["parity"]["passed"]` is false.
    """
    failures = [
        failure_message(format, report)
        for format, report in reports.items()
        if not report["parity"]["passed"]
    ]
    if failures:
        raise ExportParityError(
            "Export parity check failed: these artifacts disagree with the Keras student and "
            "must not be shipped (see their report.json).\n  " + "\n  ".join(failures),
            reports,
        )


def evaluate_runner(runner, reference_logits, x, labels=None, threshold=0.99, batch_size=256):
    """Runs an opened artifact on `x` and checks it against reference logits.

    Args:
        runner: From `load_artifact`.
        reference_logits: The Keras student's outputs on `x`.
        x: Float32 inputs, as the Keras student takes them.
        labels: Optional labels of `x`, for accuracies.
        threshold: Minimum top-1 agreement.
        batch_size: Inference batch size.

    Returns:
        `{"parity": {examples, max_abs_logit_difference, top1_agreement,
        threshold, passed}, "accuracy": ..., "keras_accuracy": ...}`.
    """
    numbers = compare_logits(reference_logits, runner.predict(x, batch_size=batch_size), labels)
    accuracy = numbers.pop("accuracy")
    keras_accuracy = numbers.pop("keras_accuracy")
    numbers["threshold"] = float(threshold)
    numbers["passed"] = bool(numbers["top1_agreement"] >= threshold)
    return {"parity": numbers, "accuracy": accuracy, "keras_accuracy": keras_accuracy}


def check_parity(artifact, student, eval_data, threshold=None, format=None, batch_size=256):
    """Checks an existing artifact against a Keras student; raises if it fails.

    Use it to verify an artifact written earlier or elsewhere, e.g. in CI
    before shipping a file.

    Args:
        artifact: A SavedModel directory or `.tflite` file.
        student: The Keras model the artifact should reproduce.
        eval_data: `(x, y)` held-out inputs and labels, or `x` alone.
        threshold: Minimum top-1 agreement. Defaults to the format's entry
            in `DEFAULT_THRESHOLDS` when `format` is given, else 0.99.
        format: The artifact's format name, for the default threshold and
            the message.
        batch_size: Inference batch size.

    Returns:
        The report: `path`, `input`, `output`, `parity`, `accuracy`,
        `keras_accuracy`.

    Raises:
        ExportParityError: If top-1 agreement is under the threshold, or the
            artifact's output shape differs from the student's.

    Example:

    ```python
    check_parity("export/tflite_int8/model.tflite", student, (x_test, y_test),
                 format="tflite_int8")
    ```
    """
    if threshold is None:
        threshold = DEFAULT_THRESHOLDS.get(format, 0.99)
    x, labels = eval_data if isinstance(eval_data, (tuple, list)) else (eval_data, None)
    x = np.asarray(x, dtype=np.float32)
    runner = load_artifact(artifact)
    name = format or runner.kind
    reference_logits = np.asarray(student.predict(x, batch_size=batch_size, verbose=0))
    report = {
        "format": name,
        "path": str(artifact),
        "input": runner.input_spec,
        "output": runner.output_spec,
    }
    try:
        report.update(evaluate_runner(runner, reference_logits, x, labels, threshold, batch_size))
    except ValueError as error:
        raise ExportParityError(
            f"Export parity check failed for {name} ({artifact}): {error}"
        ) from error
    raise_for_failures({name: report})
    return report
