"""Per-class test accuracy of a run's student (claim 4, TLLM).

From the run JSON when the recipe recorded it
(`results["student" | "scratch"]["per_class_test_accuracy"]`), else from the run's saved
student (`<grid>/runs/<run id>/student.keras`, evaluated on the test split its `config.json`
describes), cached under `<grid>/per_class/<run id>.json`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile

import numpy as np

from benchmarks.report.runs import part_of
from recipes.config import RunConfig


def evaluate_saved_student(run_dir):
    """Per-class test accuracy of `<run_dir>/student.keras` on its run's test split.

    Args:
        run_dir: a run folder holding `student.keras` and `config.json`.

    Returns:
        One accuracy (fraction, NaN for a class absent from the test split) per class.
    """
    # Keras, TensorFlow and the data loaders take seconds to import and are needed only
    # when a saved student must be evaluated, so the page itself does not wait for them.
    import keras

    import keras_distill.models  # noqa: F401  pylint: disable=unused-import (zoo layers)
    from keras_distill.callbacks.undistillable import per_class_accuracy
    from recipes import common

    with open(os.path.join(run_dir, "config.json")) as handle:
        values = json.load(handle)
    fields = {f.name for f in dataclasses.fields(RunConfig)}
    config = RunConfig(**{k: v for k, v in values.items() if k in fields})
    splits, _ = common.load_data(config)
    _, _, test = common.pipelines(config, splits)
    model = keras.saving.load_model(os.path.join(run_dir, "student.keras"), compile=False)
    return [float(v) for v in per_class_accuracy(model, test, splits.num_classes)]


def per_class(record, evaluate_students=True):
    """Per-class test accuracy of a run's student, or None when nothing records it.

    Args:
        record: a run record from `runs.load_results`.
        evaluate_students: whether a saved student may be evaluated (needs the dataset).

    Returns:
        A list of fractions (NaN where unknown), or None.
    """
    value = (part_of(record) or {}).get("per_class_test_accuracy")
    if value is not None:
        return [np.nan if v is None else float(v) for v in value]
    folder, run_id = record["_folder"], record["_run_id"]
    cache = os.path.join(folder, "per_class", f"{run_id}.json")
    if os.path.exists(cache):
        with open(cache) as handle:
            return [np.nan if v is None else v for v in json.load(handle)["per_class"]]
    run_dir = os.path.join(folder, "runs", run_id)
    if not (evaluate_students and os.path.exists(os.path.join(run_dir, "student.keras"))
            and os.path.exists(os.path.join(run_dir, "config.json"))):
        return None
    values = evaluate_saved_student(run_dir)
    _write_json(cache, {"per_class": [None if np.isnan(v) else v for v in values],
                        "source": os.path.join(run_dir, "student.keras")})
    return values


def _write_json(path, payload):
    """Writes JSON atomically (a temporary file renamed over the target)."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=folder, delete=False, suffix=".tmp") as handle:
        json.dump(payload, handle, indent=2, sort_keys=True)
        temporary = handle.name
    os.replace(temporary, path)
