"""Reading the accuracy benchmark's run JSONs and the numbers each one holds."""

from __future__ import annotations

import glob
import json
import os

from recipes.config import CIFAR_PRESET, PRESETS


def part_of(record):
    """The trained student's results of a run (`student`, or `scratch` for a scratch run)."""
    results = record.get("results") or {}
    return results.get("student") or results.get("scratch")


def accuracy_of(record, metric="last"):
    """The run's test accuracy at its `last` (or `best`) epoch, or None."""
    part = part_of(record)
    return None if part is None else part["test_accuracy"][metric]


def teacher_of(record):
    """The run's teacher summary (`name`, `test_accuracy`, `params`), or None."""
    teacher = (record.get("results") or {}).get("teacher")
    return None if not teacher else teacher


def load_results(results_dir):
    """Every run JSON under `results_dir`.

    Args:
        results_dir: folder holding one sub-folder of `<run id>.json` per grid.

    Returns:
        `{grid: {run id: record}}` for every grid folder holding run JSONs. Each record
        also carries `_grid`, and `_folder` / `_run_id` of its run folder (the source's
        for a run shared from another grid, with `_source_grid`).
    """
    grids = {}
    if not os.path.isdir(results_dir):
        return grids
    for grid in sorted(os.listdir(results_dir)):
        folder = os.path.join(results_dir, grid)
        if not os.path.isdir(folder):
            continue
        records = {}
        for path in sorted(glob.glob(os.path.join(folder, "*.json"))):
            name = os.path.basename(path)
            if name == "aggregate.json":
                continue
            with open(path) as handle:
                record = json.load(handle)
            if not isinstance(record, dict) or "results" not in record:
                continue
            teacher = record["results"].get("teacher") or {}
            if isinstance(teacher.get("test_accuracy"), dict):  # older runs: training summary
                teacher["test_accuracy"] = teacher["test_accuracy"].get("last")
            run_id = name[: -len(".json")]
            record["_grid"], record["_folder"], record["_run_id"] = grid, folder, run_id
            source = record.get("shared_from")  # "<grid>/<run id>.json" of the run reused
            if source:
                # Its run folder (per-class cache, callback files, config) is the source's.
                source_grid, source_name = os.path.split(source)
                record["_source_grid"] = source_grid
                record["_folder"] = os.path.join(results_dir, source_grid)
                record["_run_id"] = source_name[: -len(".json")]
            records[run_id] = record
        if records:
            grids[grid] = records
    return grids


def epochs_of(record):
    """`(student epochs, recorded)`: from the record's config or the run's config.json
    (recorded), else the length of the per-epoch history (a resumed run's is shorter)."""
    for source in (record.get("config"), record.get("extra")):
        if isinstance(source, dict) and source.get("epochs"):
            return int(source["epochs"]), True
    path = os.path.join(record.get("_folder", ""), "runs", record.get("_run_id", ""),
                        "config.json")
    if os.path.exists(path):
        with open(path) as handle:
            epochs = json.load(handle).get("epochs")
        if epochs:
            return int(epochs), True
    part = part_of(record)
    per_epoch = part["test_accuracy"].get("per_epoch") if part else None
    return (len(per_epoch), False) if per_epoch else (None, False)


def preset_epochs(dataset):
    """The student epochs of the recipe preset for `dataset`."""
    return PRESETS.get(dataset, CIFAR_PRESET)["epochs"]
