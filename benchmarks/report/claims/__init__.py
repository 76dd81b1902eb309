"""The papers' claims, one module each: its section of the page (`build(report)`), its verdict
from the numbers (a pure function of `Stat`s and `Diff`s), and its `CLAIM` number and
`TITLE`."""

from __future__ import annotations

from benchmarks.report.claims import (
    claim1_kd_plus,
    claim2_tang,
    claim3_dpk,
    claim4_tllm,
    claim5_beyond,
)

# In page order.
MODULES = (claim1_kd_plus, claim2_tang, claim3_dpk, claim4_tllm, claim5_beyond)
TITLES = {module.CLAIM: module.TITLE for module in MODULES}
