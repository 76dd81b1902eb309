"""Claim 3, DPK (Zong, Qiu et al. 2023): the student keeps improving with a better teacher,
where KD saturates. One student, the grid's teacher sizes, KD vs DPK."""

from __future__ import annotations

from benchmarks import accuracy
from benchmarks.report import plots
from benchmarks.report.sections import table
from benchmarks.report.statistics import diff, mean_std, pct

CLAIM = 3
TITLE = "DPK"
TEACHERS = accuracy.DPK_TEACHERS


def build(report):
    """The claim's section (markdown lines); records its verdict and plot on `report`."""
    out = ["## Claim 3 — DPK: the student keeps improving with a better teacher", ""]
    out.append("Paper: with KD the student's accuracy saturates as the teacher grows; with "
               "DPK (teacher features as prior knowledge) it keeps rising. Here: one student "
               f"(`fmnist_student_small`), {len(TEACHERS)} teacher sizes, KD vs DPK (a "
               "verdict needs three measured). *Rises* means the largest measured teacher's "
               "student beats the smallest one's under the rule; *saturates* means the step "
               "between the two largest measured teachers does not count as a gain.")
    out.append("")
    groups = [f"teacher-{t}" for t in TEACHERS]
    section = report.section("Claim 3 (DPK)", "claims", groups)
    out += section.provenance()
    out.append("")
    if section.empty:
        return out + [report.verdict(CLAIM, "pending: no runs yet."), ""]
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
    out.append(report.verdict(CLAIM, dpk_verdict(points), section))
    plotted = [p for p in points if p["params"]]
    if plotted:
        figure = plots.dpk_teachers(plotted)
        out += ["", report.image("claim3_dpk.png", figure)]
    return out + [""]


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
