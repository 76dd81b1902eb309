"""Tests of recipes/export.py: `run(config)` on arrays, and the flag layer."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
from absl import flags

from keras_distill import export
from recipes import export as recipe

REPOSITORY = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def random_data(count, seed):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (count, 32, 32, 3)).astype(np.uint8), rng.integers(0, 10, count)


@pytest.fixture(scope="module")
def student():
    """A tiny functional CNN on 32x32x3 with fixed random weights.

    Like the recipes' students it takes pixels scaled to [0, 1]: the
    recipe's default `--normalize=scale` does that to the uint8 data.
    """
    keras.utils.set_random_seed(0)
    inputs = keras.Input((32, 32, 3), name="image")
    x = keras.layers.Conv2D(4, 3, strides=2, activation="relu")(inputs)
    x = keras.layers.Flatten()(x)
    return keras.Model(inputs, keras.layers.Dense(10)(x), name="student")


@pytest.fixture(scope="module")
def model_dir(student, tmp_path_factory):
    directory = tmp_path_factory.mktemp("run")
    student.save(str(directory / recipe.STUDENT_FILE))
    return directory


def parse_flags(argv):
    flag_values = flags.FlagValues()
    recipe.define_flags(flag_values)
    flag_values(["export", *argv])
    return flag_values


def test_config_defaults_match_the_library():
    assert recipe.ExportConfig().formats == export.FORMATS
    assert recipe.ExportConfig().thresholds() == export.DEFAULT_THRESHOLDS


def test_run_exports_a_model_dir_with_arrays(model_dir, capsys):
    # Random weights on random data give near-tied logits: int8 may flip a
    # few; this test is about the recipe, not the quantiser.
    config = recipe.ExportConfig(
        model=str(model_dir),
        formats=("saved_model", "tflite_int8"),
        num_calibration=32,
        int8_threshold=0.9,
        latency_runs=3,
    )
    reports = recipe.run(config, train_data=random_data(100, 1), eval_data=random_data(50, 2))
    output_dir = model_dir / "export"  # the default: <model_dir>/export
    assert list(reports) == ["saved_model", "tflite_int8"]
    assert all(report["parity"]["passed"] for report in reports.values())
    assert reports["tflite_int8"]["num_calibration"] == 32
    assert reports["tflite_int8"]["preprocessing"].startswith("scale: (x - 0) / 255")
    assert (
        0.0
        <= reports["tflite_int8"]["input_range"]["min"]
        < reports["tflite_int8"]["input_range"]["max"]
        <= 1.0
    )
    assert json.loads((output_dir / "reports.json").read_text()) == reports
    printed = capsys.readouterr().out
    table = (output_dir / recipe.TABLE_FILE).read_text()
    assert table.strip() in printed
    for header in ("format", "size", "accuracy", "top-1 agreement", "latency (ms/example)"):
        assert header in table
    assert "| saved_model |" in table and "| tflite_int8 |" in table

    # A second run is refused before any work, until --overwrite.
    with pytest.raises(FileExistsError, match="--overwrite"):
        recipe.run(config)


def test_preprocess_matches_the_training_pipeline():
    images = np.array([[0, 51, 255]], np.uint8)
    scaled, description = recipe.preprocess(images, "scale")
    np.testing.assert_allclose(scaled, [[0.0, 0.2, 1.0]])
    assert scaled.dtype == np.float32 and "pixels to [0, 1]" in description
    unchanged, description = recipe.preprocess(images, "none")
    assert unchanged is images and description.startswith("none")


def test_main_reads_flags_loads_the_dataset_and_returns_0(model_dir, tmp_path, monkeypatch):
    loaded = {}

    def fake_load(config):
        loaded.update(dataset=config.dataset, data_dir=config.data_dir, limit=config.limit)
        return random_data(64, 3), random_data(40, 4)

    monkeypatch.setattr(recipe, "load_dataset", fake_load)
    flag_values = parse_flags(
        [
            f"--model={model_dir / recipe.STUDENT_FILE}",
            f"--output_dir={tmp_path / 'out'}",
            "--formats=tflite_dynamic_int8",
            "--dataset=fashion_mnist",
            "--data_dir=/data",
            "--limit=100",
            "--int8_threshold=0.9",
            "--latency_runs=2",
        ]
    )
    assert recipe.main(["export"], flag_values) == 0
    assert loaded == {"dataset": "fashion_mnist", "data_dir": "/data", "limit": 100}
    report = json.loads((tmp_path / "out" / "tflite_dynamic_int8" / "report.json").read_text())
    assert report["parity"]["passed"] and report["parity"]["examples"] == 40
    assert report["parity"]["threshold"] == 0.9


def test_main_exits_non_zero_with_the_message_when_parity_fails(
    model_dir, tmp_path, monkeypatch, capsys
):
    report = {
        "format": "tflite_int8",
        "path": "x.tflite",
        "size_bytes": 1,
        "accuracy": 0.1,
        "keras_accuracy": 0.9,
        "latency_ms_per_example": 0.1,
        "parity": {
            "examples": 10,
            "max_abs_logit_difference": 3.0,
            "top1_agreement": 0.5,
            "threshold": 0.97,
            "passed": False,
        },
    }

    def broken_export(*args, **kwargs):
        export.parity.raise_for_failures({"tflite_int8": report})

    monkeypatch.setattr(export, "export_student", broken_export)
    flag_values = parse_flags(
        [f"--model={model_dir}", f"--output_dir={tmp_path / 'out'}", "--formats=tflite_int8"]
    )
    monkeypatch.setattr(
        recipe, "load_dataset", lambda config: (random_data(8, 5), random_data(8, 6))
    )
    code = recipe.main(["export"], flag_values)
    assert code == recipe.EXIT_PARITY_FAILED
    captured = capsys.readouterr()
    assert (
        "tflite_int8: top-1 agreement 0.5000" in captured.err
        and "must not be shipped" in captured.err
    )
    assert "| tflite_int8 |" in captured.out and "FAIL" in captured.out


def test_main_refuses_missing_dataset_and_unknown_formats(model_dir, tmp_path, capsys):
    missing_dataset = parse_flags([f"--model={model_dir}", f"--output_dir={tmp_path / 'a'}"])
    assert recipe.main(["export"], missing_dataset) == recipe.EXIT_REFUSED
    assert "--dataset is required" in capsys.readouterr().err
    unknown_format = parse_flags([f"--model={model_dir}", "--formats=onnx", "--dataset=mnist"])
    assert recipe.main(["export"], unknown_format) == recipe.EXIT_REFUSED
    assert "Unknown or no --formats ['onnx']" in capsys.readouterr().err


def test_command_line_refuses_an_existing_export(tmp_path):
    """The real entry point: flags defined by __main__, exit code, message."""
    (tmp_path / "tflite_int8").mkdir()
    (tmp_path / "tflite_int8" / "model.tflite").write_bytes(b"earlier export")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "recipes.export",
            "--model=unused.keras",
            f"--output_dir={tmp_path}",
        ],
        cwd=REPOSITORY,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert result.returncode == recipe.EXIT_REFUSED, result.stderr
    assert (
        "already holds an export (tflite_int8)" in result.stderr and "--overwrite" in result.stderr
    )
    assert (tmp_path / "tflite_int8" / "model.tflite").read_bytes() == b"earlier export"
