"""Means and sample stds over seeds, the page's noise rule, and how numbers are written."""

from __future__ import annotations

import dataclasses

import numpy as np

RULE = ("A difference between two methods is written `d ± s`: `d` is the difference of their "
        "mean last-epoch test accuracies over seeds (points), `s` the larger of their two sample "
        "standard deviations (n - 1). It **counts** when `|d| > s` and both have at least 2 "
        "seeds; otherwise it is *within noise*. Verdicts use the last epoch, not the best: the "
        "best epoch is picked on the test set, so it is optimistic.")


@dataclasses.dataclass
class Stat:
    """Values over seeds (fractions in [0, 1]).

    Args:
        values: one value per seed.

    Example:
        >>> Stat([0.78, 0.80]).mean
        0.79
    """

    values: list

    @property
    def n(self):
        return len(self.values)

    @property
    def mean(self):
        return float(np.mean(self.values)) if self.values else None

    @property
    def std(self):
        return float(np.std(self.values, ddof=1)) if self.n > 1 else 0.0


@dataclasses.dataclass
class Diff:
    """`a - b` under the page's rule (see `RULE`).

    Args:
        d: difference of the means (fraction).
        s: the larger of the two sample standard deviations (fraction).
        enough: whether both sides have at least 2 seeds.
    """

    d: float
    s: float
    enough: bool

    @property
    def counts(self):
        return self.enough and abs(self.d) > self.s

    @property
    def higher(self):
        return self.counts and self.d > 0

    @property
    def lower(self):
        return self.counts and self.d < 0

    def text(self):
        return f"{100 * self.d:+.2f} ± {100 * self.s:.2f}"

    def cell(self):
        """The difference, bold when it counts."""
        return f"**{self.text()}**" if self.counts else self.text()


def diff(a, b):
    """`a - b` of two `Stat`s under the rule.

    Args:
        a: a `Stat`.
        b: a `Stat`.

    Returns:
        A `Diff`, or None when either is empty.
    """
    if not a.n or not b.n:
        return None
    return Diff(a.mean - b.mean, max(a.std, b.std), a.n >= 2 and b.n >= 2)


def pct(value):
    """A fraction written in percent with two decimals ("–" for None)."""
    if isinstance(value, dict):  # older run JSONs stored the teacher's training summary
        value = value.get("last")
    return "–" if value is None else f"{100 * value:.2f}"


def mean_std(stat):
    """`mean ± std` in percent, "(1 seed)" for one value, "pending" for none."""
    if stat is None or not stat.n:
        return "pending"
    if stat.n == 1:
        return f"{pct(stat.mean)} (1 seed)"
    return f"{pct(stat.mean)} ± {pct(stat.std)}"
