"""Markdown pieces: the runs one table expects (`Section`), where they come from, and tables."""

from __future__ import annotations

from benchmarks import accuracy
from benchmarks.report.runs import accuracy_of, epochs_of, preset_epochs, teacher_of
from benchmarks.report.statistics import Stat


class Section:
    """The expected runs of one table, the records found for them, and their commands.

    Args:
        grids: `{grid: {run id: record}}` from `runs.load_results`.
        grid: the benchmark grid the table reads (`methods`, `claims`, `cifar100`).
        groups: the grid's groups the table reads.
        methods: the methods it reads (default: every method of those groups).
        fallback: other grids whose identical run (same run id) stands in for a missing one.
    """

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

    @property
    def empty(self):
        return not self.found

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


def describe_runs(runs, limit=6):
    """`group/method seeds 0,1; ...` for a list of expected runs (at most `limit` cells)."""
    cells = {}
    for run in runs:
        cells.setdefault((run.group, run.method), []).append(run.seed)
    texts = [f"{g}/{m} seed{'s' if len(s) > 1 else ''} {','.join(map(str, s))}"
             for (g, m), s in cells.items()]
    if len(texts) > limit:
        texts = texts[:limit] + [f"... {len(texts) - limit} more"]
    return "; ".join(texts)


def table(header, rows):
    """A Markdown table (lines) from a header and rows of cells."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines
