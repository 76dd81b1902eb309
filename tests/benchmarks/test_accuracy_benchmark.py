"""benchmarks/accuracy.py: grids, resumption and aggregation (no training here)."""

import json
import os

import numpy as np
import pytest

from benchmarks import accuracy


def test_grids_have_unique_ids_and_the_promised_cells():
    for name in ("smoke", "methods", "claims", "robustness", "cifar100"):
        runs = accuracy.grid(name)
        assert len({r.run_id for r in runs}) == len(runs)
    methods = accuracy.grid("methods")
    assert {r.seed for r in methods} == {0, 1, 2}
    assert {"kd", "kd_plus", "dpk", "tllm", "dkd", "crd", "dml"} <= {r.method for r in methods}
    claims = {r.group for r in accuracy.grid("claims")}
    assert {"noise-0.4", "imbalance-100", "teacher-fmnist_teacher_tiny",
            "capacity-fmnist_student_wide"} <= claims
    robust = accuracy.grid("robustness", with_methods=("dkd",))
    assert {r.group for r in robust} == {"noise-0.2", "noise-0.4", "noise-0.6", "noise-asym-0.4",
                                         "imbalance-10", "imbalance-100"}
    assert {r.method for r in robust} == {"scratch", "kd", "dkd"}
    asym = [r for r in robust if r.group == "noise-asym-0.4"][0]
    assert dict(asym.overrides)["label_noise_type"] == "asymmetric"
    # the claims grid's protocol runs are the same runs (shared, not run twice)
    claims = {r.run_id for r in accuracy.grid("claims")}
    assert {r.run_id for r in robust if r.method in ("scratch", "kd")
            and r.group != "noise-asym-0.4"} <= claims
    with pytest.raises(ValueError, match="Unknown grid"):
        accuracy.grid("imagenet")


def test_the_methods_grid_derives_from_the_method_table():
    """Every method of keras_distill/methods/__init__.py runs, but the named variants."""
    from keras_distill.methods import METHODS

    grid_methods = list(dict.fromkeys(r.method for r in accuracy.grid("methods")))
    assert set(accuracy.NOT_IN_GRID) <= set(METHODS)  # no stale exclusion
    assert grid_methods == [name for name in METHODS if name not in accuracy.NOT_IN_GRID]
    assert grid_methods == [
        "scratch", "kd", "kd_plus", "tang_full", "tang_label_smoothing", "tang_partial",
        "tang_top_k", "tang_reweight", "dpk", "tllm", "dkd", "fitnet", "at", "fsp", "vid",
        "rkd", "sp", "pkt", "cc", "crd", "dml", "bss", "one"]  # the grid's runs as before


def test_stored_runs_are_reused_not_rerun(tmp_path, monkeypatch):
    run = accuracy.grid("smoke")[0]
    stored = {"group": "smoke", "method": run.method, "seed": 0, "results": {}}
    (tmp_path / f"{run.run_id}.json").write_text(json.dumps(stored))

    def fail(*args, **kwargs):
        raise AssertionError("a finished run must not be run again")

    import recipes.distill

    monkeypatch.setattr(recipes.distill, "run", fail)
    record, status = accuracy.run_one(run, str(tmp_path), {})
    assert status == "stored" and record == stored


def test_the_same_configuration_in_another_grid_is_shared(tmp_path, monkeypatch):
    """The claims grid reuses the methods grid's identical runs instead of rerunning them."""
    import recipes.distill

    monkeypatch.setattr(recipes.distill, "run", lambda *a, **k: pytest.fail("ran again"))
    methods = [r for r in accuracy.grid("methods") if r.method == "kd" and r.seed == 1][0]
    (tmp_path / "methods").mkdir()
    stored = {"group": methods.group, "method": "kd", "seed": 1, "extra": {}, "results": {"x": 1}}
    (tmp_path / "methods" / f"{methods.run_id}.json").write_text(json.dumps(stored))
    capacity = [r for r in accuracy.grid("claims") if r.method == "kd" and r.seed == 1
                and r.group == "capacity-fmnist_student_small"][0]
    record, status = accuracy.run_one(capacity, str(tmp_path / "claims"), {})
    assert status == "shared" and record["results"] == {"x": 1}
    assert record["group"] == "capacity-fmnist_student_small"
    assert json.loads((tmp_path / "claims" / f"{capacity.run_id}.json").read_text()) == record
    # a different configuration (another student) is not confused with it
    wide = [r for r in accuracy.grid("claims") if r.method == "kd" and r.seed == 1
            and r.group == "capacity-fmnist_student_wide"][0]
    assert accuracy._stored_elsewhere(wide, str(tmp_path / "claims")) == (None, None)


def test_a_run_in_progress_elsewhere_is_skipped(tmp_path, monkeypatch):
    import recipes.distill

    monkeypatch.setattr(recipes.distill, "run", lambda *a, **k: pytest.fail("ran twice"))
    run = accuracy.grid("smoke")[0]
    output_dir = tmp_path / "smoke"
    output_dir.mkdir()
    lock = output_dir / f"{run.run_id}.json.running"
    lock.write_text(str(os.getpid()))  # a live process holds it
    assert accuracy.run_one(run, str(output_dir), {}) == (None, "busy")
    lock.write_text("999999999")  # its process died: the lock is taken over
    monkeypatch.setattr(recipes.distill, "run", lambda config: {"student": {}})
    record, status = accuracy.run_one(run, str(output_dir), {})
    assert status == "ran" and not lock.exists()


def test_summary_mean_and_sample_std():
    def record(seed, best, last):
        return {"group": "g", "method": "kd", "seed": seed, "results": {
            "teacher": {"test_accuracy": 0.9},
            "student": {"test_accuracy": {"best": best, "last": last},
                        "agreement_with_teacher": 0.8}}}

    rows = accuracy.summarize([record(0, 0.80, 0.78), record(1, 0.82, 0.80),
                               record(2, 0.84, 0.79)])
    (row,) = rows
    assert row["n"] == 3 and row["teacher"] == 0.9
    assert row["best_mean"] == pytest.approx(0.82)
    assert row["best_std"] == pytest.approx(np.std([0.80, 0.82, 0.84], ddof=1))
    assert row["last_mean"] == pytest.approx(0.79)


def test_workers_split_the_cores_and_rerun_the_same_command():
    workers = accuracy.worker_commands(
        ["benchmarks/accuracy.py", "--grid=methods", "--jobs=2", "--seeds=1"], jobs=2, cores=4)
    assert len(workers) == 2
    for command, environment in workers:
        assert command[1:] == ["-m", "benchmarks.accuracy", "--grid=methods", "--seeds=1",
                               "--jobs=1"]
        assert environment["TF_NUM_INTRAOP_THREADS"] == "2"
        assert environment["OMP_NUM_THREADS"] == "2"
    (command, _), = accuracy.worker_commands(["a.py", "--grid", "claims", "--jobs", "3"], 1)
    assert command[3:] == ["--grid", "claims", "--jobs=1"]
