"""Smoke runs of recipes/train.py and recipes/distill.py, and their errors."""

import json
import os
import subprocess
import sys

import pytest

from recipes import common, distill, train
from recipes.config import RunConfig, parse_options

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _config(tmp_path, **overrides):
    values = dict(limit=300, epochs=1, teacher_epochs=1, batch_size=64, verbose=0,
                  model_dir=str(tmp_path / "run"), teacher_dir=str(tmp_path / "teachers"))
    values.update(overrides)
    return RunConfig(**values)


def test_distill_smoke_writes_every_artifact_and_reuses_the_teacher(tmp_path):
    results = distill.run(_config(tmp_path))
    run = tmp_path / "run"
    for name in ("config.json", "results.json", "student.keras", "history.csv"):
        assert (run / name).exists(), name
    assert list((run / "tensorboard").rglob("events.out.tfevents.*"))
    assert list((run / "checkpoints").glob("trained-1.index"))
    assert (run / "scratch" / "history.csv").exists()
    saved = json.loads((run / "results.json").read_text())
    assert saved["teacher"]["reused"] is False
    for part in ("scratch", "student"):
        accuracy = saved[part]["test_accuracy"]
        assert 0.0 <= accuracy["last"] <= accuracy["best"] <= 1.0
        assert 0.0 <= saved[part]["agreement_with_teacher"] <= 1.0
    assert json.loads((run / "config.json").read_text())["method"] == "kd"
    assert results["student"]["params"] < results["teacher"]["params"]
    again = distill.run(_config(tmp_path, model_dir=str(tmp_path / "run2"), baseline=False))
    assert again["teacher"]["reused"] is True
    assert "scratch" not in again


def test_tllm_compares_with_a_labels_only_student_of_the_same_recipe_epoch_by_epoch(tmp_path):
    """Without a baseline the run trains the reference student (same optimizer, schedule,
    batch) in model_dir/reference; its per-epoch per-class validation accuracy is the
    reference the mask is computed from, epoch by epoch."""
    distill.run(_config(tmp_path, method="tllm", epochs=2, baseline=False))
    run = tmp_path / "run"
    trajectory = json.loads((run / "reference" / "reference_per_class_accuracy.json").read_text())
    assert len(trajectory) == 2 and all(len(row) == 10 for row in trajectory)
    report = json.loads((run / "undistillable_classes.json").read_text())
    assert [h["reference_accuracy"] for h in report["history"]] == trajectory
    assert report["reference_accuracy"] == trajectory[-1]
    for entry in report["history"]:  # the mask holds exactly the classes below the reference
        assert entry["undistillable"] == [
            k for k in range(10) if entry["student_accuracy"][k] < entry["reference_accuracy"][k]]
    # with the baseline on, the scratch student's trajectory is the reference (no third run)
    distill.run(_config(tmp_path, method="tllm", epochs=2, model_dir=str(tmp_path / "b")))
    assert (tmp_path / "b" / "scratch" / "reference_per_class_accuracy.json").exists()
    assert not (tmp_path / "b" / "reference").exists()


def test_kd_plus_on_unlabeled_images_from_a_file(tmp_path):
    """--unlabeled_data feeds KD+'s extra term: it is logged, and differs from 0."""
    import numpy as np

    np.save(tmp_path / "unlabeled.npy",
            np.random.default_rng(0).integers(0, 256, (200, 28, 28), dtype="uint8"))
    options = parse_options("plus_source=unlabeled")
    distill.run(_config(tmp_path, method="kd_plus", method_options=options, baseline=False,
                        unlabeled_data=str(tmp_path / "unlabeled.npy")))
    header, row = (tmp_path / "run" / "history.csv").read_text().splitlines()[:2]
    values = dict(zip(header.split(","), row.split(",")))
    assert float(values["kd_ood"]) > 0
    with pytest.raises(common.ConfigError, match="reads unlabeled images .*--unlabeled_data="):
        distill.run(_config(tmp_path, method="kd_plus", method_options=options,
                            baseline=False, model_dir=str(tmp_path / "b")))
    with pytest.raises(common.ConfigError, match="--unlabeled_data is given, but --method=kd"):
        distill.run(_config(tmp_path, method="kd", baseline=False, model_dir=str(tmp_path / "c"),
                            unlabeled_data=str(tmp_path / "unlabeled.npy")))


def test_train_recipe_smoke(tmp_path):
    results = train.run(_config(tmp_path, student="fmnist_student"))
    assert (tmp_path / "run" / "model.keras").exists()
    assert results["params"] > 0 and 0 <= results["test_accuracy"]["last"] <= 1


def test_label_noise_run_records_the_transform(tmp_path):
    results = distill.run(_config(tmp_path, label_noise=0.4, baseline=False,
                                  validation_split=0.0))
    assert results["transforms"]["label_noise"]["num_flipped"] == round(0.4 * 300)


@pytest.mark.parametrize("overrides, message", [
    (dict(dataset="fashion_minst"), "fashion_mnist"),
    (dict(student="resnet9000"), "--student"),
    (dict(method="kd_pluss"), "--method: Unknown method 'kd_pluss'"),
    (dict(lr_schedule="warp"), "--lr_schedule must be"),
])
def test_bad_configuration_is_refused_clearly(tmp_path, overrides, message):
    with pytest.raises(Exception, match=message):
        distill.run(_config(tmp_path, baseline=False, **overrides))


def test_teacher_with_another_class_count_is_refused(tmp_path):
    import keras
    from keras_distill import models

    path = tmp_path / "teacher100.keras"
    models.get("fmnist_teacher_small", num_classes=100, input_shape=(28, 28, 1)).save(path)
    with pytest.raises(common.ConfigError, match="predicts 100 classes but fashion_mnist has 10"):
        distill.run(_config(tmp_path, teacher=str(path), baseline=False))
    del keras


def test_unwritable_model_dir_is_refused_before_training(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(common.ConfigError, match="is not writable"):
        distill.run(_config(tmp_path, model_dir=str(blocker / "run")))


def test_method_options_parsing():
    assert parse_options("temperature=2, mode=top_k") == {"temperature": "2", "mode": "top_k"}
    with pytest.raises(ValueError, match="not key=value"):
        parse_options("temperature")


def test_command_line_lists_methods_and_rejects_bad_flags():
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    listed = subprocess.run([sys.executable, "-m", "recipes.distill", "--list_methods"],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert listed.returncode == 0 and "kd " in listed.stdout
    assert "<method>_plus" in listed.stdout and "dkd_plus" in listed.stdout
    bad = subprocess.run([sys.executable, "-m", "recipes.distill", "--strategy=gpu_cluster"],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0 and "strategy" in bad.stderr


@pytest.mark.parametrize("options, message", [
    ({"temprature": "2"}, r"\['temprature'\] are not read by --method=kd.*"
                          r"'temprature': did you mean 'temperature'\?"),
    ({"temperature": "0"}, r"--method=kd: temperature=0.0: expected a float > 0"),
    ({"temperature": "abc"}, r"temperature='abc' of --method=kd: expected float"),
])
def test_bad_method_options_are_refused_before_any_work(tmp_path, options, message):
    with pytest.raises(common.ConfigError, match=message):
        distill.run(_config(tmp_path, method_options=options))
    assert not (tmp_path / "run").exists() and not (tmp_path / "teachers").exists()


def test_command_line_bad_method_option_is_one_error_line_before_any_training(tmp_path):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run(
        [sys.executable, "-m", "recipes.distill", "--method=dkd",
         "--method_options=temperature=2,bta=4", f"--model_dir={tmp_path / 'run'}",
         f"--teacher_dir={tmp_path / 'teachers'}"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.returncode == 1, result.stderr
    assert len(errors) == 1 and "['bta'] are not read by --method=dkd" in errors[0]
    assert "did you mean 'beta'?" in errors[0] and "beta: float | None = None" in errors[0]
    assert "Training" not in result.stdout and not (tmp_path / "teachers").exists()


def test_command_line_lists_every_method_with_its_options():
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    listed = subprocess.run([sys.executable, "-m", "recipes.distill", "--list_methods"],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert listed.returncode == 0
    assert "options: temperature: float = 4.0, kd_weight: float = 0.9" in listed.stdout
    assert "plus_source: str = 'mixup'" in listed.stdout
    assert "dkd_weight: float = 1.0" in listed.stdout
