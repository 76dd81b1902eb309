"""Writes docs/results.md and its plots from the accuracy benchmark's run JSONs.

    python -m benchmarks.report                 # reads benchmarks/results/accuracy/<grid>/
    python -m benchmarks.report --results_dir=/tmp/acc --output=/tmp/results.md

Reads every `<results_dir>/<grid>/<run id>.json` written by
`benchmarks/accuracy.py` (`{"group", "method", "seed", "overrides", "seconds",
"results"}`, "results" being what `recipes.distill.run` returns) and writes
one Markdown page with a table, a plot (matplotlib, Agg canvas) and, for each
of the papers' claims, a verdict computed from the numbers by one rule,
stated on the page:

    A difference between two methods is written `d ± s`, with `d` the
    difference of the mean last-epoch test accuracies over seeds and `s` the
    larger of the two sample standard deviations; it counts when `|d| > s`
    and both sides have at least 2 seeds, otherwise it is within noise
    (or inconclusive).

Runs the grids expect but the folder lacks are listed as missing with the
benchmark command that produces them: the page never shows a number that no
run produced. The Fashion-MNIST group `fmnist` is in both the `methods` and
the `claims` grid with the same configuration: a section whose own grid lacks
a run takes the other grid's run of the same run id (same group, method,
seed and overrides), and says so.

Per-class test accuracy (claim 4, TLLM) comes from the run JSON when the
recipe recorded it (`results["student" | "scratch"]["per_class_test_accuracy"]`),
else from the run's saved student (`<grid>/runs/<run id>/student.keras`,
evaluated on the test split its `config.json` describes, cached under
`<grid>/per_class/`) unless `--noevaluate_students`.
"""

from __future__ import annotations

import dataclasses
import datetime
import glob
import json
import os
import platform
import shutil
import sys

import numpy as np
from absl import app, flags

from benchmarks import accuracy

# CIFAR-100 top-1 % reported by the CRD (Tian et al. 2020) and DKD (Zhao et al. 2022) papers:
# teacher, student (scratch), KD, CRD, DKD.
REFERENCE = {
    ("resnet56", "resnet20"): (72.34, 69.06, 70.66, 71.16, 71.97),
    ("resnet110", "resnet32"): (74.31, 71.14, 73.08, 73.48, 74.11),
    ("resnet32x4", "resnet8x4"): (79.42, 72.50, 73.33, 75.51, 76.32),
    ("wrn_40_2", "wrn_16_2"): (75.61, 73.26, 74.92, 75.48, 76.23),
    ("vgg13", "vgg8"): (74.64, 70.36, 72.98, 73.94, 74.68),
}
REFERENCE_COLUMNS = ("teacher", "student", "KD", "CRD", "DKD")
CIFAR_METHODS = ("scratch", "kd", "crd", "dkd")
CAPACITY = ("fmnist_student_small", "fmnist_student", "fmnist_student_wide")
TEACHERS = accuracy.DPK_TEACHERS
TANG = ("scratch", "kd", "tang_label_smoothing", "tang_reweight", "tang_partial", "tang_top_k")
TANG_FACTORS = {
    "scratch": "none (labels only)",
    "kd": "1 + 2 + 3 (the teacher's full distribution)",
    "tang_label_smoothing": "1: label smoothing",
    "tang_reweight": "2: re-weighting by the teacher's p_y",
    "tang_partial": "1 + 2 (KD-pt: no class prior)",
    "tang_top_k": "1 + 2 + top-k part of 3",
}
NOISE_RATES = (0.2, 0.4, 0.6)
IMBALANCE_RATIOS = (10.0, 100.0)
CLAIMS = {1: "KD+", 2: "Tang et al.", 3: "DPK", 4: "TLLM", 5: "KD beyond compression"}
PLOTS = ("methods.png", "claim1_kd_plus.png", "claim2_tang.png", "claim3_dpk.png",
         "claim4_tllm_per_class.png", "claim5_noise_imbalance.png", "cifar100.png")
RULE = ("A difference between two methods is written `d ± s`: `d` is the difference of their "
        "mean last-epoch test accuracies over seeds (points), `s` the larger of their two sample "
        "standard deviations (n - 1). It **counts** when `|d| > s` and both have at least 2 "
        "seeds; otherwise it is *within noise*. Verdicts use the last epoch, not the best: the "
        "best epoch is picked on the test set, so it is optimistic.")


# ------------------------------------------------------------------ numbers
@dataclasses.dataclass
class Stat:
    """Values over seeds (fractions in [0, 1])."""

    values: list

    @property
    def n(self):
        return len(self.values)

    @property
    def mean(self):
        return float(np.mean(self.values)) if self.values else None

    @property
    def std(self):
        return float(np.std(self.values, ddof=1)) if self.n > 1 else 0.0


@dataclasses.dataclass
class Diff:
    """`a - b` under the page's rule."""

    d: float
    s: float
    enough: bool

    @property
    def counts(self):
        return self.enough and abs(self.d) > self.s

    @property
    def higher(self):
        return self.counts and self.d > 0

    @property
    def lower(self):
        return self.counts and self.d < 0

    def text(self):
        return f"{100 * self.d:+.2f} ± {100 * self.s:.2f}"

    def cell(self):
        """The difference, bold when it counts."""
        return f"**{self.text()}**" if self.counts else self.text()


def diff(a, b):
    """`a - b` (two `Stat`s), or None when either is empty."""
    if not a.n or not b.n:
        return None
    return Diff(a.mean - b.mean, max(a.std, b.std), a.n >= 2 and b.n >= 2)


def pct(value):
    if isinstance(value, dict):  # older run JSONs stored the teacher's training summary
        value = value.get("last")
    return "–" if value is None else f"{100 * value:.2f}"


def mean_std(stat):
    if stat is None or not stat.n:
        return "pending"
    if stat.n == 1:
        return f"{pct(stat.mean)} (1 seed)"
    return f"{pct(stat.mean)} ± {pct(stat.std)}"


def _part(record):
    results = record.get("results") or {}
    return results.get("student") or results.get("scratch")


def accuracy_of(record, metric="last"):
    part = _part(record)
    return None if part is None else part["test_accuracy"][metric]


def teacher_of(record):
    teacher = (record.get("results") or {}).get("teacher")
    return None if not teacher else teacher


# ------------------------------------------------------------------ loading
def load_results(results_dir):
    """`{grid: {run id: record}}` for every grid folder holding run JSONs."""
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
    part = _part(record)
    per_epoch = part["test_accuracy"].get("per_epoch") if part else None
    return (len(per_epoch), False) if per_epoch else (None, False)


def preset_epochs(dataset):
    from recipes.config import CIFAR_PRESET, PRESETS

    return PRESETS.get(dataset, CIFAR_PRESET)["epochs"]


class Section:
    """The expected runs of one table, the records found for them, and their commands."""

    def __init__(self, grids, grid, groups, methods=None, fallback=()):
        self.grid = grid
        self.groups = list(groups)
        self.expected = [r for r in accuracy.grid(grid) if r.group in self.groups
                         and (methods is None or r.method in methods)]
        self.methods = list(dict.fromkeys(r.method for r in self.expected))
        self.found, self.borrowed, self.missing = {}, [], []
        for run in self.expected:
            record = grids.get(grid, {}).get(run.run_id)
            if record is not None and record.get("_source_grid"):
                self.borrowed.append((run, record["_source_grid"]))
            if record is None:
                for other in fallback:
                    record = grids.get(other, {}).get(run.run_id)
                    if record is not None:
                        self.borrowed.append((run, other))
                        break
            if record is None:
                self.missing.append(run)
            else:
                self.found[run.run_id] = record

    def records(self, group, method):
        return [self.found[r.run_id] for r in self.expected
                if r.group == group and r.method == method and r.run_id in self.found]

    def stat(self, group, method, metric="last"):
        return Stat([accuracy_of(rec, metric) for rec in self.records(group, method)])

    def teacher(self, group):
        for record in self.found.values():
            if record["group"] == group and teacher_of(record):
                return teacher_of(record)
        return None

    def command(self, runs=None):
        """The benchmark command that produces (or resumes) `runs` (default: all expected)."""
        runs = self.expected if runs is None else runs
        grid_runs = accuracy.grid(self.grid)
        groups = [g for g in self.groups if any(r.group == g for r in runs)]
        in_groups = [r for r in grid_runs if r.group in groups]
        methods = [m for m in self.methods if any(r.method == m for r in runs)]
        seeds = sorted({r.seed for r in runs})
        parts = [f"python -m benchmarks.accuracy --grid={self.grid}"]
        if set(groups) != {r.group for r in grid_runs}:
            parts.append(f"--groups={','.join(groups)}")
        if set(methods) != {r.method for r in in_groups}:
            parts.append(f"--methods={','.join(methods)}")
        if set(seeds) != {r.seed for r in in_groups}:
            parts.append(f"--seeds={','.join(str(s) for s in seeds)}")
        epochs = {epochs_of(r) for r in self.found.values()}
        if len(epochs) == 1:
            (value, recorded), = epochs
            if recorded and value != self.preset_epochs():
                parts.append(f"--epochs={value}")
        return " ".join(parts)

    def preset_epochs(self):
        dataset = dict(self.expected[0].overrides).get("dataset") if self.expected else None
        return preset_epochs(dataset) if dataset else None

    def provenance(self):
        """Bullets: where the runs come from, how long they trained, what is missing."""
        if not self.found:
            return [f"- **Pending:** none of the {len(self.expected)} runs exist yet. Produce "
                    f"them with `{self.command()}`."]
        lines = [f"- Runs: {len(self.found)} of {len(self.expected)}, from "
                 f"`{self.command()}`."]
        found = [epochs_of(r) for r in self.found.values()]
        epochs = sorted({e for e, _ in found if e})
        if epochs:
            notes = []
            if len(epochs) > 1:
                notes.append("runs trained for different lengths: compare with care")
            if not all(recorded for _, recorded in found):
                notes.append("counted from the per-epoch test history, as the runs record "
                             "no config; a resumed run's history is shorter")
            if self.preset_epochs() and epochs != [self.preset_epochs()]:
                notes.append(f"the preset trains {self.preset_epochs()}")
            note = f" ({'; '.join(notes)})" if notes else ""
            lines.append(f"- Student epochs: {', '.join(map(str, epochs))}{note}.")
        machines = sorted({str(r["machine"]) for r in self.found.values() if r.get("machine")})
        if machines:
            lines.append(f"- Machine(s): {'; '.join(machines)}.")
        if self.borrowed:
            places = [f"other groups of the {g} grid" if g == self.grid else f"the {g} grid"
                      for g in sorted({g for _, g in self.borrowed})]
            lines.append(f"- {len(self.borrowed)} of these runs are identical runs reused from "
                         f"{' and '.join(places)} (same method, seed and overrides).")
        if self.missing:
            lines.append(f"- **Missing: {len(self.missing)} run(s)** "
                         f"({describe_runs(self.missing)}). Produce them with "
                         f"`{self.command(self.missing)}`.")
        return lines

    @property
    def empty(self):
        return not self.found


def describe_runs(runs, limit=6):
    cells = {}
    for run in runs:
        cells.setdefault((run.group, run.method), []).append(run.seed)
    texts = [f"{g}/{m} seed{'s' if len(s) > 1 else ''} {','.join(map(str, s))}"
             for (g, m), s in cells.items()]
    if len(texts) > limit:
        texts = texts[:limit] + [f"... {len(texts) - limit} more"]
    return "; ".join(texts)


def table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines


# -------------------------------------------------------------------- plots
def _figure(width=7.0, height=3.8, panels=1):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height))
    FigureCanvasAgg(figure)
    axes = [figure.add_subplot(1, panels, i + 1) for i in range(panels)]
    return figure, axes


def _save(figure, path):
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    return path


def _errorbar(axis, xs, stats, label, **kwargs):
    points = [(x, s) for x, s in zip(xs, stats) if s is not None and s.n]
    if points:
        axis.errorbar([x for x, _ in points], [100 * s.mean for _, s in points],
                      yerr=[100 * s.std for _, s in points], marker="o", capsize=3,
                      label=label, **kwargs)


def _params_axis(axis, params):
    """Log x axis whose ticks are exactly the given parameter counts (e.g. 220k, 1.2M)."""
    from matplotlib.ticker import NullLocator

    def short(n):
        return f"{n / 1e6:.3g}M" if n >= 1e6 else f"{n / 1e3:.3g}k" if n >= 1e3 else str(n)

    axis.set_xscale("log")
    axis.xaxis.set_minor_locator(NullLocator())
    axis.set_xticks(list(params), [short(p) for p in params])


# ------------------------------------------------------------------ report
class Report:
    """Builds the page section by section."""

    def __init__(self, grids, plots_dir, page_dir, evaluate_students=True):
        self.grids = grids
        self.plots_dir = plots_dir
        self.page_dir = page_dir
        self.evaluate_students = evaluate_students
        self.verdicts = []
        self.notes = []  # what the data lacked (said on the page and in the log)
        self.sections = []

    def section(self, title, grid, groups, methods=None, fallback=()):
        section = Section(self.grids, grid, groups, methods, fallback)
        self.sections.append((title, section))
        return section

    def missing_runs(self):
        out = ["## Missing runs", ""]
        rows = [[title, f"{len(s.missing)} of {len(s.expected)}", f"`{s.command(s.missing)}`"]
                for title, s in self.sections if s.missing]
        if not rows:
            return out + ["None: every run the tables expect is here.", ""]
        out.append("Each command runs only the runs whose JSON is missing (finished runs are "
                   "skipped, an interrupted one resumes):")
        out.append("")
        return out + table(["section", "missing", "command"], rows) + [""]

    def image(self, name, figure):
        os.makedirs(self.plots_dir, exist_ok=True)
        path = _save(figure, os.path.join(self.plots_dir, name))
        relative = os.path.relpath(path, self.page_dir).replace(os.sep, "/")
        return f"![{name}]({relative})"

    def verdict(self, claim, text, section=None):
        if section is not None and section.missing and section.found:
            text += (f" Incomplete: {len(section.missing)} of {len(section.expected)} runs are "
                     "missing.")
        self.verdicts.append((claim, text))
        return f"**Verdict:** {text}"

    # ---------------------------------------------------------- all methods
    def all_methods(self):
        out = ["## All methods (Fashion-MNIST, grid `methods`)", ""]
        section = self.section("All methods", "methods", ["fmnist"], fallback=("claims",))
        teacher = section.teacher("fmnist")
        out.append("Every method of the grid trains `fmnist_student_small` (from `fmnist_teacher_small` "
                   "where it uses a teacher; 3 seeds each). Accuracy is top-1 on the "
                   "Fashion-MNIST test set, in %; `best` is the best epoch (picked on the test "
                   "set: optimistic), `last` the final epoch; agreement is top-1 agreement with "
                   "the teacher on the test set.")
        out.append("")
        out += section.provenance()
        out.append("")
        if teacher:
            out.append(f"Teacher `{teacher.get('name')}`: {pct(teacher['test_accuracy'])} % "
                       f"({teacher.get('params')} parameters).")
            out.append("")
        scratch = section.stat("fmnist", "scratch")
        kd = section.stat("fmnist", "kd")
        rows, plotted, versus_kd = [], [], {"above": [], "within noise of": [], "below": []}
        for method in section.methods:
            records = section.records("fmnist", method)
            last = section.stat("fmnist", method)
            best = section.stat("fmnist", method, "best")
            agreement = [_part(r).get("agreement_with_teacher") for r in records]
            agreement = Stat([a for a in agreement if a is not None])
            gain = diff(last, scratch) if method != "scratch" else None
            over_kd = diff(last, kd) if method not in ("scratch", "kd") else None
            if over_kd is not None and over_kd.enough:
                key = "above" if over_kd.higher else "below" if over_kd.lower \
                    else "within noise of"
                versus_kd[key].append(f"`{method}`")
            rows.append([f"`{method}`", last.n, mean_std(best), mean_std(last),
                         pct(agreement.mean) if agreement.n else "–",
                         gain.cell() if gain else "–", over_kd.cell() if over_kd else "–"])
            if last.n:
                plotted.append((method, last))
        out += table(["method", "n seeds", "best % (mean ± std)", "last % (mean ± std)",
                      "agreement %", "gain over scratch (last, points)",
                      "vs KD (last, points)"], rows)
        out.append("")
        out.append("Differences in **bold** count under the rule above.")
        compared = [f"{', '.join(names)} {'are' if len(names) > 1 else 'is'} {key} KD"
                    for key, names in versus_kd.items() if names]
        if compared:
            out += ["", "Against KD, with at least 2 seeds each: " + "; ".join(compared) + ". "
                    "Why a method does or does not beat KD here is discussed on its page "
                    "under [methods/](methods/)."]
        if plotted:
            figure, (axis,) = _figure(width=max(6.0, 0.45 * len(plotted) + 2.0))
            names = [m for m, _ in plotted]
            means = [100 * s.mean for _, s in plotted]
            axis.bar(range(len(plotted)), means, yerr=[100 * s.std for _, s in plotted],
                     capsize=3, color=["tab:gray" if m == "scratch" else "tab:blue"
                                       for m in names])
            if teacher:
                axis.axhline(100 * teacher["test_accuracy"], color="black", linestyle="--",
                             linewidth=1, label="teacher")
            if scratch.n:
                axis.axhline(100 * scratch.mean, color="tab:gray", linestyle=":", linewidth=1,
                             label="scratch")
            low = min(m - 100 * s.std for m, (_, s) in zip(means, plotted))
            high = max(m + 100 * s.std for m, (_, s) in zip(means, plotted))
            if teacher:
                high = max(high, 100 * teacher["test_accuracy"])
            axis.set_ylim(low - 1.0, high + 1.0)
            axis.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=8)
            axis.set_ylabel("last-epoch test accuracy (%)")
            axis.set_title("Fashion-MNIST: every method (mean ± std over seeds)")
            axis.legend(fontsize=8)
            out += ["", self.image("methods.png", figure)]
        return out + [""]

    # -------------------------------------------------------------- claim 1
    def claim_kd_plus(self):
        out = ["## Claim 1 — KD+: a large enough student matches its teacher when it distils "
               "beyond the training points", ""]
        out.append("Paper: the student/teacher gap is mostly not capacity; distilling on mixup "
                   "inputs between training points (KD+) lets a student above some capacity "
                   "match or beat its teacher. Here: scratch / KD / KD+ at three student widths, "
                   "one teacher (`fmnist_teacher_small`). *Matches the teacher* means "
                   "`mean + std >= teacher accuracy` (the teacher is one run).")
        out.append("")
        groups = [f"capacity-{s}" for s in CAPACITY]
        section = self.section("Claim 1 (KD+)", "claims", groups)
        out += section.provenance()
        out.append("")
        if section.empty:
            return out + [self.verdict(1, "pending: no runs yet."), ""]
        rows, widths = [], []
        for student, group in zip(CAPACITY, groups):
            teacher = section.teacher(group)
            stats = {m: section.stat(group, m) for m in ("scratch", "kd", "kd_plus")}
            params = next((_part(r)["params"] for m in stats for r in section.records(group, m)),
                          None)
            vs_kd = diff(stats["kd_plus"], stats["kd"])
            t_acc = teacher["test_accuracy"] if teacher else None
            widths.append(dict(student=student, params=params, teacher=t_acc, vs_kd=vs_kd,
                               **stats))
            vs_teacher = "–"
            if t_acc is not None and stats["kd_plus"].n:
                vs_teacher = f"{100 * (stats['kd_plus'].mean - t_acc):+.2f}"
            rows.append([f"`{student}`", params or "–", pct(t_acc), mean_std(stats["scratch"]),
                         mean_std(stats["kd"]), mean_std(stats["kd_plus"]),
                         vs_kd.cell() if vs_kd else "–", vs_teacher])
        out += table(["student", "params", "teacher %", "scratch %", "KD %", "KD+ %",
                      "KD+ − KD", "KD+ − teacher"], rows)
        out.append("")
        out.append(self.verdict(1, kd_plus_verdict(widths), section))
        plotted = [w for w in widths if w["params"]]
        if plotted:
            figure, (axis,) = _figure()
            xs = [w["params"] for w in plotted]
            for method, label in (("scratch", "scratch"), ("kd", "KD"), ("kd_plus", "KD+")):
                _errorbar(axis, xs, [w[method] for w in plotted], label)
            teachers = [w["teacher"] for w in plotted if w["teacher"] is not None]
            if teachers:
                axis.axhline(100 * teachers[0], color="black", linestyle="--", linewidth=1,
                             label="teacher")
            _params_axis(axis, xs)
            axis.set_xlabel("student parameters")
            axis.set_ylabel("last-epoch test accuracy (%)")
            axis.set_title("KD+ vs student capacity")
            axis.legend(fontsize=8)
            out += ["", self.image("claim1_kd_plus.png", figure)]
        return out + [""]

    # -------------------------------------------------------------- claim 2
    def claim_tang(self):
        out = ["## Claim 2 — Tang et al.: what explains KD's gain", ""]
        out.append("Paper: the teacher's distribution gives the student (1) label smoothing, "
                   "(2) per-example re-weighting by the teacher's confidence `p_y`, and (3) a "
                   "class-relationship prior; KD-pt keeps 1 and 2 and drops 3. Here: each "
                   "variant's gain over scratch, and its share of KD's gain.")
        out.append("")
        section = self.section("Claim 2 (Tang et al.)", "claims", ["fmnist"], methods=TANG,
                               fallback=("methods",))
        out += section.provenance()
        out.append("")
        if section.empty:
            return out + [self.verdict(2, "pending: no runs yet."), ""]
        stats = {m: section.stat("fmnist", m) for m in TANG}
        kd_gain = diff(stats["kd"], stats["scratch"])
        rows = []
        for method in TANG:
            gain = diff(stats[method], stats["scratch"]) if method != "scratch" else None
            share = "–"
            if gain and kd_gain and kd_gain.d:
                share = f"{100 * gain.d / kd_gain.d:.0f} %"
            vs_kd = diff(stats[method], stats["kd"]) if method not in ("kd", "scratch") else None
            rows.append([f"`{method}`", TANG_FACTORS[method], stats[method].n,
                         mean_std(stats[method]), gain.cell() if gain else "–", share,
                         vs_kd.cell() if vs_kd else "–"])
        out += table(["method", "factors kept", "n", "last %", "gain over scratch",
                      "share of KD's gain", "− KD"], rows)
        out.append("")
        out.append(self.verdict(2, tang_verdict(stats), section))
        plotted = [(m, stats[m]) for m in TANG if stats[m].n]
        if plotted:
            figure, (axis,) = _figure()
            means = [100 * s.mean for _, s in plotted]
            axis.bar(range(len(plotted)), means, yerr=[100 * s.std for _, s in plotted],
                     capsize=3, color="tab:blue")
            low = min(m - 100 * s.std for m, (_, s) in zip(means, plotted))
            high = max(m + 100 * s.std for m, (_, s) in zip(means, plotted))
            axis.set_ylim(low - 1.0, high + 1.0)
            axis.set_xticks(range(len(plotted)), [m for m, _ in plotted], rotation=30,
                            ha="right", fontsize=8)
            axis.set_ylabel("last-epoch test accuracy (%)")
            axis.set_title("Tang et al. ablation (mean ± std over seeds)")
            out += ["", self.image("claim2_tang.png", figure)]
        return out + [""]

    # -------------------------------------------------------------- claim 3
    def claim_dpk(self):
        out = ["## Claim 3 — DPK: the student keeps improving with a better teacher", ""]
        out.append("Paper: with KD the student's accuracy saturates as the teacher grows; with "
                   "DPK (teacher features as prior knowledge) it keeps rising. Here: one student "
                   f"(`fmnist_student_small`), {len(TEACHERS)} teacher sizes, KD vs DPK (a "
                   "verdict needs three measured). *Rises* means the largest measured teacher's "
                   "student beats the smallest one's under the rule; *saturates* means the step "
                   "between the two largest measured teachers does not count as a gain.")
        out.append("")
        groups = [f"teacher-{t}" for t in TEACHERS]
        section = self.section("Claim 3 (DPK)", "claims", groups)
        out += section.provenance()
        out.append("")
        if section.empty:
            return out + [self.verdict(3, "pending: no runs yet."), ""]
        points = []
        for name, group in zip(TEACHERS, groups):
            teacher = section.teacher(group)
            points.append(dict(teacher=name, params=teacher.get("params") if teacher else None,
                               accuracy=teacher["test_accuracy"] if teacher else None,
                               kd=section.stat(group, "kd"), dpk=section.stat(group, "dpk")))
        points.sort(key=lambda p: (p["params"] is None, p["params"] or 0))
        rows = []
        for p in points:
            d = diff(p["dpk"], p["kd"])
            rows.append([f"`{p['teacher']}`", p["params"] or "–", pct(p["accuracy"]),
                         mean_std(p["kd"]), mean_std(p["dpk"]), d.cell() if d else "–"])
        out += table(["teacher", "teacher params", "teacher %", "KD student %",
                      "DPK student %", "DPK − KD"], rows)
        out.append("")
        out.append(self.verdict(3, dpk_verdict(points), section))
        plotted = [p for p in points if p["params"]]
        if plotted:
            figure, axes = _figure(width=9.0, panels=2)
            for axis, key, label in ((axes[0], "params", "teacher parameters"),
                                     (axes[1], "accuracy", "teacher test accuracy (%)")):
                xs = [p[key] if key == "params" else 100 * p[key] for p in plotted]
                _errorbar(axis, xs, [p["kd"] for p in plotted], "KD")
                _errorbar(axis, xs, [p["dpk"] for p in plotted], "DPK")
                if key == "params":
                    _params_axis(axis, xs)
                axis.set_xlabel(label)
                axis.set_ylabel("student last-epoch test accuracy (%)")
                axis.legend(fontsize=8)
            figure.suptitle("Student accuracy vs teacher (fmnist_student_small)")
            out += ["", self.image("claim3_dpk.png", figure)]
        return out + [""]

    # -------------------------------------------------------------- claim 4
    def per_class(self, record):
        """Per-class test accuracy of a run's student, or None (see the module docstring)."""
        part = _part(record) or {}
        value = part.get("per_class_test_accuracy")
        if value is not None:
            return [np.nan if v is None else float(v) for v in value]
        folder, run_id = record["_folder"], record["_run_id"]
        cache = os.path.join(folder, "per_class", f"{run_id}.json")
        if os.path.exists(cache):
            with open(cache) as handle:
                return [np.nan if v is None else v for v in json.load(handle)["per_class"]]
        run_dir = os.path.join(folder, "runs", run_id)
        if not (self.evaluate_students and os.path.exists(os.path.join(run_dir, "student.keras"))
                and os.path.exists(os.path.join(run_dir, "config.json"))):
            return None
        values = evaluate_saved_student(run_dir)
        from recipes.common import write_json

        write_json(cache, {"per_class": [None if np.isnan(v) else v for v in values],
                           "source": os.path.join(run_dir, "student.keras")})
        return values

    def claim_tllm(self):
        out = ["## Claim 4 — TLLM: undistillable classes exist, and not distilling them helps",
               ""]
        out.append("Paper: KD raises overall accuracy but makes the student worse than a "
                   "scratch student on some classes (undistillable classes); TLLM finds them "
                   "on held-out data and stops distilling them, which improves them without "
                   "losing overall accuracy. Here: per-class test accuracy of scratch, KD and "
                   "TLLM students. Class `k` counts as undistillable when KD − scratch on `k` "
                   "is negative and counts under the rule (per-class mean and std over seeds). "
                   "The set is chosen from the same runs it is then measured on.")
        out.append("")
        section = self.section("Claim 4 (TLLM)", "claims", ["fmnist"],
                               methods=("scratch", "kd", "tllm"), fallback=("methods",))
        out += section.provenance()
        out.append("")
        if section.empty:
            return out + [self.verdict(4, "pending: no runs yet."), ""]
        stats = {m: section.stat("fmnist", m) for m in ("scratch", "kd", "tllm")}
        rows = []
        for method in ("scratch", "kd", "tllm"):
            gain = diff(stats[method], stats["scratch"]) if method != "scratch" else None
            rows.append([f"`{method}`", stats[method].n, mean_std(stats[method]),
                         gain.cell() if gain else "–"])
        out += table(["method", "n", "last %", "gain over scratch"], rows)
        out.append("")
        per_class, lacking = {}, []
        for method in ("scratch", "kd", "tllm"):
            arrays = []
            for record in section.records("fmnist", method):
                values = self.per_class(record)
                if values is None:
                    lacking.append(record["_run_id"])
                else:
                    arrays.append(values)
            per_class[method] = np.asarray(arrays, dtype="float64") if arrays else None
        if lacking:
            note = (f"Per-class test accuracy is not recorded for {len(lacking)} run(s) "
                    f"({', '.join(lacking[:4])}{' ...' if len(lacking) > 4 else ''}): the run "
                    "JSON has no `per_class_test_accuracy` and the run folder has no "
                    "`student.keras` + `config.json` to evaluate.")
            self.notes.append(note)
            out += [note, ""]
        names = None
        for record in section.found.values():
            names = (record["results"].get("dataset") or {}).get("class_names") or names
        out += self._tllm_sets(section)
        if per_class["scratch"] is None or per_class["kd"] is None:
            text = ("inconclusive: per-class test accuracy of the scratch and KD students is "
                    "missing, so undistillable classes cannot be measured"
                    + (f"; overall, {tllm_overall_text(stats)}" if stats["tllm"].n else "")
                    + ".")
            return out + [self.verdict(4, text, section), ""]
        classes = per_class["kd"].shape[1]
        names = list(names) if names and len(names) == classes else [str(k) for k in
                                                                     range(classes)]
        cls = {m: [Stat(list(a[:, k][~np.isnan(a[:, k])])) if a is not None else Stat([])
                   for k in range(classes)] for m, a in per_class.items()}
        gains = [diff(cls["kd"][k], cls["scratch"][k]) for k in range(classes)]
        tllm_vs_kd = [diff(cls["tllm"][k], cls["kd"][k]) for k in range(classes)]
        undistillable = [k for k, g in enumerate(gains) if g is not None and g.lower]
        rows = []
        for k in range(classes):
            rows.append([f"{k} {names[k]}" if names[k] != str(k) else str(k),
                         mean_std(cls["scratch"][k]), mean_std(cls["kd"][k]),
                         gains[k].cell() if gains[k] else "–", mean_std(cls["tllm"][k]),
                         tllm_vs_kd[k].cell() if tllm_vs_kd[k] else "–",
                         "yes" if k in undistillable else ""])
        out += table(["class", "scratch %", "KD %", "KD − scratch", "TLLM %", "TLLM − KD",
                      "undistillable"], rows)
        out.append("")
        subset = None
        if undistillable and per_class["tllm"] is not None:
            subset = {m: Stat([float(np.nanmean(row[undistillable])) for row in per_class[m]])
                      for m in ("kd", "tllm")}
            out.append(f"Mean accuracy on the undistillable classes: KD "
                       f"{mean_std(subset['kd'])}, TLLM {mean_std(subset['tllm'])}.")
            out.append("")
        out.append(self.verdict(4, tllm_verdict(undistillable, names, gains, subset, stats),
                                section))
        figure, (axis,) = _figure(width=max(7.0, 0.5 * classes + 2.0))
        positions = np.arange(classes)
        for offset, method, color in ((-0.2, "kd", "tab:blue"), (0.2, "tllm", "tab:orange")):
            values = [diff(cls[method][k], cls["scratch"][k]) for k in range(classes)]
            if all(v is None for v in values):
                continue
            axis.bar(positions + offset, [100 * v.d if v else 0.0 for v in values], width=0.4,
                     yerr=[100 * v.s if v else 0.0 for v in values], capsize=2, color=color,
                     label=f"{'KD' if method == 'kd' else 'TLLM'} − scratch")
        axis.axhline(0.0, color="black", linewidth=0.8)
        axis.set_xticks(positions, names, rotation=45, ha="right", fontsize=8)
        for k in undistillable:
            axis.get_xticklabels()[k].set_color("tab:red")
        axis.set_ylabel("per-class accuracy gain (points)")
        axis.set_title("Per-class gain over scratch (undistillable classes in red)")
        axis.legend(fontsize=8)
        return out + ["", self.image("claim4_tllm_per_class.png", figure), ""]

    def _tllm_sets(self, section):
        """The classes TLLM's callback masked, from its report JSON (when the runs wrote one)."""
        lines = []
        for record in section.records("fmnist", "tllm"):
            pattern = os.path.join(record["_folder"], "runs", record["_run_id"], "**",
                                   "undistillable_classes.json")
            for path in sorted(glob.glob(pattern, recursive=True))[:1]:
                with open(path) as handle:
                    report = json.load(handle)
                lines.append(f"- seed {record['seed']}: TLLM masked classes "
                             f"{report.get('undistillable')} (its own choice, on validation "
                             "data).")
        if lines:
            return ["The classes TLLM's callback masked at the end of training:", ""] + \
                lines + [""]
        if section.records("fmnist", "tllm"):
            note = ("No TLLM run folder (`<grid>/runs/<run id>/`) holds the callback's "
                    "`undistillable_classes.json`, so the set TLLM chose is not shown.")
            self.notes.append(note)
            return [note, ""]
        return []

    # -------------------------------------------------------------- claim 5
    def claim_beyond(self):
        out = ["## Claim 5 — KD beyond compression: label noise and class imbalance", ""]
        out.append("Sarfraz et al.: KD also helps when the training labels are noisy "
                   "(symmetric noise) or the classes are long-tailed. Here: KD's gain over "
                   "scratch (teacher and students trained on the same corrupted training set; "
                   "clean test set).")
        out.append("")
        groups = [f"noise-{r:g}" for r in NOISE_RATES] + \
            [f"imbalance-{r:g}" for r in IMBALANCE_RATIOS]
        section = self.section("Claim 5 (noise, imbalance)", "claims", groups)
        clean = Section(self.grids, "claims", ["fmnist"], methods=("scratch", "kd"),
                        fallback=("methods",))
        out += section.provenance()
        out.append("")
        if section.empty:
            return out + [self.verdict(5, "pending: no runs yet."), ""]
        conditions = [("clean", "fmnist", clean, 0.0)]
        conditions += [(f"symmetric noise {r:g}", f"noise-{r:g}", section, r) for r in NOISE_RATES]
        conditions += [(f"imbalance ratio {r:g}", f"imbalance-{r:g}", section, r)
                       for r in IMBALANCE_RATIOS]
        rows, results = [], []
        for label, group, source, level in conditions:
            scratch, kd = source.stat(group, "scratch"), source.stat(group, "kd")
            gain = diff(kd, scratch)
            teacher = source.teacher(group)
            results.append(dict(label=label, group=group, level=level, gain=gain))
            rows.append([label, pct(teacher["test_accuracy"]) if teacher else "–",
                         mean_std(scratch), mean_std(kd), gain.cell() if gain else "–"])
        out += table(["training set", "teacher %", "scratch %", "KD %", "KD − scratch"], rows)
        out.append("")
        out.append("The clean row is group `fmnist` (claims grid, else the methods grid) for "
                   "reference; the verdict reads the five corrupted conditions.")
        out.append("")
        out.append(self.verdict(5, beyond_verdict(results[1:]), section))
        figure, axes = _figure(width=9.0, panels=2)
        for axis, prefix, xlabel, log in ((axes[0], "noise", "symmetric label noise rate", False),
                                          (axes[1], "imbalance", "imbalance ratio", True)):
            chosen = [r for r in results if r["gain"] is not None and
                      (r["group"].startswith(prefix) or r["group"] == "fmnist")]
            xs = [r["level"] if r["group"] != "fmnist" else (1.0 if log else 0.0)
                  for r in chosen]
            if chosen:
                axis.errorbar(xs, [100 * r["gain"].d for r in chosen],
                              yerr=[100 * r["gain"].s for r in chosen], marker="o", capsize=3)
            axis.axhline(0.0, color="black", linewidth=0.8)
            if log:
                axis.set_xscale("log")
                ticks = [1.0] + list(IMBALANCE_RATIOS)
                axis.set_xlim(0.6, 1.6 * ticks[-1])
            else:
                ticks = [0.0] + list(NOISE_RATES)
                axis.set_xlim(-0.05, ticks[-1] + 0.05)
            axis.set_xticks(ticks, ["clean" if t in (0.0, 1.0) else f"{t:g}" for t in ticks])
            axis.set_xlabel(xlabel)
            axis.set_ylabel("KD − scratch (points, ± larger std)")
        figure.suptitle("KD's gain over scratch under corrupted training data")
        return out + ["", self.image("claim5_noise_imbalance.png", figure), ""]

    # ------------------------------------------------------------- CIFAR-100
    def cifar100(self):
        out = ["## CIFAR-100 (grid `cifar100`, standard schedule)", ""]
        out.append("Reference top-1 % **from the CRD (Tian et al. 2020) and DKD (Zhao et al. "
                   "2022) papers** (not measured here):")
        out.append("")
        out += table(["teacher → student"] + list(REFERENCE_COLUMNS),
                     [[f"{t} → {s}"] + [f"{v:.2f}" for v in values]
                      for (t, s), values in REFERENCE.items()])
        out.append("")
        groups = [f"cifar100-{t}-{s}" for t, s in accuracy.CIFAR_PAIRS]
        section = self.section("CIFAR-100", "cifar100", groups)
        out.append("Measured here (240 epochs, SGD 0.05, batch 64, lr x0.1 at 150/180/210; "
                   "needs a GPU machine and the CIFAR-100 data):")
        out.append("")
        out += section.provenance()
        out.append("")
        if section.empty:
            return out + ["No CIFAR-100 runs yet: the table above is the papers' only.", ""]
        rows, pairs = [], []
        for (t, s), group in zip(accuracy.CIFAR_PAIRS, groups):
            teacher = section.teacher(group)
            reference = REFERENCE.get((t, s))
            cells = [f"{t} → {s}", _with_reference(teacher and teacher["test_accuracy"],
                                                    reference and reference[0])]
            for index, method in enumerate(CIFAR_METHODS, start=1):
                stat = section.stat(group, method)
                cells.append(_with_reference(stat, reference[index] if reference else None))
                if stat.n and reference:
                    pairs.append((method, reference[index], stat))
            rows.append(cells)
        out += table(["teacher → student", "teacher", "scratch", "KD", "CRD", "DKD"], rows)
        out.append("")
        out.append("Each cell: measured mean ± std (reference; measured − reference).")
        if pairs:
            figure, (axis,) = _figure(width=5.0, height=4.5)
            for method in CIFAR_METHODS:
                chosen = [(ref, stat) for m, ref, stat in pairs if m == method]
                if chosen:
                    axis.errorbar([ref for ref, _ in chosen], [100 * st.mean for _, st in chosen],
                                  yerr=[100 * st.std for _, st in chosen], marker="o",
                                  linestyle="none", capsize=3, label=method)
            values = [ref for _, ref, _ in pairs] + [100 * st.mean for _, _, st in pairs]
            axis.plot([min(values) - 1, max(values) + 1], [min(values) - 1, max(values) + 1],
                      color="gray", linestyle="--", linewidth=0.8, label="measured = reference")
            axis.set_xlabel("reference top-1 % (CRD / DKD papers)")
            axis.set_ylabel("measured top-1 % (last epoch)")
            axis.legend(fontsize=8)
            out += ["", self.image("cifar100.png", figure)]
        return out + [""]

    # ------------------------------------------------------------ the rest
    def other_grids(self):
        known = {"methods", "claims", "cifar100"}
        out = []
        for grid in sorted(set(self.grids) - known):
            records = list(self.grids[grid].values())
            out += [f"## Grid `{grid}`", ""]
            if grid == "smoke":
                out += ["A pipeline check (2000 examples, 1 epoch), not a result.", ""]
            try:
                command = f"python -m benchmarks.accuracy --grid={grid}"
                accuracy.grid(grid)
            except ValueError:
                command = None
            if command:
                out += [f"Command: `{command}`.", ""]
            cells = {}
            for record in records:
                cells.setdefault((record["group"], record["method"]), []).append(record)
            rows = []
            for (group, method), chosen in sorted(cells.items()):
                rows.append([group, f"`{method}`", len(chosen),
                             mean_std(Stat([accuracy_of(r, "best") for r in chosen])),
                             mean_std(Stat([accuracy_of(r) for r in chosen]))])
            out += table(["group", "method", "n", "best %", "last %"], rows) + [""]
        return out


def _with_reference(measured, reference):
    """`measured (reference; difference)`: a `Stat` over seeds, or one accuracy (a teacher)."""
    if measured is None or (isinstance(measured, Stat) and not measured.n):
        return "pending" + (f" ({reference:.2f})" if reference is not None else "")
    text, value = (mean_std(measured), measured.mean) if isinstance(measured, Stat) \
        else (pct(measured), measured)
    if reference is not None:
        text += f" ({reference:.2f}; {100 * value - reference:+.2f})"
    return text


# ----------------------------------------------------------------- verdicts
def kd_plus_verdict(widths):
    """Claim 1 from the per-width stats (ordered by capacity)."""
    complete = [w for w in widths if w["kd_plus"].n and w["kd"].n and w["teacher"] is not None]
    if not complete:
        return "pending: no width has both KD and KD+ runs with a teacher."
    if any(w["kd_plus"].n < 2 or w["kd"].n < 2 for w in complete):
        return "inconclusive: some widths have fewer than 2 seeds."
    if len(complete) < len(widths):
        measured = ", ".join(w["student"] for w in complete)
        return (f"inconclusive: measured only at {measured}; the claim is about students above "
                "some capacity, so every width of the sweep is needed.")
    ordered = sorted(complete, key=lambda w: w["params"] or 0)

    def matches(stat, teacher):
        return stat.mean + stat.std >= teacher

    start = None
    for index in range(len(ordered)):
        if all(matches(w["kd_plus"], w["teacher"]) for w in ordered[index:]):
            start = index
            break
    beats_kd = [w for w in ordered if w["vs_kd"].higher]
    kd_text = (f"KD+ beats KD by {', '.join(w['vs_kd'].text() for w in beats_kd)} at "
               f"{', '.join(w['student'] for w in beats_kd)}" if beats_kd
               else "KD+ never beats KD beyond noise")
    if start is None:
        gaps = ", ".join(f"{w['student']} {100 * (w['kd_plus'].mean - w['teacher']):+.2f}"
                         for w in ordered)
        return (f"did not hold: KD+ stays below the teacher at the widest student(s) "
                f"(KD+ − teacher: {gaps} points); {kd_text}.")
    from_width = ordered[start]["student"]
    above = ordered[start:]
    kd_also = all(matches(w["kd"], w["teacher"]) for w in above)
    helped = [w for w in above if w["vs_kd"].higher]
    gaps = ", ".join(f"{100 * (w['kd_plus'].mean - w['teacher']):+.2f}" for w in above)
    if helped and not kd_also:
        return (f"held: from {from_width} on, KD+ matches or beats the teacher (KD+ − teacher: "
                f"{gaps} points) and plain KD does not at every such width; {kd_text}.")
    if kd_also:
        return (f"partly held: from {from_width} on KD+ matches or beats the teacher, but so "
                f"does plain KD, so distilling beyond the training points is not what closes "
                f"the gap here; {kd_text}.")
    return (f"partly held: from {from_width} on KD+ matches or beats the teacher, but its "
            f"difference with KD there is within noise; {kd_text}.")


def tang_verdict(stats):
    """Claim 2 from the six methods' stats."""
    if not stats["kd"].n or not stats["scratch"].n:
        return "pending: KD and scratch runs are needed."
    kd_gain = diff(stats["kd"], stats["scratch"])
    if not kd_gain.enough:
        return "inconclusive: KD or scratch has fewer than 2 seeds."
    if not kd_gain.higher:
        return (f"inconclusive: KD does not beat scratch beyond noise here "
                f"(KD − scratch {kd_gain.text()} points), so there is no gain to attribute.")

    def explains(method):
        stat = stats[method]
        if stat.n < 2:
            return None
        return diff(stat, stats["scratch"]).higher and not diff(stats["kd"], stat).higher

    labels = {"tang_label_smoothing": "label smoothing", "tang_reweight": "re-weighting"}
    singles = [labels[m] for m in labels if explains(m)]
    partial = stats["tang_partial"]
    lead = f"KD beats scratch by {kd_gain.text()} points"
    if partial.n < 2:
        return f"inconclusive: {lead}, but KD-pt (tang_partial) has fewer than 2 seeds."
    gap = diff(stats["kd"], partial)
    verb = "recovers" if len(singles) == 1 else "recover"
    single_text = (f"{' and '.join(singles)} alone already {verb} it"
                   if singles else "neither label smoothing nor re-weighting alone recovers it")
    if gap.higher:
        return (f"held: {lead} and KD beats KD-pt (label smoothing + re-weighting, no class "
                f"prior) by {gap.text()}: the class-relationship prior carries part of KD's "
                f"gain here; {single_text}.")
    return (f"did not hold: {lead}, and KD-pt (no class prior) is within noise of KD or above "
            f"(KD-pt − KD {diff(partial, stats['kd']).text()}): label smoothing and "
            f"re-weighting explain KD's gain here without the class prior; {single_text}.")


def dpk_verdict(points):
    """Claim 3 from the per-teacher points (ordered by teacher size)."""
    usable = [p for p in points if p["kd"].n and p["dpk"].n]
    if not usable:
        return "pending: no teacher size has both KD and DPK runs."
    if any(p["kd"].n < 2 or p["dpk"].n < 2 for p in usable):
        return "inconclusive: some teacher sizes have fewer than 2 seeds."
    missing = [p["teacher"] for p in points if not (p["kd"].n and p["dpk"].n)]
    if len(usable) < 3:
        measured = ", ".join(p["teacher"] for p in usable)
        return (f"inconclusive: measured with {measured} only; rising and saturating need at "
                f"least three teacher sizes ({', '.join(missing)} not measured yet).")
    small, large = usable[0], usable[-1]
    dpk_rise = diff(large["dpk"], small["dpk"])
    kd_rise = diff(large["kd"], small["kd"])
    kd_last = diff(usable[-1]["kd"], usable[-2]["kd"])
    at_large = diff(large["dpk"], large["kd"])
    dpk_last = diff(usable[-1]["dpk"], usable[-2]["dpk"])
    facts = (f"from {small['teacher']} to {large['teacher']} the DPK student changes by "
             f"{dpk_rise.text()} and the KD student by {kd_rise.text()} points; at "
             f"{large['teacher']} DPK − KD is {at_large.text()}")
    if missing:
        facts += f" ({', '.join(missing)} not measured here)"
    if not dpk_rise.higher:
        return f"did not hold: the DPK student does not rise with the teacher; {facts}."
    if kd_last.higher:
        return (f"partly held: the DPK student rises with the teacher, but so does the KD "
                f"student (no saturation at this scale: its last step is {kd_last.text()}, "
                f"DPK's {dpk_last.text()}); {facts}.")
    return (f"held: the DPK student rises with the teacher while the KD student saturates "
            f"(its last step is {kd_last.text()}); {facts}.")


def tllm_overall_text(stats):
    d = diff(stats["tllm"], stats["kd"])
    return f"TLLM − KD is {d.text()} points" if d else "TLLM has no runs"


def tllm_verdict(undistillable, names, gains, subset, stats):
    """Claim 4 from the undistillable set, the per-class gains and the overall stats."""
    worst = min((k for k, g in enumerate(gains) if g is not None),
                key=lambda k: gains[k].d, default=None)
    if not undistillable:
        worst_text = (f" (the worst class, {names[worst]}, is at {gains[worst].text()})"
                      if worst is not None else "")
        return (f"did not hold: no class where KD is worse than scratch beyond noise"
                f"{worst_text}, so there are no undistillable classes to fix at this scale.")
    listed = ", ".join(f"{names[k]} ({gains[k].text()})" for k in undistillable)
    lead = f"undistillable classes exist here: {listed}"
    if subset is None or subset["tllm"].n < 2 or subset["kd"].n < 2:
        return f"inconclusive: {lead}; TLLM per-class results are missing or have < 2 seeds."
    on_set = diff(subset["tllm"], subset["kd"])
    overall = diff(stats["tllm"], stats["kd"])
    keeps = overall is not None and not overall.lower
    text = (f"{lead}; on them TLLM − KD is {on_set.text()}, overall TLLM − KD is "
            f"{overall.text() if overall else '–'}")
    if on_set.higher and keeps:
        return f"held: {text}."
    if on_set.higher:
        return f"partly held: {text} (TLLM loses overall accuracy)."
    return f"did not hold: {text} (TLLM does not improve them beyond noise)."


def beyond_verdict(results):
    """Claim 5 from the five corrupted conditions' KD − scratch differences."""
    present = [r for r in results if r["gain"] is not None]
    if not present:
        return "pending: no condition has both KD and scratch runs."
    if any(not r["gain"].enough for r in present):
        return "inconclusive: some conditions have fewer than 2 seeds."
    helped = [r for r in present if r["gain"].higher]
    hurt = [r for r in present if r["gain"].lower]
    listing = "; ".join(f"{r['label']}: {r['gain'].text()}" for r in present)
    missing = len(results) - len(present)
    tail = f" ({missing} condition(s) pending)" if missing else ""
    if len(helped) == len(present):
        verdict = "held so far" if missing else "held"
        return (f"{verdict}: KD beats scratch beyond noise in every condition measured{tail} — "
                f"{listing}.")
    if not helped:
        worse = " and is worse in some" if hurt else ""
        return (f"did not hold: KD beats scratch beyond noise in no condition{worse}{tail} — "
                f"{listing}.")
    return (f"partly held: KD beats scratch beyond noise in {len(helped)} of {len(present)} "
            f"conditions{tail} — {listing}.")


# -------------------------------------------------------------- evaluation
def evaluate_saved_student(run_dir):
    """Per-class test accuracy of `<run_dir>/student.keras` on its run's test split."""
    import keras

    import keras_distill.models  # noqa: F401  pylint: disable=unused-import (zoo layers)
    from keras_distill.callbacks.undistillable import per_class_accuracy
    from recipes import common
    from recipes.config import RunConfig

    with open(os.path.join(run_dir, "config.json")) as handle:
        values = json.load(handle)
    fields = {f.name for f in dataclasses.fields(RunConfig)}
    config = RunConfig(**{k: v for k, v in values.items() if k in fields})
    splits, _ = common.load_data(config)
    _, _, test = common.pipelines(config, splits)
    model = keras.saving.load_model(os.path.join(run_dir, "student.keras"), compile=False)
    return [float(v) for v in per_class_accuracy(model, test, splits.num_classes)]


# ------------------------------------------------------------ method pages
# docs/methods/<page>: the grid methods whose measured result the page shows.
METHOD_PAGES = {
    "kd.md": ("kd",), "kd_plus.md": ("kd_plus",),
    "tang.md": ("tang_full", "tang_label_smoothing", "tang_partial", "tang_top_k",
                "tang_reweight"),
    "dpk.md": ("dpk",), "tllm.md": ("tllm",), "dkd.md": ("dkd",), "fitnet.md": ("fitnet",),
    "attention_transfer.md": ("at",), "fsp.md": ("fsp",), "vid.md": ("vid",),
    "rkd.md": ("rkd",), "sp.md": ("sp",), "pkt.md": ("pkt",), "cc.md": ("cc",),
    "crd.md": ("crd",), "dml.md": ("dml",), "bss.md": ("bss",), "one.md": ("one",),
}
RESULT_HEADING = "## Result measured here"


def method_result_block(grids, methods):
    """The generated "Result measured here" section of a method page (markdown lines)."""
    section = Section(grids, "methods", ["fmnist"], methods=("scratch", "kd") + tuple(methods),
                      fallback=("claims",))
    command = (f"python -m benchmarks.accuracy --grid=methods "
               f"--methods={','.join(dict.fromkeys(('scratch', 'kd') + tuple(methods)))}")
    out = [RESULT_HEADING, "",
           "<!-- Generated by benchmarks/report.py from the methods grid's run JSONs; "
           "do not edit by hand. -->", ""]
    if not any(section.records("fmnist", m) for m in methods):
        return out + [f"Pending: no run yet. Produce it with `{command}` (then "
                      "`python -m benchmarks.report`).", ""]
    teacher = section.teacher("fmnist")
    teacher_text = (f"`{teacher.get('name')}` ({pct(teacher['test_accuracy'])} %)"
                    if teacher else "`fmnist_teacher_small`")
    epochs = sorted({e for e, _ in (epochs_of(r) for r in section.found.values()) if e})
    out.append(f"Fashion-MNIST, teacher {teacher_text} -> `fmnist_student_small` (3.7k "
               f"parameters), the main job's recipe ({', '.join(map(str, epochs))} epochs, "
               "SGD 0.05 cosine, batch 128), on this project's 2-core CPU. Test accuracy in %, "
               "mean ± std over seeds; differences under the rule of "
               "[results](../results.md) (**bold** counts, otherwise within noise):")
    out.append("")
    scratch, kd = section.stat("fmnist", "scratch"), section.stat("fmnist", "kd")
    rows = []
    for method in dict.fromkeys(("scratch", "kd") + tuple(methods)):
        last = section.stat("fmnist", method)
        over_scratch = diff(last, scratch) if method != "scratch" else None
        over_kd = diff(last, kd) if method not in ("scratch", "kd") else None
        rows.append([f"`{method}`", last.n, mean_std(last),
                     mean_std(section.stat("fmnist", method, "best")),
                     over_scratch.cell() if over_scratch else "–",
                     over_kd.cell() if over_kd else "–"])
    out += table(["method", "seeds", "last epoch %", "best epoch %", "vs scratch (points)",
                  "vs KD (points)"], rows)
    out += ["", f"Reproduce: `{command}` then `python -m benchmarks.report`.", ""]
    return out


def update_method_pages(grids, pages_dir):
    """Rewrites the "Result measured here" section of each method page; returns the paths."""
    written = []
    for page, methods in METHOD_PAGES.items():
        path = os.path.join(pages_dir, page)
        if not os.path.exists(path):
            continue
        with open(path) as handle:
            text = handle.read()
        start = text.find(RESULT_HEADING)
        if start < 0:
            start, rest = len(text.rstrip()) + 2, ""
            text = text.rstrip() + "\n\n"
        else:
            end = text.find("\n## ", start + len(RESULT_HEADING))
            rest = "" if end < 0 else text[end + 1:]
        block = "\n".join(method_result_block(grids, methods)).rstrip() + "\n"
        updated = text[:start] + block + ("\n" + rest if rest else "")
        if updated != text:
            with open(path, "w") as handle:
                handle.write(updated)
        written.append(path)
    return written


# ------------------------------------------------------------------- page
def machine_description():
    cores = os.cpu_count()
    gpu = "a GPU" if (shutil.which("nvidia-smi") or os.path.exists("/dev/nvidia0")) \
        else "no GPU"
    model = ""
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{cores} CPU cores{f' ({model})' if model else ''}, {gpu}, {platform.system()}"


def build_page(results_dir, output, plots_dir=None, command="python -m benchmarks.report",
               machine=None, evaluate_students=True, today=None):
    """Writes the page and its plots; returns the Report (verdicts, notes)."""
    page_dir = os.path.dirname(os.path.abspath(output))
    plots_dir = plots_dir or os.path.join(page_dir, "results")
    grids = load_results(results_dir)
    report = Report(grids, plots_dir, page_dir, evaluate_students)
    for name in PLOTS:  # a plot whose data is gone must not linger
        path = os.path.join(plots_dir, name)
        if os.path.exists(path):
            os.remove(path)
    body = []
    body += report.all_methods()
    body += report.claim_kd_plus()
    body += report.claim_tang()
    body += report.claim_dpk()
    body += report.claim_tllm()
    body += report.claim_beyond()
    body += report.cifar100()
    body += report.other_grids()
    body += report.missing_runs()
    today = today or datetime.date.today().isoformat()
    counts = ", ".join(f"`{g}` {len(r)}" for g, r in grids.items()) or "none"
    head = [
        "# Results: the papers' claims at small scale",
        "",
        "<!-- Generated by benchmarks/report.py from the run JSONs; do not edit by hand. -->",
        "",
        f"Regenerated with `{command}` on {today}, on a machine with "
        f"{machine or machine_description()}. Every table names the `python -m "
        "benchmarks.accuracy` command that produced its runs. The Fashion-MNIST grids are "
        "sized for the project's machine (2 CPU cores, no GPU); the CIFAR-100 grid needs a GPU "
        "machine. A table names the machine only when its run JSONs record one.",
        "",
        f"Run JSONs read from `{results_dir}`: {counts}.",
        "",
        "**Rule for every verdict.** " + RULE,
        "",
        "## Verdicts",
        "",
    ]
    head += [f"{claim}. **{CLAIMS[claim]}**: {text}" for claim, text in report.verdicts]
    head.append("")
    if report.notes:
        head += ["What the runs do not record:", ""] + [f"- {n}" for n in report.notes] + [""]
    os.makedirs(page_dir, exist_ok=True)
    with open(output, "w") as handle:
        handle.write("\n".join(head + body).rstrip() + "\n")
    return report


FLAGS = flags.FLAGS


def define_flags():
    if "results_dir" in FLAGS:
        return
    flags.DEFINE_string("results_dir", os.path.join("benchmarks", "results", "accuracy"),
                        "Folder holding one sub-folder of run JSONs per grid.")
    flags.DEFINE_string("output", os.path.join("docs", "results.md"), "The page to write.")
    flags.DEFINE_string("plots_dir", None, "Where the PNGs go (default: results/ beside "
                        "--output).")
    flags.DEFINE_string("machine", None, "Machine description (default: detected).")
    flags.DEFINE_string("method_pages", os.path.join("docs", "methods"),
                        "Folder of the method pages whose 'Result measured here' section is "
                        "regenerated ('' to leave them).")
    flags.DEFINE_bool("evaluate_students", True, "Evaluate saved students for per-class "
                      "accuracy when the run JSON lacks it (needs the dataset).")


def main(argv):
    del argv
    command = " ".join(["python -m benchmarks.report"] + sys.argv[1:])
    report = build_page(FLAGS.results_dir, FLAGS.output, FLAGS.plots_dir, command=command,
                        machine=FLAGS.machine, evaluate_students=FLAGS.evaluate_students)
    print(f"Wrote {FLAGS.output}")
    if FLAGS.method_pages:
        pages = update_method_pages(load_results(FLAGS.results_dir), FLAGS.method_pages)
        print(f"Updated the measured results of {len(pages)} method pages in "
              f"{FLAGS.method_pages}")
    for claim, text in report.verdicts:
        print(f"  claim {claim}: {text}")
    for note in report.notes:
        print(f"  note: {note}")


if __name__ == "__main__":
    define_flags()
    app.run(main)
