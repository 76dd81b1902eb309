"""benchmarks/accuracy.py: grids, resumption and aggregation (no training here)."""

import json

import numpy as np
import pytest

from benchmarks import accuracy


def test_grids_have_unique_ids_and_the_promised_cells():
    for name in ("smoke", "methods", "claims", "cifar100"):
        runs = accuracy.grid(name)
        assert len({r.run_id for r in runs}) == len(runs)
    methods = accuracy.grid("methods")
    assert {r.seed for r in methods} == {0, 1, 2}
    assert {"kd", "kd_plus", "dpk", "tllm", "dkd", "crd", "dml"} <= {r.method for r in methods}
    claims = {r.group for r in accuracy.grid("claims")}
    assert {"noise-0.4", "imbalance-100", "teacher-fmnist_teacher_large",
            "capacity-fmnist_student_wide"} <= claims
    with pytest.raises(ValueError, match="Unknown grid"):
        accuracy.grid("imagenet")


def test_stored_runs_are_reused_not_rerun(tmp_path, monkeypatch):
    run = accuracy.grid("smoke")[0]
    stored = {"group": "smoke", "method": run.method, "seed": 0, "results": {}}
    (tmp_path / f"{run.run_id}.json").write_text(json.dumps(stored))

    def fail(*args, **kwargs):
        raise AssertionError("a finished run must not be run again")

    import recipes.distill

    monkeypatch.setattr(recipes.distill, "run", fail)
    record, reused = accuracy.run_one(run, str(tmp_path), {})
    assert reused and record == stored


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
