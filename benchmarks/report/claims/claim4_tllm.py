"""Claim 4, TLLM (Zhu et al. 2022): undistillable classes exist, and not distilling them
helps. Per-class test accuracy of scratch, KD and TLLM students (see `per_class`)."""

from __future__ import annotations

import glob
import json
import os

import numpy as np

from benchmarks.report import plots
from benchmarks.report.sections import table
from benchmarks.report.statistics import Stat, diff, mean_std

CLAIM = 4
TITLE = "TLLM"


def build(report):
    """The claim's section (markdown lines); records its verdict, notes and plot on
    `report`."""
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
    section = report.section("Claim 4 (TLLM)", "claims", ["fmnist"],
                             methods=("scratch", "kd", "tllm"), fallback=("methods",))
    out += section.provenance()
    out.append("")
    if section.empty:
        return out + [report.verdict(CLAIM, "pending: no runs yet."), ""]
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
            values = report.per_class(record)
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
        report.notes.append(note)
        out += [note, ""]
    names = None
    for record in section.found.values():
        names = (record["results"].get("dataset") or {}).get("class_names") or names
    out += _tllm_sets(report, section)
    if per_class["scratch"] is None or per_class["kd"] is None:
        text = ("inconclusive: per-class test accuracy of the scratch and KD students is "
                "missing, so undistillable classes cannot be measured"
                + (f"; overall, {tllm_overall_text(stats)}" if stats["tllm"].n else "")
                + ".")
        return out + [report.verdict(CLAIM, text, section), ""]
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
    out.append(report.verdict(CLAIM, tllm_verdict(undistillable, names, gains, subset, stats),
                              section))
    figure = plots.tllm_per_class(
        {m: [diff(cls[m][k], cls["scratch"][k]) for k in range(classes)] for m in ("kd", "tllm")},
        names, undistillable)
    return out + ["", report.image("claim4_tllm_per_class.png", figure), ""]


def _tllm_sets(report, section):
    """The classes TLLM's callback masked, from its report JSON (when the runs wrote one)."""
    lines = []
    for record in section.records("fmnist", "tllm"):
        pattern = os.path.join(record["_folder"], "runs", record["_run_id"], "**",
                               "undistillable_classes.json")
        for path in sorted(glob.glob(pattern, recursive=True))[:1]:
            with open(path) as handle:
                chosen = json.load(handle)
            lines.append(f"- seed {record['seed']}: TLLM masked classes "
                         f"{chosen.get('undistillable')} (its own choice, on validation "
                         "data).")
    if lines:
        return ["The classes TLLM's callback masked at the end of training:", ""] + \
            lines + [""]
    if section.records("fmnist", "tllm"):
        note = ("No TLLM run folder (`<grid>/runs/<run id>/`) holds the callback's "
                "`undistillable_classes.json`, so the set TLLM chose is not shown.")
        report.notes.append(note)
        return [note, ""]
    return []


def tllm_overall_text(stats):
    """TLLM − KD overall, in words."""
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
