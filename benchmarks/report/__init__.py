"""Writes docs/results.md, its plots and the method pages' results from the accuracy
benchmark's run JSONs.

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

Each method page under docs/methods/ gets a generated results file,
docs/results/methods/<page>.md, that the hand-written page links to.

Per-class test accuracy (claim 4, TLLM) comes from the run JSON when the
recipe recorded it, else from the run's saved student unless
`--noevaluate_students` (see `per_class`).

The package: `statistics` (means, stds, the rule), `runs` (reading run JSONs),
`sections` (expected runs, provenance, tables), `plots` (PNGs), one module per
claim under `claims/`, `all_methods` and `cifar100` (the other sections),
`page` (the page and its header), `method_results` (the per-method files) and
`__main__` (the command line).
"""

from __future__ import annotations

from benchmarks.report.claims.claim1_kd_plus import kd_plus_verdict
from benchmarks.report.claims.claim2_tang import tang_verdict
from benchmarks.report.claims.claim3_dpk import dpk_verdict
from benchmarks.report.claims.claim4_tllm import tllm_verdict
from benchmarks.report.claims.claim5_beyond import beyond_verdict
from benchmarks.report.method_results import METHOD_PAGES, write_method_results
from benchmarks.report.page import Report, build_page
from benchmarks.report.runs import load_results
from benchmarks.report.statistics import RULE, Diff, Stat, diff

__all__ = ["METHOD_PAGES", "RULE", "Diff", "Report", "Stat", "beyond_verdict", "build_page",
           "diff", "dpk_verdict", "kd_plus_verdict", "load_results", "tang_verdict",
           "tllm_verdict", "write_method_results"]
