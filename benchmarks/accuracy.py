"""Accuracy benchmark: a grid of (teacher, student, method, seed) runs, resumable.

    python -m benchmarks.accuracy --grid=smoke          # minutes
    python -m benchmarks.accuracy --grid=methods        # every method, 3 seeds (hours here)
    python -m benchmarks.accuracy --grid=claims         # the papers' claims at small scale
    python -m benchmarks.accuracy --grid=cifar100       # the standard CIFAR-100 table (GPU)
    python -m benchmarks.report                         # regenerate docs/results.md

Each run is `recipes.distill.run` with its own model_dir under
`<output_dir>/runs/<run id>/`, and writes `<output_dir>/<run id>.json` when it
finishes; a rerun skips runs whose JSON exists, so an interrupted grid resumes
(an interrupted run itself resumes from its BackupAndRestore state). The
teacher of a (dataset, teacher, data protocol) is trained once and shared.
Prints and writes `aggregate.json`: mean, std, best and last epoch test
accuracy and teacher-student agreement per (group, method).
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time

import numpy as np
from absl import app, flags

from keras_distill.methods import METHODS

SEEDS = (0, 1, 2)
# The main job's pair (recipes/config.py FASHION_MNIST_PRESET).
FMNIST = dict(dataset="fashion_mnist", teacher="fmnist_teacher_small",
              student="fmnist_student_small")

# The methods grid runs every method of the table (keras_distill/methods/__init__.py), in its
# order, but two variants measured through others: `tang` is `tang_full` unless given a mode
# (each `tang_<mode>` runs), `fitnet_two_stage` is FitNet's hint-then-KD schedule.
NOT_IN_GRID = ("tang", "fitnet_two_stage")
ALL_METHODS = tuple(name for name in METHODS if name not in NOT_IN_GRID)

CIFAR_PAIRS = (("resnet56", "resnet20"), ("resnet110", "resnet32"),
               ("resnet32x4", "resnet8x4"), ("wrn_40_2", "wrn_16_2"), ("vgg13", "vgg8"))


@dataclasses.dataclass(frozen=True)
class Run:
    """One cell of a grid: a group (what is compared), a method, a seed, overrides."""

    group: str
    method: str
    seed: int
    overrides: tuple  # sorted (key, value) pairs of RunConfig fields

    @property
    def run_id(self):
        tail = "-".join(f"{k}={v}" for k, v in self.overrides
                        if k not in ("dataset", "method", "seed"))
        safe = tail.replace("/", "_").replace(",", "_")
        return f"{self.group}--{self.method}--seed{self.seed}" + (f"--{safe}" if safe else "")


def _runs(group, methods, seeds, **overrides):
    return [Run(group, method, seed, tuple(sorted(overrides.items())))
            for method in methods for seed in seeds]


# Claim 3's teacher sizes: 18k, 70k, 279k. fmnist_teacher_large (1.1M) is left out: it alone
# takes ~70 min to train on one core here, more than the rest of the claim.
DPK_TEACHERS = ("fmnist_teacher_tiny", "fmnist_teacher_small", "fmnist_teacher_medium")
ROBUSTNESS = (("noise-0.2", dict(label_noise=0.2)), ("noise-0.4", dict(label_noise=0.4)),
              ("noise-0.6", dict(label_noise=0.6)),
              ("noise-asym-0.4", dict(label_noise=0.4, label_noise_type="asymmetric")),
              ("imbalance-10", dict(imbalance_ratio=10.0)),
              ("imbalance-100", dict(imbalance_ratio=100.0)))


def grid(name, with_methods=()):
    """The runs of a named grid.

    `with_methods` adds methods to the robustness protocols (scratch and KD
    always run), e.g. `("dkd",)`: "scratch vs KD vs a chosen method".
    """
    if name == "smoke":
        return _runs("smoke", ("scratch", "kd"), (0,), limit=2000, epochs=1, teacher_epochs=2,
                     **FMNIST)
    if name == "methods":
        return _runs("fmnist", ALL_METHODS, SEEDS, **FMNIST)
    if name == "claims":
        runs = []
        # 1. KD+: student capacity sweep (3 widths), scratch vs KD vs KD+.
        for student in ("fmnist_student_small", "fmnist_student", "fmnist_student_wide"):
            runs += _runs(f"capacity-{student}", ("scratch", "kd", "kd_plus"), SEEDS,
                          **{**FMNIST, "student": student})
        # 2. Tang et al.: the mode ablation.
        runs += _runs("fmnist", ("scratch", "kd", "tang_label_smoothing", "tang_reweight",
                                 "tang_partial", "tang_top_k"), SEEDS, **FMNIST)
        # 3. DPK: three teacher sizes, one student, KD vs DPK.
        for teacher in DPK_TEACHERS:
            runs += _runs(f"teacher-{teacher}", ("kd", "dpk"), SEEDS,
                          **{**FMNIST, "teacher": teacher})
        # 4. TLLM vs KD (per-class gains are in each run's JSON).
        runs += _runs("fmnist", ("tllm",), SEEDS, **FMNIST)
        # 5. KD beyond compression: label noise and class imbalance.
        for group, transform in ROBUSTNESS:
            if group != "noise-asym-0.4":
                runs += _runs(group, ("scratch", "kd"), SEEDS, **transform, **FMNIST)
        return _dedupe(runs)
    if name == "robustness":
        # The robustness protocols: symmetric noise 20/40/60 %, asymmetric 40 %,
        # long-tailed imbalance 10 and 100; scratch vs KD (vs the chosen methods).
        methods = tuple(dict.fromkeys(("scratch", "kd") + tuple(with_methods)))
        runs = []
        for group, transform in ROBUSTNESS:
            runs += _runs(group, methods, SEEDS, **transform, **FMNIST)
        return runs
    if name == "cifar100":
        runs = []
        for teacher, student in CIFAR_PAIRS:
            runs += _runs(f"cifar100-{teacher}-{student}", ("scratch", "kd", "crd", "dkd"),
                          SEEDS, dataset="cifar100", teacher=teacher, student=student)
        return runs
    raise ValueError(f"Unknown grid {name!r}; choose smoke, methods, claims, robustness or "
                     "cifar100.")


def _dedupe(runs):
    seen, unique = set(), []
    for run in runs:
        if run.run_id not in seen:
            seen.add(run.run_id)
            unique.append(run)
    return unique


SKIPPED = {"stored": "stored result reused",
           "shared": "the same run of another group reused",
           "busy": "another process is running it: skipped"}


def _stored_elsewhere(run, output_dir):
    """The record of the same configuration stored by another group or grid, if any."""
    root = os.path.dirname(output_dir)
    suffix = run.run_id[len(run.group):]  # "--method--seedN--overrides"
    for grid_dir in sorted(os.listdir(root)) if os.path.isdir(root) else ():
        folder = os.path.join(root, grid_dir)
        if not os.path.isdir(folder):
            continue
        for name in sorted(os.listdir(folder)):
            stem = name[:-len(".json")] if name.endswith(".json") else ""
            if "--" in stem and "--" + stem.split("--", 1)[1] == suffix:
                with open(os.path.join(folder, name)) as handle:
                    record = json.load(handle)
                if record.get("extra", {}) == {}:
                    return record, os.path.join(grid_dir, name)
    return None, None


def _claim(path):
    """Marks a run as in progress (so a second grid process skips it); False if taken."""
    lock = path + ".running"
    try:
        descriptor = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        try:
            with open(lock) as handle:
                os.kill(int(handle.read().strip() or 0), 0)
            return False  # its process is alive
        except (ProcessLookupError, ValueError):
            os.remove(lock)  # left by a killed process: take it over
            return _claim(path)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(str(os.getpid()))
    return True


def run_one(run, output_dir, extra):
    """Runs one grid cell, or returns its stored result.

    Returns:
        `(record, status)`, status "ran", "stored", "shared" (the same
        configuration was run by another group or grid and is reused), or
        "busy" (another process is running it; record is None).
    """
    from recipes import distill
    from recipes.common import write_json
    from recipes.config import RunConfig

    path = os.path.join(output_dir, f"{run.run_id}.json")
    if os.path.exists(path):
        with open(path) as handle:
            return json.load(handle), "stored"
    if not extra:
        record, source = _stored_elsewhere(run, output_dir)
        if record is not None:
            record = {**record, "group": run.group, "shared_from": source}
            write_json(path, record)
            return record, "shared"
    if not _claim(path):
        return None, "busy"
    try:
        values = dict(run.overrides)
        values.update(extra)
        config = RunConfig(method=run.method, seed=run.seed, baseline=False,
                           model_dir=os.path.join(output_dir, "runs", run.run_id),
                           # teachers are shared by every grid under the same root
                           teacher_dir=os.path.join(os.path.dirname(output_dir), "teachers"),
                           verbose=2, **values)
        started = time.time()
        results = distill.run(config)
        record = {"group": run.group, "method": run.method, "seed": run.seed,
                  "overrides": dict(run.overrides), "extra": dict(extra),
                  "config": dataclasses.asdict(config.resolve()), "machine": machine(),
                  "seconds": round(time.time() - started, 1), "results": results}
        write_json(path, record)
    finally:
        os.remove(path + ".running")
    return record, "ran"


def machine():
    """A short description of this machine (CPU count, accelerators)."""
    import platform

    import tensorflow as tf

    gpus = len(tf.config.list_physical_devices("GPU"))
    return (f"{os.cpu_count()} CPU cores, {gpus or 'no'} GPU{'s' if gpus != 1 else ''}, "
            f"{platform.machine()}, TF {tf.__version__}")


def summarize(records):
    """Mean/std of best and last accuracy and agreement per (group, method)."""
    table = {}
    for record in records:
        results = record["results"]
        part = results.get("student") or results.get("scratch")
        if part is None:
            continue
        key = (record["group"], record["method"])
        entry = table.setdefault(key, {"best": [], "last": [], "agreement": [], "seeds": []})
        entry["best"].append(part["test_accuracy"]["best"])
        entry["last"].append(part["test_accuracy"]["last"])
        if part.get("agreement_with_teacher") is not None:
            entry["agreement"].append(part["agreement_with_teacher"])
        entry["seeds"].append(record["seed"])
        if "teacher" in results:
            teacher = results["teacher"]["test_accuracy"]
            entry["teacher"] = teacher.get("last") if isinstance(teacher, dict) else teacher
    rows = []
    for (group, method), entry in sorted(table.items()):
        row = {"group": group, "method": method, "n": len(entry["seeds"]),
               "teacher": entry.get("teacher")}
        for name in ("best", "last", "agreement"):
            values = np.array(entry[name], dtype=float)
            row[f"{name}_mean"] = float(values.mean()) if len(values) else None
            row[f"{name}_std"] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
        rows.append(row)
    return rows


def load_records(output_dir):
    records = []
    for name in sorted(os.listdir(output_dir)) if os.path.isdir(output_dir) else []:
        if name.endswith(".json") and name != "aggregate.json":
            with open(os.path.join(output_dir, name)) as handle:
                records.append(json.load(handle))
    return records


def print_rows(rows, file=sys.stdout):
    header = f"{'group':32s} {'method':22s} {'n':>2s} {'best %':>14s} {'last %':>14s} {'agree %':>8s}"
    print(header, file=file)
    print("-" * len(header), file=file)
    for row in rows:
        def pct(name):
            mean, std = row[f"{name}_mean"], row[f"{name}_std"]
            return "-" if mean is None else f"{100 * mean:6.2f} ± {100 * std:4.2f}"
        agreement = "-" if row["agreement_mean"] is None else f"{100 * row['agreement_mean']:7.2f}"
        print(f"{row['group']:32s} {row['method']:22s} {row['n']:2d} {pct('best'):>14s} "
              f"{pct('last'):>14s} {agreement:>8s}", file=file)


FLAGS = flags.FLAGS


def define_flags():
    flags.DEFINE_string("grid", "smoke", "smoke, methods, claims, robustness or cifar100.")
    flags.DEFINE_list("with_methods", [], "robustness grid: methods run besides scratch and "
                      "KD (e.g. dkd,kd_plus).")
    flags.DEFINE_string("output_dir", "benchmarks/results/accuracy", "Where run JSONs go.")
    flags.DEFINE_list("methods", [], "Only these methods (default: the grid's).")
    flags.DEFINE_list("groups", [], "Only these groups.")
    flags.DEFINE_list("seeds", [], "Only these seeds.")
    flags.DEFINE_string("data_dir", None, "Dataset folder (passed to the recipes).")
    flags.DEFINE_integer("epochs", None, "Override the preset's student epochs.")
    flags.DEFINE_bool("dry_run", False, "List the runs (and which are done) and exit.")
    flags.DEFINE_integer("jobs", 1, "Worker processes working through the grid together "
                         "(each claims a run with a lock file). On a CPU machine each gets "
                         "cores / jobs threads; 2 on 2 cores finishes small runs sooner than 1.")


def worker_commands(argv, jobs, cores=None):
    """`(command, environment)` of each of `jobs` workers running this command with --jobs=1."""
    cores = cores or os.cpu_count() or 1
    threads = str(max(1, cores // jobs))
    arguments, skip = [], False
    for argument in argv[1:]:
        if skip:
            skip = False
        elif argument in ("--jobs", "-jobs"):
            skip = True  # "--jobs N": drop its value too
        elif not argument.lstrip("-").startswith("jobs="):
            arguments.append(argument)
    environment = dict(os.environ, TF_NUM_INTRAOP_THREADS=threads, TF_NUM_INTEROP_THREADS="1",
                       OMP_NUM_THREADS=threads)
    command = [sys.executable, "-m", "benchmarks.accuracy", *arguments, "--jobs=1"]
    return [(command, environment) for _ in range(jobs)]


def run_workers(argv, jobs):
    """Starts the workers, waits for all of them; returns the worst exit code."""
    import subprocess

    workers = [subprocess.Popen(command, env=environment)
               for command, environment in worker_commands(argv, jobs)]
    return max(worker.wait() for worker in workers)


def main(argv):
    del argv
    runs = grid(FLAGS.grid, with_methods=FLAGS.with_methods)
    if FLAGS.methods:
        runs = [r for r in runs if r.method in FLAGS.methods]
    if FLAGS.groups:
        runs = [r for r in runs if r.group in FLAGS.groups]
    if FLAGS.seeds:
        runs = [r for r in runs if str(r.seed) in FLAGS.seeds]
    extra = {}
    if FLAGS.data_dir:
        extra["data_dir"] = FLAGS.data_dir
    if FLAGS.epochs:
        extra["epochs"] = FLAGS.epochs
    output_dir = os.path.join(FLAGS.output_dir, FLAGS.grid)
    os.makedirs(output_dir, exist_ok=True)
    if FLAGS.dry_run:
        for run in runs:
            done = os.path.exists(os.path.join(output_dir, f"{run.run_id}.json"))
            print(("done  " if done else "todo  ") + run.run_id)
        return
    if FLAGS.jobs > 1:
        code = run_workers(sys.argv, FLAGS.jobs)
        if code:
            sys.exit(f"a worker failed (exit code {code}); rerun the same command to resume.")
        runs = []  # the workers ran them: aggregate below
    for number, run in enumerate(runs, 1):
        print(f"[{number}/{len(runs)}] {run.run_id}", flush=True)
        _, status = run_one(run, output_dir, extra)
        if status != "ran":
            print(f"  ({SKIPPED[status]})")
    rows = summarize(load_records(output_dir))
    from recipes.common import write_json

    write_json(os.path.join(output_dir, "aggregate.json"), rows)
    print()
    print_rows(rows)


if __name__ == "__main__":
    define_flags()
    app.run(main)
