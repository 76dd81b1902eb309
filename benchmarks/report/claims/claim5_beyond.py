"""Claim 5, KD beyond compression (Sarfraz et al.): KD also helps under symmetric label noise
and class imbalance. KD's gain over scratch when teacher and students train on the same
corrupted training set (clean test set)."""

from __future__ import annotations

from benchmarks.report import plots
from benchmarks.report.sections import Section, table
from benchmarks.report.statistics import diff, mean_std, pct

CLAIM = 5
TITLE = "KD beyond compression"
NOISE_RATES = (0.2, 0.4, 0.6)
IMBALANCE_RATIOS = (10.0, 100.0)


def build(report):
    """The claim's section (markdown lines); records its verdict and plot on `report`."""
    out = ["## Claim 5 — KD beyond compression: label noise and class imbalance", ""]
    out.append("Sarfraz et al.: KD also helps when the training labels are noisy "
               "(symmetric noise) or the classes are long-tailed. Here: KD's gain over "
               "scratch (teacher and students trained on the same corrupted training set; "
               "clean test set).")
    out.append("")
    groups = [f"noise-{r:g}" for r in NOISE_RATES] + \
        [f"imbalance-{r:g}" for r in IMBALANCE_RATIOS]
    section = report.section("Claim 5 (noise, imbalance)", "claims", groups)
    clean = Section(report.grids, "claims", ["fmnist"], methods=("scratch", "kd"),
                    fallback=("methods",))
    out += section.provenance()
    out.append("")
    if section.empty:
        return out + [report.verdict(CLAIM, "pending: no runs yet."), ""]
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
    out.append(report.verdict(CLAIM, beyond_verdict(results[1:]), section))
    figure = plots.noise_imbalance(results, NOISE_RATES, IMBALANCE_RATIOS)
    return out + ["", report.image("claim5_noise_imbalance.png", figure), ""]


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
