"""The page's PNGs (matplotlib on an Agg canvas, no display needed): one function per plot,
each returning a `Figure` that `save` writes."""

from __future__ import annotations

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import NullLocator

# Every PNG the page may show; build_page removes them first so a plot whose data is gone
# does not linger.
NAMES = ("methods.png", "claim1_kd_plus.png", "claim2_tang.png", "claim3_dpk.png",
         "claim4_tllm_per_class.png", "claim5_noise_imbalance.png", "cifar100.png")
ACCURACY_LABEL = "last-epoch test accuracy (%)"


def figure(width=7.0, height=3.8, panels=1):
    """A figure on an Agg canvas and its `panels` axes side by side."""
    result = Figure(figsize=(width, height))
    FigureCanvasAgg(result)
    axes = [result.add_subplot(1, panels, i + 1) for i in range(panels)]
    return result, axes


def save(result, path):
    """Writes the figure as a PNG at 100 dpi; returns `path`."""
    result.tight_layout()
    result.savefig(path, dpi=100)
    return path


def errorbar(axis, xs, stats, label, **kwargs):
    """Means ± stds (in %) of the non-empty `Stat`s at `xs`."""
    points = [(x, s) for x, s in zip(xs, stats) if s is not None and s.n]
    if points:
        axis.errorbar([x for x, _ in points], [100 * s.mean for _, s in points],
                      yerr=[100 * s.std for _, s in points], marker="o", capsize=3,
                      label=label, **kwargs)


def params_axis(axis, params):
    """Log x axis whose ticks are exactly the given parameter counts (e.g. 220k, 1.2M)."""

    def short(n):
        return f"{n / 1e6:.3g}M" if n >= 1e6 else f"{n / 1e3:.3g}k" if n >= 1e3 else str(n)

    axis.set_xscale("log")
    axis.xaxis.set_minor_locator(NullLocator())
    axis.set_xticks(list(params), [short(p) for p in params])


def _bars(axis, plotted, color, extra_high=None):
    """Bars of `(name, Stat)` means ± stds, the y range fitted to them (and `extra_high`)."""
    means = [100 * s.mean for _, s in plotted]
    axis.bar(range(len(plotted)), means, yerr=[100 * s.std for _, s in plotted], capsize=3,
             color=color)
    low = min(m - 100 * s.std for m, (_, s) in zip(means, plotted))
    high = max(m + 100 * s.std for m, (_, s) in zip(means, plotted))
    if extra_high is not None:
        high = max(high, extra_high)
    axis.set_ylim(low - 1.0, high + 1.0)


def all_methods(plotted, teacher, scratch):
    """Every method's last-epoch accuracy; `plotted` is `[(method, Stat)]`."""
    result, (axis,) = figure(width=max(6.0, 0.45 * len(plotted) + 2.0))
    names = [m for m, _ in plotted]
    teacher_accuracy = 100 * teacher["test_accuracy"] if teacher else None
    _bars(axis, plotted, ["tab:gray" if m == "scratch" else "tab:blue" for m in names],
          teacher_accuracy)
    if teacher:
        axis.axhline(teacher_accuracy, color="black", linestyle="--", linewidth=1,
                     label="teacher")
    if scratch.n:
        axis.axhline(100 * scratch.mean, color="tab:gray", linestyle=":", linewidth=1,
                     label="scratch")
    axis.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=8)
    axis.set_ylabel(ACCURACY_LABEL)
    axis.set_title("Fashion-MNIST: every method (mean ± std over seeds)")
    axis.legend(fontsize=8)
    return result


def kd_plus_capacity(widths):
    """Claim 1: scratch / KD / KD+ against the student's parameters."""
    result, (axis,) = figure()
    xs = [w["params"] for w in widths]
    for method, label in (("scratch", "scratch"), ("kd", "KD"), ("kd_plus", "KD+")):
        errorbar(axis, xs, [w[method] for w in widths], label)
    teachers = [w["teacher"] for w in widths if w["teacher"] is not None]
    if teachers:
        axis.axhline(100 * teachers[0], color="black", linestyle="--", linewidth=1,
                     label="teacher")
    params_axis(axis, xs)
    axis.set_xlabel("student parameters")
    axis.set_ylabel(ACCURACY_LABEL)
    axis.set_title("KD+ vs student capacity")
    axis.legend(fontsize=8)
    return result


def tang_ablation(plotted):
    """Claim 2: each Tang et al. variant's accuracy; `plotted` is `[(method, Stat)]`."""
    result, (axis,) = figure()
    _bars(axis, plotted, "tab:blue")
    axis.set_xticks(range(len(plotted)), [m for m, _ in plotted], rotation=30, ha="right",
                    fontsize=8)
    axis.set_ylabel(ACCURACY_LABEL)
    axis.set_title("Tang et al. ablation (mean ± std over seeds)")
    return result


def dpk_teachers(points):
    """Claim 3: KD and DPK students against the teacher's size and accuracy."""
    result, axes = figure(width=9.0, panels=2)
    for axis, key, label in ((axes[0], "params", "teacher parameters"),
                             (axes[1], "accuracy", "teacher test accuracy (%)")):
        xs = [p[key] if key == "params" else 100 * p[key] for p in points]
        errorbar(axis, xs, [p["kd"] for p in points], "KD")
        errorbar(axis, xs, [p["dpk"] for p in points], "DPK")
        if key == "params":
            params_axis(axis, xs)
        axis.set_xlabel(label)
        axis.set_ylabel("student last-epoch test accuracy (%)")
        axis.legend(fontsize=8)
    result.suptitle("Student accuracy vs teacher (fmnist_student_small)")
    return result


def tllm_per_class(gains, names, undistillable):
    """Claim 4: per-class gain over scratch; `gains` maps "kd" / "tllm" to per-class `Diff`s."""
    classes = len(names)
    result, (axis,) = figure(width=max(7.0, 0.5 * classes + 2.0))
    positions = np.arange(classes)
    for offset, method, color in ((-0.2, "kd", "tab:blue"), (0.2, "tllm", "tab:orange")):
        values = gains[method]
        if all(v is None for v in values):
            continue
        axis.bar(positions + offset, [100 * v.d if v else 0.0 for v in values], width=0.4,
                 yerr=[100 * v.s if v else 0.0 for v in values], capsize=2, color=color,
                 label=f"{'KD' if method == 'kd' else 'TLLM'} − scratch")
    axis.axhline(0.0, color="black", linewidth=0.8)
    axis.set_xticks(positions, names, rotation=45, ha="right", fontsize=8)
    for k in undistillable:
        axis.get_xticklabels()[k].set_color("tab:red")
    axis.set_ylabel("per-class accuracy gain (points)")
    axis.set_title("Per-class gain over scratch (undistillable classes in red)")
    axis.legend(fontsize=8)
    return result


def noise_imbalance(results, noise_rates, imbalance_ratios):
    """Claim 5: KD − scratch against the noise rate and the imbalance ratio (clean at left)."""
    result, axes = figure(width=9.0, panels=2)
    for axis, prefix, xlabel, log in ((axes[0], "noise", "symmetric label noise rate", False),
                                      (axes[1], "imbalance", "imbalance ratio", True)):
        chosen = [r for r in results if r["gain"] is not None and
                  (r["group"].startswith(prefix) or r["group"] == "fmnist")]
        xs = [r["level"] if r["group"] != "fmnist" else (1.0 if log else 0.0) for r in chosen]
        if chosen:
            axis.errorbar(xs, [100 * r["gain"].d for r in chosen],
                          yerr=[100 * r["gain"].s for r in chosen], marker="o", capsize=3)
        axis.axhline(0.0, color="black", linewidth=0.8)
        if log:
            axis.set_xscale("log")
            ticks = [1.0] + list(imbalance_ratios)
            axis.set_xlim(0.6, 1.6 * ticks[-1])
        else:
            ticks = [0.0] + list(noise_rates)
            axis.set_xlim(-0.05, ticks[-1] + 0.05)
        axis.set_xticks(ticks, ["clean" if t in (0.0, 1.0) else f"{t:g}" for t in ticks])
        axis.set_xlabel(xlabel)
        axis.set_ylabel("KD − scratch (points, ± larger std)")
    result.suptitle("KD's gain over scratch under corrupted training data")
    return result


def cifar100_against_reference(pairs, methods):
    """Measured CIFAR-100 top-1 against the papers'; `pairs` is `[(method, reference, Stat)]`."""
    result, (axis,) = figure(width=5.0, height=4.5)
    for method in methods:
        chosen = [(ref, stat) for m, ref, stat in pairs if m == method]
        if chosen:
            axis.errorbar([ref for ref, _ in chosen], [100 * st.mean for _, st in chosen],
                          yerr=[100 * st.std for _, st in chosen], marker="o",
                          linestyle="none", capsize=3, label=method)
    values = [ref for _, ref, _ in pairs] + [100 * st.mean for _, _, st in pairs]
    axis.plot([min(values) - 1, max(values) + 1], [min(values) - 1, max(values) + 1],
              color="gray", linestyle="--", linewidth=0.8, label="measured = reference")
    axis.set_xlabel("reference top-1 % (CRD / DKD papers)")
    axis.set_ylabel("measured top-1 % (last epoch)")
    axis.legend(fontsize=8)
    return result
