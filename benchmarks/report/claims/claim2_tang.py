"""Claim 2, Tang et al. 2020: what explains KD's gain. Each variant that keeps some of the
teacher distribution's three factors, its gain over scratch and its share of KD's gain."""

from __future__ import annotations

from benchmarks.report import plots
from benchmarks.report.sections import table
from benchmarks.report.statistics import diff, mean_std

CLAIM = 2
TITLE = "Tang et al."
TANG = ("scratch", "kd", "tang_label_smoothing", "tang_reweight", "tang_partial", "tang_top_k")
FACTORS = {
    "scratch": "none (labels only)",
    "kd": "1 + 2 + 3 (the teacher's full distribution)",
    "tang_label_smoothing": "1: label smoothing",
    "tang_reweight": "2: re-weighting by the teacher's p_y",
    "tang_partial": "1 + 2 (KD-pt: no class prior)",
    "tang_top_k": "1 + 2 + top-k part of 3",
}


def build(report):
    """The claim's section (markdown lines); records its verdict and plot on `report`."""
    out = ["## Claim 2 — Tang et al.: what explains KD's gain", ""]
    out.append("Paper: the teacher's distribution gives the student (1) label smoothing, "
               "(2) per-example re-weighting by the teacher's confidence `p_y`, and (3) a "
               "class-relationship prior; KD-pt keeps 1 and 2 and drops 3. Here: each "
               "variant's gain over scratch, and its share of KD's gain.")
    out.append("")
    section = report.section("Claim 2 (Tang et al.)", "claims", ["fmnist"], methods=TANG,
                             fallback=("methods",))
    out += section.provenance()
    out.append("")
    if section.empty:
        return out + [report.verdict(CLAIM, "pending: no runs yet."), ""]
    stats = {m: section.stat("fmnist", m) for m in TANG}
    kd_gain = diff(stats["kd"], stats["scratch"])
    rows = []
    for method in TANG:
        gain = diff(stats[method], stats["scratch"]) if method != "scratch" else None
        share = "–"
        if gain and kd_gain and kd_gain.d:
            share = f"{100 * gain.d / kd_gain.d:.0f} %"
        vs_kd = diff(stats[method], stats["kd"]) if method not in ("kd", "scratch") else None
        rows.append([f"`{method}`", FACTORS[method], stats[method].n,
                     mean_std(stats[method]), gain.cell() if gain else "–", share,
                     vs_kd.cell() if vs_kd else "–"])
    out += table(["method", "factors kept", "n", "last %", "gain over scratch",
                  "share of KD's gain", "− KD"], rows)
    out.append("")
    out.append(report.verdict(CLAIM, tang_verdict(stats), section))
    plotted = [(m, stats[m]) for m in TANG if stats[m].n]
    if plotted:
        figure = plots.tang_ablation(plotted)
        out += ["", report.image("claim2_tang.png", figure)]
    return out + [""]


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
