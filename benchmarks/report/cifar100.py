"""CIFAR-100 (grid `cifar100`): the CRD and DKD papers' reference top-1 beside what the
standard schedule measures here (needs a GPU machine and the data)."""

from __future__ import annotations

from benchmarks import accuracy
from benchmarks.report import plots
from benchmarks.report.sections import table
from benchmarks.report.statistics import Stat, mean_std, pct

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


def build(report):
    """The CIFAR-100 section (markdown lines): the reference table, then the measured one."""
    out = ["## CIFAR-100 (grid `cifar100`, standard schedule)", ""]
    out.append("Reference top-1 % **from the CRD (Tian et al. 2020) and DKD (Zhao et al. "
               "2022) papers** (not measured here):")
    out.append("")
    out += table(["teacher → student"] + list(REFERENCE_COLUMNS),
                 [[f"{t} → {s}"] + [f"{v:.2f}" for v in values]
                  for (t, s), values in REFERENCE.items()])
    out.append("")
    groups = [f"cifar100-{t}-{s}" for t, s in accuracy.CIFAR_PAIRS]
    section = report.section("CIFAR-100", "cifar100", groups)
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
        figure = plots.cifar100_against_reference(pairs, CIFAR_METHODS)
        out += ["", report.image("cifar100.png", figure)]
    return out + [""]


def _with_reference(measured, reference):
    """`measured (reference; difference)`: a `Stat` over seeds, or one accuracy (a teacher)."""
    if measured is None or (isinstance(measured, Stat) and not measured.n):
        return "pending" + (f" ({reference:.2f})" if reference is not None else "")
    text, value = (mean_std(measured), measured.mean) if isinstance(measured, Stat) \
        else (pct(measured), measured)
    if reference is not None:
        text += f" ({reference:.2f}; {100 * value - reference:+.2f})"
    return text
