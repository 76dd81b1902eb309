"""SIGKILL a distillation and rerun the same command: it resumes exactly.

Each test starts tests/resume_worker.py (the recipe's `distill_student`:
its Distiller, NaN guard, checkpoints and `AtomicBackupAndRestore` with the
data order tracked; seeded shuffling and crop_flip augmentation, 3 epochs of
3 steps), lets it pause at one point, kills it with SIGKILL, reruns the same
command and compares the final student with an uninterrupted run: the
weights must be bitwise equal (same weights, optimizer state, data order and
augmentation). `--pause` points: see the worker's docstring.
"""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WORKER = os.path.join(REPO, "tests", "resume_worker.py")
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=REPO)
TIMEOUT = 600  # seconds; a loaded 2-core machine runs one tiny worker in ~10-40 s


def _command(model_dir, *extra):
    return [sys.executable, WORKER, "--model_dir", str(model_dir), *extra]


def _run(model_dir, *extra):
    result = subprocess.run(_command(model_dir, *extra), cwd=REPO, env=ENV, capture_output=True,
                            text=True, timeout=TIMEOUT)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def _run_and_kill(model_dir, pause, *extra):
    """Starts the worker, waits until it pauses at `pause`, and SIGKILLs it there."""
    os.makedirs(model_dir, exist_ok=True)
    log = open(os.path.join(model_dir, "killed.log"), "w")
    process = subprocess.Popen(_command(model_dir, "--pause", pause, *extra), cwd=REPO, env=ENV,
                               stdout=log, stderr=subprocess.STDOUT)
    marker = os.path.join(model_dir, "paused")
    deadline = time.time() + TIMEOUT
    try:
        while not os.path.exists(marker):
            if process.poll() is not None:
                log.flush()
                with open(log.name) as handle:
                    pytest.fail(f"worker exited ({process.returncode}) before pausing at "
                                f"{pause}:\n{handle.read()[-3000:]}")
            if time.time() > deadline:
                pytest.fail(f"worker did not reach {pause} in {TIMEOUT} s")
            time.sleep(0.05)
        os.kill(process.pid, signal.SIGKILL)
        assert process.wait(timeout=60) == -signal.SIGKILL
    finally:
        if process.poll() is None:
            process.kill()
        log.close()
    os.remove(marker)


def _weights(model_dir):
    with np.load(os.path.join(model_dir, "final.npz")) as saved:
        return [saved[k] for k in sorted(saved.files, key=lambda k: int(k.split("_")[1]))]


def _backup_state(model_dir):
    with open(os.path.join(model_dir, "backup", "backup.json")) as handle:
        return json.load(handle)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    model_dir = tmp_path_factory.mktemp("uninterrupted")
    _run(model_dir)
    return _weights(model_dir)


CASES = [
    # (pause point, last complete epoch at the kill, files expected in backup/ after the kill)
    pytest.param("mid_epoch:2", 1, ["backup.json", "state-000001.weights.h5"],
                 id="during_training"),
    pytest.param("before_commit:2", 1,
                 ["backup.json", "state-000001.weights.h5", "state-000002.weights.h5"],
                 id="during_backup_write"),
    pytest.param("partial_write:2", 1,
                 ["backup.json", "state-000001.weights.h5", "state-000002.weights.h5"],
                 id="half_written_backup", marks=pytest.mark.slow),
    pytest.param("after_commit:1", 1, ["backup.json", "state-000001.weights.h5"],
                 id="right_after_backup", marks=pytest.mark.slow),
]


@pytest.mark.parametrize("pause, complete, files", CASES)
def test_killed_run_resumes_exactly(tmp_path, uninterrupted, pause, complete, files):
    model_dir = tmp_path / "run"
    _run_and_kill(model_dir, pause)
    assert sorted(os.listdir(model_dir / "backup")) == files
    assert _backup_state(model_dir)["epoch"] == complete  # the uncommitted write is not named
    _run(model_dir)  # the same command again
    with open(model_dir / "final.json") as handle:
        final = json.load(handle)
    assert final["epochs_run"] == 3 - complete  # resumed, not restarted
    assert len(final["test_accuracy"]) == 3  # the epochs before the kill are kept
    for resumed, reference in zip(_weights(model_dir), uninterrupted):
        np.testing.assert_array_equal(resumed, reference)
    assert sorted(os.listdir(model_dir / "backup")) == ["backup.json", "state-000003.weights.h5"]
    assert _backup_state(model_dir)["epoch"] == 3


def _recipe_flags(tmp_path):
    return ["--recipe", "--limit=300", "--teacher_epochs=1", "--batch_size=64", "--verbose=0",
            "--baseline=false", "--augment=crop_flip", "--seed=3",
            f"--teacher_dir={tmp_path / 'teachers'}"]


def _student_weights(model_dir):
    import keras

    return keras.saving.load_model(os.path.join(model_dir, "student.keras"),
                                   compile=False).get_weights()


@pytest.mark.slow  # three full recipe runs: ~1-3 minutes
def test_killed_recipe_command_resumes_exactly(tmp_path):
    """`python -m recipes.distill` itself (Fashion-MNIST, teacher, export), killed while
    writing epoch 2's backup, then rerun: the same student and results as without a kill."""
    flags = _recipe_flags(tmp_path)
    _run(tmp_path / "reference", *flags)  # also trains and caches the teacher
    _run_and_kill(tmp_path / "run", "before_commit:2", *flags)
    assert _backup_state(tmp_path / "run")["epoch"] == 1
    _run(tmp_path / "run", *flags)
    for resumed, reference in zip(_student_weights(tmp_path / "run"),
                                  _student_weights(tmp_path / "reference")):
        np.testing.assert_array_equal(resumed, reference)
    results = [json.loads((tmp_path / d / "results.json").read_text())["student"]
               for d in ("reference", "run")]
    assert results[0]["test_accuracy"]["last"] == results[1]["test_accuracy"]["last"]
    # the epochs finished before the kill are kept (read back from history.csv)
    assert results[1]["test_accuracy"]["per_epoch"] == results[0]["test_accuracy"]["per_epoch"]
