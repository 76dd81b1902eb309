"""benchmarks/report/: tables, verdicts, plots and missing runs from synthetic run JSONs.

No training here: every run JSON is written by hand with values chosen so the
means / sample stds are exact in two decimals, and no difference sits on the
rule's boundary (`|d| > s`, `s` the larger std).
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from benchmarks import accuracy, report
from benchmarks.report import Diff, Stat
from benchmarks.report import per_class as per_class_module

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def run_id(grid, group, method, seed):
    (run,) = [r for r in accuracy.grid(grid)
              if r.group == group and r.method == method and r.seed == seed]
    return run.run_id


def write_run(root, grid, group, method, seed, last, best=None, teacher=0.80,
              teacher_params=50000, params=10000, agreement=None, per_class=None,
              teacher_name="fmnist_teacher"):
    """One run JSON as benchmarks/accuracy.py writes it (results = recipes.distill.run)."""
    # 12 epochs: the Fashion-MNIST preset, so no command needs --epochs.
    part = {"test_accuracy": {"best": last if best is None else best, "last": last,
                              "best_epoch": 12, "per_epoch": [last - 0.01] * 11 + [last]},
            "params": params, "seconds": 1.0, "agreement_with_teacher": agreement}
    if per_class is not None:
        part["per_class_test_accuracy"] = per_class
    results = {"method": method, "transforms": {},
               "dataset": {"name": "fashion_mnist", "num_classes": 3,
                           "class_names": ["tshirt", "trouser", "pullover"]},
               "teacher": {"name": teacher_name, "test_accuracy": teacher,
                           "params": teacher_params},
               ("scratch" if method == "scratch" else "student"): part}
    identifier = run_id(grid, group, method, seed)
    record = {"group": group, "method": method, "seed": seed, "overrides": {},
              "seconds": 2.0, "results": results}
    folder = root / grid
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{identifier}.json").write_text(json.dumps(record))
    return identifier


def write_seeds(root, grid, group, method, lasts, **kwargs):
    per_class = kwargs.pop("per_class", [None] * len(lasts))
    for seed, (last, classes) in enumerate(zip(lasts, per_class)):
        write_run(root, grid, group, method, seed, last, per_class=classes, **kwargs)


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    """Builds a results folder covering each section (claim 3 left missing) and the page."""
    root = tmp_path_factory.mktemp("results")
    # methods grid, group fmnist: scratch 79.00 ± 1.00; kd last 82.00 ± 2.00, best 83.00 ± 2.00,
    # agreement 92.00; gain +3.00 ± 2.00 (counts: 3 > 2); dpk a single seed.
    # Per-class (3 classes; claim 4 borrows these runs): class 1 scratch 61 ± 1, KD 51 ± 1
    # -> KD - scratch = -10.00 ± 1.00: undistillable. Class 0: +5.00 ± 0.00; class 2: 0.
    write_seeds(root, "methods", "fmnist", "scratch", [0.78, 0.79, 0.80],
                per_class=[[0.90, 0.60, 0.80], [0.90, 0.61, 0.81], [0.90, 0.62, 0.82]])
    for seed, (last, best, agree) in enumerate([(0.80, 0.81, 0.90), (0.82, 0.83, 0.92),
                                                (0.84, 0.85, 0.94)]):
        write_run(root, "methods", "fmnist", "kd", seed, last, best=best, agreement=agree,
                  per_class=[[0.95, 0.50, 0.80], [0.95, 0.51, 0.81], [0.95, 0.52, 0.82]][seed])
    write_run(root, "methods", "fmnist", "dpk", 0, 0.815)
    # Claim 1: teacher 80.00. KD+ - KD: small +2.00 ± 1.00, medium +4.00 ± 1.00,
    # wide +5.00 ± 1.00. KD+ matches the teacher (mean + std >= 80) from the medium student
    # on (81, 83); KD never does (73, 77, 78 + 1 < 80) -> held from fmnist_student on.
    widths = {"fmnist_student_small": (1000, [0.70, 0.71, 0.72], [0.72, 0.73, 0.74],
                                       [0.74, 0.75, 0.76]),
              "fmnist_student": (5000, [0.74, 0.75, 0.76], [0.76, 0.77, 0.78],
                                 [0.80, 0.81, 0.82]),
              "fmnist_student_wide": (20000, [0.76, 0.77, 0.78], [0.77, 0.78, 0.79],
                                      [0.82, 0.83, 0.84])}
    for student, (params, scratch, kd, kd_plus) in widths.items():
        group = f"capacity-{student}"
        write_seeds(root, "claims", group, "scratch", scratch, params=params)
        write_seeds(root, "claims", group, "kd", kd, params=params)
        write_seeds(root, "claims", group, "kd_plus", kd_plus, params=params)
    # Claim 2 (claims grid, scratch and kd borrowed from the methods grid):
    # KD-pt 79.00 ± 0.50 -> KD - KD-pt = +3.00 ± 2.00 counts -> "held" (prior matters).
    # label smoothing 81.50 ± 0.50 -> gain +2.50 ± 1.00 counts, KD - LS = 0.50 < 2 -> explains.
    write_seeds(root, "claims", "fmnist", "tang_partial", [0.785, 0.79, 0.795])
    write_seeds(root, "claims", "fmnist", "tang_label_smoothing", [0.81, 0.815, 0.82])
    # Claim 4: TLLM overall 82.00 ± 0.50 (= KD: no loss); class 1: 59 ± 1 -> +8.00 ± 1.00
    # over KD on the undistillable class -> held.
    write_seeds(root, "claims", "fmnist", "tllm", [0.815, 0.82, 0.825],
                per_class=[[0.94, 0.58, 0.80], [0.94, 0.59, 0.81], [0.94, 0.60, 0.82]])
    tllm_dir = root / "claims" / "runs" / run_id("claims", "fmnist", "tllm", 0)
    tllm_dir.mkdir(parents=True)
    (tllm_dir / "undistillable_classes.json").write_text(json.dumps({"undistillable": [1]}))
    # Claim 5: only noise-0.2: scratch 71.00 ± 1.00, KD 75.00 ± 1.00 -> +4.00 ± 1.00.
    write_seeds(root, "claims", "noise-0.2", "scratch", [0.70, 0.71, 0.72])
    write_seeds(root, "claims", "noise-0.2", "kd", [0.74, 0.75, 0.76])
    # CIFAR-100: resnet56 -> resnet20, KD 71.00 ± 1.00 vs the reference 70.66 (+0.34).
    write_seeds(root, "cifar100", "cifar100-resnet56-resnet20", "kd", [0.70, 0.71, 0.72],
                teacher=0.7234, teacher_name="resnet56")
    # smoke grid
    write_run(root, "smoke", "smoke", "kd", 0, 0.60)
    output = tmp_path_factory.mktemp("docs") / "results.md"
    built = report.build_page(str(root), str(output), machine="2 CPU cores, no GPU",
                              today="2030-01-02")
    return output.read_text(), built, output


def section(text, title):
    """The page's text from the heading starting with `title` to the next `## `."""
    start = text.index("## " + title)
    end = text.find("\n## ", start + 1)
    return text[start:end if end >= 0 else None]


def row(text, first_cell):
    (line,) = [l for l in text.splitlines() if l.startswith(f"| {first_cell} |")]
    return [c.strip() for c in line.strip("|").split("|")]


def test_header_states_command_date_machine_and_rule(page):
    text, _, _ = page
    assert "`python -m benchmarks.report` on 2030-01-02" in text
    assert "2 CPU cores, no GPU" in text
    assert "counts** when `|d| > s`" in text


def test_all_methods_table_means_stds_and_gain(page):
    text, _, _ = page
    part = section(text, "All methods")
    # kd: best [81, 83, 85] -> 83.00 ± 2.00; last [80, 82, 84] -> 82.00 ± 2.00;
    # agreement mean 92.00; gain 82 - 79 = +3.00, s = max(2, 1) = 2.00, counts -> bold.
    assert row(part, "`kd`") == ["`kd`", "3", "83.00 ± 2.00", "82.00 ± 2.00", "92.00",
                                 "**+3.00 ± 2.00**", "–"]
    assert row(part, "`scratch`")[:4] == ["`scratch`", "3", "79.00 ± 1.00", "79.00 ± 1.00"]
    # One seed: no std, and the gain does not count (fewer than 2 seeds): not bold.
    assert row(part, "`dpk`") == ["`dpk`", "1", "81.50 (1 seed)", "81.50 (1 seed)", "–",
                                  "+2.50 ± 1.00", "-0.50 ± 2.00"]
    # the claims grid's Tang and TLLM runs (3 seeds): LS 81.50 ± 0.50 and TLLM 82.00 ± 0.50
    # vs KD 82.00 ± 2.00 are within noise; KD-pt 79.00 ± 0.50: -3.00 ± 2.00, below
    assert ("Against KD, with at least 2 seeds each: `tang_label_smoothing`, `tllm` are "
            "within noise of KD; `tang_partial` is below KD.") in part
    assert row(part, "`crd`")[1:4] == ["0", "pending", "pending"]
    assert "Teacher `fmnist_teacher`: 80.00 %" in part
    assert "Runs: 16 of 69" in part  # 9 of them from the claims grid's group fmnist
    assert "9 of these runs are identical runs reused from the claims grid" in part
    assert "--grid=methods --methods=" in part and "**Missing: 53 run(s)**" in part
    assert "![methods.png](results/methods.png)" in part


def test_claim1_kd_plus(page):
    text, built, _ = page
    part = section(text, "Claim 1")
    assert row(part, "`fmnist_student`") == [
        "`fmnist_student`", "5000", "80.00", "75.00 ± 1.00", "77.00 ± 1.00", "81.00 ± 1.00",
        "**+4.00 ± 1.00**", "+1.00"]
    verdicts = dict(built.verdicts)
    assert verdicts[1].startswith("held: from fmnist_student on, KD+ matches or beats the "
                                  "teacher (KD+ − teacher: +1.00, +3.00 points)")
    assert "Runs: 27 of 27" in part and "Missing" not in part


def test_claim2_tang_borrows_methods_runs(page):
    text, built, _ = page
    part = section(text, "Claim 2")
    # label smoothing 81.50 ± 0.50: gain +2.50 ± 1.00 (counts), share 2.5 / 3 = 83 %,
    # minus KD -0.50 ± 2.00 (within noise).
    assert row(part, "`tang_label_smoothing`")[2:] == [
        "3", "81.50 ± 0.50", "**+2.50 ± 1.00**", "83 %", "-0.50 ± 2.00"]
    assert "6 of these runs are identical runs reused from the methods grid" in part
    assert dict(built.verdicts)[2].startswith(
        "held: KD beats scratch by +3.00 ± 2.00 points and KD beats KD-pt")
    assert "label smoothing alone already recovers" in dict(built.verdicts)[2]
    assert "Incomplete: 6 of 18 runs are missing." in dict(built.verdicts)[2]


def test_missing_group_is_reported_with_its_command(page):
    text, built, _ = page
    part = section(text, "Claim 3")
    assert "**Pending:** none of the 18 runs exist yet" in part
    assert ("`python -m benchmarks.accuracy --grid=claims --groups=teacher-fmnist_teacher_tiny,"
            "teacher-fmnist_teacher_small,teacher-fmnist_teacher_medium`") in part
    assert dict(built.verdicts)[3] == "pending: no runs yet."
    assert "| Claim 3 (DPK) | 18 of 18 |" in section(text, "Missing runs")
    assert "3. **DPK**: pending: no runs yet." in text


def test_claim4_tllm_per_class(page):
    text, built, _ = page
    part = section(text, "Claim 4")
    # class 1: scratch 61 ± 1, KD 51 ± 1 -> -10.00 ± 1.00; TLLM 59 ± 1 -> +8.00 ± 1.00.
    assert row(part, "1 trouser") == ["1 trouser", "61.00 ± 1.00", "51.00 ± 1.00",
                                      "**-10.00 ± 1.00**", "59.00 ± 1.00", "**+8.00 ± 1.00**",
                                      "yes"]
    assert row(part, "2 pullover")[-1] == ""
    assert "TLLM masked classes [1]" in part
    verdict = dict(built.verdicts)[4]
    assert verdict.startswith("held: undistillable classes exist here: trouser (-10.00 ± 1.00)")
    assert "overall TLLM − KD is +0.00 ± 2.00" in verdict
    assert "![claim4_tllm_per_class.png]" in part


def test_claim5_noise_and_cifar_reference(page):
    text, built, _ = page
    part = section(text, "Claim 5")
    assert row(part, "symmetric noise 0.2")[2:] == ["71.00 ± 1.00", "75.00 ± 1.00",
                                                   "**+4.00 ± 1.00**"]
    assert row(part, "imbalance ratio 100")[2:] == ["pending", "pending", "–"]
    assert dict(built.verdicts)[5].startswith("held so far: KD beats scratch beyond noise in "
                                              "every condition measured (4 condition(s) pending)")
    cifar = section(text, "CIFAR-100")
    assert "from the CRD (Tian et al. 2020) and DKD (Zhao et al. 2022) papers" in cifar
    assert "| resnet32x4 → resnet8x4 | 79.42 | 72.50 | 73.33 | 75.51 | 76.32 |" in cifar
    measured = row(cifar.split("Measured here")[1], "resnet56 → resnet20")
    assert measured[1] == "72.34 (72.34; +0.00)"
    assert measured[3] == "71.00 ± 1.00 (70.66; +0.34)"
    assert measured[2] == "pending (69.06)"
    assert "## Grid `smoke`" in text


def test_plots_are_png_files(page):
    _, _, output = page
    folder = output.parent / "results"
    for name in ("methods.png", "claim1_kd_plus.png", "claim2_tang.png",
                 "claim4_tllm_per_class.png", "claim5_noise_imbalance.png", "cifar100.png"):
        data = (folder / name).read_bytes()
        assert data[:8] == PNG_MAGIC and len(data) > 1000, name
    assert not (folder / "claim3_dpk.png").exists()  # no runs, no plot


def test_empty_results_say_everything_is_pending(tmp_path):
    output = tmp_path / "results.md"
    built = report.build_page(str(tmp_path / "none"), str(output), machine="m")
    text = output.read_text()
    assert [t for _, t in built.verdicts] == ["pending: no runs yet."] * 5
    assert "`python -m benchmarks.accuracy --grid=cifar100`" in text
    assert "| 72.34 | 69.06 | 70.66 | 71.16 | 71.97 |" in text  # the reference is always shown
    assert not list((tmp_path / "results").glob("*.png")) if (tmp_path / "results").exists() \
        else True


def test_runs_without_per_class_accuracy_make_claim4_inconclusive(tmp_path):
    write_seeds(tmp_path, "claims", "fmnist", "scratch", [0.78, 0.80])
    write_seeds(tmp_path, "claims", "fmnist", "kd", [0.80, 0.82])
    output = tmp_path / "docs" / "results.md"
    built = report.build_page(str(tmp_path), str(output), machine="m")
    verdict = dict(built.verdicts)[4]
    assert verdict.startswith("inconclusive: per-class test accuracy of the scratch and KD "
                              "students is missing")
    assert "Incomplete: 5 of 9 runs are missing." in verdict
    assert "Per-class test accuracy is not recorded for 4 run(s)" in output.read_text()


# ------------------------------------------------------ verdicts on constructed cases
def stat(*values):
    return Stat(list(values))


def test_rule_counts_only_beyond_the_larger_std_with_two_seeds():
    assert report.diff(stat(0.82, 0.84), stat(0.79, 0.79)).counts      # 3.0 > 1.41
    assert not report.diff(stat(0.79, 0.85), stat(0.79, 0.79)).counts  # 3.0 < 4.24
    assert not report.diff(stat(0.90), stat(0.70, 0.72)).counts        # one seed
    assert report.diff(stat(0.9), stat()) is None


def tang_stats(kd, partial, ls=(0.79, 0.79), reweight=(0.79, 0.79)):
    return {"scratch": stat(0.78, 0.80), "kd": stat(*kd), "tang_partial": stat(*partial),
            "tang_label_smoothing": stat(*ls), "tang_reweight": stat(*reweight),
            "tang_top_k": stat()}


def test_tang_verdicts():
    # KD - scratch = +0.5 within the std 1.41: nothing to attribute.
    assert report.tang_verdict(tang_stats((0.79, 0.80), (0.79, 0.79))).startswith(
        "inconclusive: KD does not beat scratch")
    # KD +5 over scratch; KD-pt at KD's level: no prior needed; reweight alone explains.
    verdict = report.tang_verdict(tang_stats((0.84, 0.86), (0.84, 0.86),
                                             reweight=(0.845, 0.855)))
    assert verdict.startswith("did not hold") and "re-weighting alone already" in verdict


def width(student, params, kd, kd_plus, teacher=0.80):
    kd, kd_plus = stat(*kd), stat(*kd_plus)
    return dict(student=student, params=params, teacher=teacher, kd=kd, kd_plus=kd_plus,
                scratch=stat(), vs_kd=report.diff(kd_plus, kd))


def test_kd_plus_verdicts():
    below = [width("a", 1, (0.70, 0.71), (0.72, 0.73)), width("b", 2, (0.72, 0.73),
                                                            (0.75, 0.76))]
    assert report.kd_plus_verdict(below).startswith("did not hold: KD+ stays below")
    # Both reach the teacher at the wide student: KD+ is not what closes the gap.
    both = [width("a", 1, (0.70, 0.71), (0.72, 0.73)), width("b", 2, (0.80, 0.81),
                                                            (0.80, 0.81))]
    assert report.kd_plus_verdict(both).startswith("partly held: from b on")
    few = [width("a", 1, (0.70,), (0.72, 0.73))]
    assert report.kd_plus_verdict(few).startswith("inconclusive")
    # only the smallest width measured: no verdict on "above some capacity"
    missing = width("b", 2, (), ())
    assert report.kd_plus_verdict([below[0], missing]).startswith(
        "inconclusive: measured only at a;")


def point(name, params, kd, dpk):
    return dict(teacher=name, params=params, accuracy=0.8, kd=stat(*kd), dpk=stat(*dpk))


def test_dpk_verdicts():
    # DPK small -> large +4 (std 0.71): rises; KD medium -> large +0.5 (< 0.71): saturates.
    held = [point("s", 1, (0.80, 0.81), (0.80, 0.81)), point("m", 2, (0.82, 0.83), (0.82, 0.83)),
            point("l", 3, (0.825, 0.835), (0.84, 0.85))]
    assert report.dpk_verdict(held).startswith("held: the DPK student rises")
    # KD also climbs +3 in the last step: no saturation to fix.
    climbing = [point("s", 1, (0.80, 0.81), (0.80, 0.81)),
                point("m", 2, (0.82, 0.83), (0.82, 0.83)),
                point("l", 3, (0.85, 0.86), (0.86, 0.87))]
    assert report.dpk_verdict(climbing).startswith("partly held")
    flat = [point("s", 1, (0.80, 0.81), (0.80, 0.81)), point("m", 2, (0.80, 0.81),
                                                             (0.80, 0.81)),
            point("l", 3, (0.80, 0.81), (0.80, 0.81))]
    assert report.dpk_verdict(flat).startswith("did not hold")
    assert report.dpk_verdict([point("s", 1, (), ())]).startswith("pending")
    # Two sizes measured: no verdict on rising and saturating.
    unmeasured = point("xl", 4, (), ())
    assert report.dpk_verdict(held[:2] + [unmeasured]).startswith(
        "inconclusive: measured with s, m only; rising and saturating need at least three "
        "teacher sizes (xl not measured yet)")
    # Three of four measured: the verdict reads them and names the missing one.
    partial = report.dpk_verdict(held + [unmeasured])
    assert partial.startswith("held: the DPK student rises")
    assert partial.endswith("(xl not measured here).")


def test_tllm_verdicts():
    names = ["a", "b"]
    gains = [Diff(0.01, 0.02, True), Diff(-0.005, 0.01, True)]
    stats = {"kd": stat(0.8, 0.82), "tllm": stat(0.8, 0.82)}
    assert report.tllm_verdict([], names, gains, None, stats).startswith(
        "did not hold: no class where KD is worse than scratch beyond noise (the worst class, "
        "b, is at -0.50 ± 1.00)")
    gains = [Diff(0.01, 0.02, True), Diff(-0.05, 0.01, True)]
    # TLLM no better than KD on the undistillable class b.
    subset = {"kd": stat(0.5, 0.52), "tllm": stat(0.5, 0.52)}
    assert report.tllm_verdict([1], names, gains, subset, stats).startswith("did not hold")
    # Better on b, but overall 4 points lower (counts): partly.
    subset = {"kd": stat(0.5, 0.52), "tllm": stat(0.58, 0.60)}
    low = {"kd": stat(0.8, 0.82), "tllm": stat(0.76, 0.78)}
    assert report.tllm_verdict([1], names, gains, subset, low).startswith("partly held")


def test_beyond_verdicts():
    def condition(label, d, s):
        return {"label": label, "gain": Diff(d, s, True)}

    assert report.beyond_verdict([condition("n", 0.04, 0.01), condition("i", 0.03, 0.01)]) \
        .startswith("held: KD beats scratch beyond noise in every condition")
    assert report.beyond_verdict([condition("n", 0.04, 0.01), condition("i", 0.005, 0.01)]) \
        .startswith("partly held: KD beats scratch beyond noise in 1 of 2")
    assert report.beyond_verdict([condition("n", -0.04, 0.01)]).startswith(
        "did not hold: KD beats scratch beyond noise in no condition and is worse in some")


def test_per_class_from_saved_students_is_evaluated_once_and_cached(tmp_path, monkeypatch):
    grid = tmp_path / "claims"
    identifier = write_run(tmp_path, "claims", "fmnist", "kd", 0, 0.8)
    run_dir = grid / "runs" / identifier
    run_dir.mkdir(parents=True)
    (run_dir / "student.keras").write_bytes(b"")
    (run_dir / "config.json").write_text("{}")
    calls = []

    def fake(path):
        calls.append(path)
        return [0.5, np.nan, 0.25]

    monkeypatch.setattr(per_class_module, "evaluate_saved_student", fake)
    records = report.load_results(str(tmp_path))["claims"]
    built = report.Report({}, str(tmp_path / "plots"), str(tmp_path))
    values = built.per_class(records[identifier])
    assert values[0] == 0.5 and np.isnan(values[1]) and calls == [str(run_dir)]
    again = built.per_class(records[identifier])
    assert again[2] == 0.25 and len(calls) == 1  # read back from <grid>/per_class/
    assert os.path.exists(grid / "per_class" / f"{identifier}.json")
    skipping = report.Report({}, str(tmp_path / "plots"), str(tmp_path), evaluate_students=False)
    (grid / "per_class" / f"{identifier}.json").unlink()
    assert skipping.per_class(records[identifier]) is None


def test_method_pages_get_a_generated_results_file(tmp_path):
    """Each method page gets its own generated results file from the methods grid: scratch
    79.00 ± 1.00, KD 82.00 ± 2.00 (+3.00 ± 2.00 over scratch: counts), DKD 83.00 ± 1.00
    (+1.00 ± 2.00 over KD: within noise). The hand-written pages are never edited; a page
    that does not link to its file is named; a page whose method has no run gets a file
    that says pending with the command."""
    root = tmp_path / "results"
    write_seeds(root, "methods", "fmnist", "scratch", [0.78, 0.79, 0.80])
    write_seeds(root, "methods", "fmnist", "kd", [0.80, 0.82, 0.84])
    write_seeds(root, "methods", "fmnist", "dkd", [0.82, 0.83, 0.84])
    docs = tmp_path / "docs"
    pages = docs / "methods"
    pages.mkdir(parents=True)
    dkd_page = ("# DKD\n\n## Result measured here\n\nSee "
                "[../results/methods/dkd.md](../results/methods/dkd.md).\n\n## Notes\nkept\n")
    (pages / "dkd.md").write_text(dkd_page)
    (pages / "rkd.md").write_text("# RKD\n\n## Formula\nx\n")
    generated = docs / "results" / "methods"
    written, unlinked = report.write_method_results(
        report.load_results(str(root)), str(pages), str(generated), str(docs / "results.md"))
    assert sorted(os.path.basename(p) for p in written) == ["dkd.md", "rkd.md"]
    assert unlinked == [str(pages / "rkd.md")]
    assert (pages / "dkd.md").read_text() == dkd_page  # the hand-written page is untouched
    assert (pages / "rkd.md").read_text() == "# RKD\n\n## Formula\nx\n"
    dkd = (generated / "dkd.md").read_text()
    assert dkd.startswith("# DKD: result measured here\n")
    assert "[dkd.md](../../methods/dkd.md)" in dkd  # links back to the method page
    assert "rule of [results](../../results.md)" in dkd
    assert "pending" not in dkd.lower()
    assert row(dkd, "`scratch`")[1:3] == ["3", "79.00 ± 1.00"]
    assert row(dkd, "`kd`")[4] == "**+3.00 ± 2.00**"
    assert row(dkd, "`dkd`")[2:] == ["83.00 ± 1.00", "83.00 ± 1.00", "**+4.00 ± 1.00**",
                                     "+1.00 ± 2.00"]
    assert "--methods=scratch,kd,dkd" in dkd
    rkd = (generated / "rkd.md").read_text()
    assert rkd.startswith("# RKD: result measured here\n")
    assert "Pending: no run yet" in rkd and "--methods=scratch,kd,rkd" in rkd
    # regenerating changes nothing
    report.write_method_results(report.load_results(str(root)), str(pages), str(generated),
                                str(docs / "results.md"))
    assert (generated / "dkd.md").read_text() == dkd


def test_the_docs_method_pages_link_to_their_generated_results():
    """Every docs/methods page the report writes results for links to its file, holds no
    generated block, and the file exists."""
    docs = os.path.join(os.path.dirname(__file__), "..", "..", "docs")
    for page in report.METHOD_PAGES:
        with open(os.path.join(docs, "methods", page)) as handle:
            text = handle.read()
        assert f"](../results/methods/{page})" in text, page
        assert "Generated by" not in text and "| method | seeds |" not in text, page
        assert os.path.exists(os.path.join(docs, "results", "methods", page)), page


def test_results_page_says_it_is_generated_and_by_which_command(page):
    text, _, _ = page
    assert text.splitlines()[4].startswith(
        "*A generated page: `python -m benchmarks.report` writes it")


def test_a_shared_run_is_read_from_its_source_runs_folder(tmp_path):
    """A run `benchmarks.accuracy` reused from another grid (`shared_from`) keeps its run
    folder there: the TLLM set and the provenance line must come from that folder."""
    root = tmp_path / "results"
    for method, lasts in (("scratch", [0.78, 0.79, 0.80]), ("kd", [0.80, 0.81, 0.82]),
                          ("tllm", [0.80, 0.81, 0.82])):
        for seed, last in enumerate(lasts):
            source = write_run(root, "methods", "fmnist", method, seed, last,
                               per_class=[0.9, 0.6, 0.8])
            record = json.loads((root / "methods" / f"{source}.json").read_text())
            record["shared_from"] = os.path.join("methods", f"{source}.json")
            (root / "claims").mkdir(exist_ok=True)
            (root / "claims" / f"{run_id('claims', 'fmnist', method, seed)}.json").write_text(
                json.dumps(record))
    tllm_dir = root / "methods" / "runs" / run_id("methods", "fmnist", "tllm", 0)
    tllm_dir.mkdir(parents=True)
    (tllm_dir / "undistillable_classes.json").write_text(json.dumps({"undistillable": [2]}))
    output = tmp_path / "results.md"
    report.build_page(str(root), str(output), machine="2 CPU cores, no GPU", today="2030-01-02")
    part = section(output.read_text(), "Claim 4")
    assert "seed 0: TLLM masked classes [2]" in part
    assert "- 9 of these runs are identical runs reused from the methods grid" in part


def test_command_line_writes_the_page_and_the_method_results(tmp_path):
    """`python -m benchmarks.report` runs the package with the old flags; the method pages'
    results go to results/methods/ beside --output (or --method_results), never into the
    hand-written pages."""
    root = tmp_path / "results"
    write_seeds(root, "methods", "fmnist", "scratch", [0.78, 0.79, 0.80])
    write_seeds(root, "methods", "fmnist", "kd", [0.80, 0.82, 0.84])
    pages = tmp_path / "pages"
    pages.mkdir()
    (pages / "kd.md").write_text("# KD\n")
    repository = os.path.join(os.path.dirname(__file__), "..", "..")
    environment = dict(os.environ, PYTHONPATH=os.path.abspath(repository))
    base = [sys.executable, "-m", "benchmarks.report", f"--results_dir={root}",
            f"--method_pages={pages}", "--machine=m", "--noevaluate_students"]
    done = subprocess.run(base + [f"--output={tmp_path / 'docs' / 'results.md'}"],
                          capture_output=True, text=True, env=environment, check=True)
    assert "Wrote the measured results of 1 method pages" in done.stdout
    assert "kd.md does not link to its results file" in done.stdout
    kd = (tmp_path / "docs" / "results" / "methods" / "kd.md").read_text()
    assert row(kd, "`kd`")[4] == "**+3.00 ± 2.00**"
    assert (pages / "kd.md").read_text() == "# KD\n"
    subprocess.run(base + [f"--output={tmp_path / 'other.md'}",
                           f"--method_results={tmp_path / 'elsewhere'}"],
                   capture_output=True, text=True, env=environment, check=True)
    assert (tmp_path / "elsewhere" / "kd.md").read_text().startswith("# KD: result measured")
