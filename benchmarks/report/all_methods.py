"""The "All methods" section: every method of the `methods` grid on Fashion-MNIST, against
scratch and KD."""

from __future__ import annotations

from benchmarks.report import plots
from benchmarks.report.runs import part_of
from benchmarks.report.sections import table
from benchmarks.report.statistics import Stat, diff, mean_std, pct


def build(report):
    """The section (markdown lines); records its plot on `report`."""
    out = ["## All methods (Fashion-MNIST, grid `methods`)", ""]
    section = report.section("All methods", "methods", ["fmnist"], fallback=("claims",))
    teacher = section.teacher("fmnist")
    out.append("Every method of the grid trains `fmnist_student_small` (from "
               "`fmnist_teacher_small` where it uses a teacher; 3 seeds each). Accuracy is "
               "top-1 on the Fashion-MNIST test set, in %; `best` is the best epoch (picked on "
               "the test set: optimistic), `last` the final epoch; agreement is top-1 "
               "agreement with the teacher on the test set.")
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
        agreement = [part_of(r).get("agreement_with_teacher") for r in records]
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
        figure = plots.all_methods(plotted, teacher, scratch)
        out += ["", report.image("methods.png", figure)]
    return out + [""]



