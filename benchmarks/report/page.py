"""docs/results.md: the page's header, its sections in order, the missing runs, and the
`Report` every section writes its verdict, notes and plots to."""

from __future__ import annotations

import datetime
import os
import platform
import shutil

from benchmarks import accuracy
from benchmarks.report import all_methods, cifar100, claims, plots
from benchmarks.report.per_class import per_class
from benchmarks.report.runs import accuracy_of, load_results
from benchmarks.report.sections import Section, table
from benchmarks.report.statistics import RULE, Stat, mean_std

COMMAND = "python -m benchmarks.report"


class Report:
    """What the page's sections share: the runs, where plots go, verdicts and notes.

    Args:
        grids: `{grid: {run id: record}}` from `runs.load_results`.
        plots_dir: folder the PNGs are written to.
        page_dir: folder of the page (image links are relative to it).
        evaluate_students: whether saved students may be evaluated for per-class accuracy.
    """

    def __init__(self, grids, plots_dir, page_dir, evaluate_students=True):
        self.grids = grids
        self.plots_dir = plots_dir
        self.page_dir = page_dir
        self.evaluate_students = evaluate_students
        self.verdicts = []
        self.notes = []  # what the data lacked (said on the page and in the log)
        self.sections = []

    def section(self, title, grid, groups, methods=None, fallback=()):
        """A `Section` of the page, remembered for the missing-runs table."""
        section = Section(self.grids, grid, groups, methods, fallback)
        self.sections.append((title, section))
        return section

    def image(self, name, figure):
        """Saves `figure` as `<plots_dir>/<name>`; returns its Markdown image link."""
        os.makedirs(self.plots_dir, exist_ok=True)
        path = plots.save(figure, os.path.join(self.plots_dir, name))
        relative = os.path.relpath(path, self.page_dir).replace(os.sep, "/")
        return f"![{name}]({relative})"

    def verdict(self, claim, text, section=None):
        """Records claim `claim`'s verdict; returns its line for the claim's section."""
        if section is not None and section.missing and section.found:
            text += (f" Incomplete: {len(section.missing)} of {len(section.expected)} runs are "
                     "missing.")
        self.verdicts.append((claim, text))
        return f"**Verdict:** {text}"

    def per_class(self, record):
        """Per-class test accuracy of a run's student, or None (see `per_class`)."""
        return per_class(record, self.evaluate_students)

    def missing_runs(self):
        """The "Missing runs" section: per section, the command that completes it."""
        out = ["## Missing runs", ""]
        rows = [[title, f"{len(s.missing)} of {len(s.expected)}", f"`{s.command(s.missing)}`"]
                for title, s in self.sections if s.missing]
        if not rows:
            return out + ["None: every run the tables expect is here.", ""]
        out.append("Each command runs only the runs whose JSON is missing (finished runs are "
                   "skipped, an interrupted one resumes):")
        out.append("")
        return out + table(["section", "missing", "command"], rows) + [""]

    def other_grids(self):
        """A plain table for every grid the page has no section for (e.g. `smoke`)."""
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


def machine_description():
    """`<cores> CPU cores (<model>), a GPU | no GPU, <system>` of this machine."""
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


def build_page(results_dir, output, plots_dir=None, command=COMMAND, machine=None,
               evaluate_students=True, today=None):
    """Writes the results page and its plots from the run JSONs.

    Args:
        results_dir: folder holding one sub-folder of run JSONs per grid.
        output: the page to write (e.g. docs/results.md).
        plots_dir: where the PNGs go (default: `results/` beside `output`).
        command: the command named on the page as the one that wrote it.
        machine: machine description (default: detected).
        evaluate_students: whether saved students may be evaluated for per-class accuracy.
        today: the date written on the page (default: today, ISO format).

    Returns:
        The `Report`: its `verdicts` (`[(claim, text)]`) and `notes`.
    """
    page_dir = os.path.dirname(os.path.abspath(output))
    plots_dir = plots_dir or os.path.join(page_dir, "results")
    grids = load_results(results_dir)
    report = Report(grids, plots_dir, page_dir, evaluate_students)
    for name in plots.NAMES:  # a plot whose data is gone must not linger
        path = os.path.join(plots_dir, name)
        if os.path.exists(path):
            os.remove(path)
    body = all_methods.build(report)
    for module in claims.MODULES:
        body += module.build(report)
    body += cifar100.build(report)
    body += report.other_grids()
    body += report.missing_runs()
    today = today or datetime.date.today().isoformat()
    counts = ", ".join(f"`{g}` {len(r)}" for g, r in grids.items()) or "none"
    head = [
        "# Results: the papers' claims at small scale",
        "",
        "<!-- Generated by `python -m benchmarks.report` (benchmarks/report/) from the run "
        "JSONs; do not edit by hand. -->",
        "",
        f"*A generated page: `{COMMAND}` writes it, its plots and the method pages' results "
        "files (under [results/](results/)) from the accuracy benchmark's run JSONs. Do not "
        "edit it by hand.*",
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
    head += [f"{claim}. **{claims.TITLES[claim]}**: {text}" for claim, text in report.verdicts]
    head.append("")
    if report.notes:
        head += ["What the runs do not record:", ""] + [f"- {n}" for n in report.notes] + [""]
    os.makedirs(page_dir, exist_ok=True)
    with open(output, "w") as handle:
        handle.write("\n".join(head + body).rstrip() + "\n")
    return report
