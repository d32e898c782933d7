"""PNG plots of a study (matplotlib, Agg backend: no display needed).

* ``learning_curves.png`` – held-out masked accuracy and loss (fixed random-token masks)
  over optimizer steps: the mean across seeds per arm, with a band for the 95% t-interval
  of the mean (the range of the seeds when there are fewer than three).
* ``mask_ratio.png`` – the masking ratio each arm used over the steps.
* ``final_metrics.png`` – one panel per final metric: arm means with 95% intervals, the
  baseline's mean as a dashed line.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats


def _pyplot():
    import matplotlib  # lazy: matplotlib is heavy and only plotting needs it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # lazy: only after the Agg backend is chosen

    return plt


def _curves(records: list[dict[str, Any]], split: str, key: str) -> dict[str, dict[int, list[float]]]:
    """``{arm: {step: [value per seed]}}`` from the runs' metrics lines."""
    out: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for record in records:
        for line in record.get("curves", []):
            if line.get("split") == split and line.get(key) is not None:
                out[record["arm"]][int(line["step"])].append(float(line[key]))
    return out


def _band(values: list[float]) -> tuple[float, float, float]:
    """Mean and a band: the 95% t-interval of the mean with 3+ values, else the range."""
    data = np.asarray(values, dtype=float)
    mean = float(data.mean())
    if data.size >= 3 and data.std(ddof=1) > 0:
        low, high = stats.t.interval(0.95, data.size - 1, loc=mean, scale=data.std(ddof=1) / np.sqrt(data.size))
        return mean, float(low), float(high)
    return mean, float(data.min()), float(data.max())


def _plot_curve(ax: Any, curves: dict[int, list[float]], label: str) -> None:
    steps = sorted(curves)
    stats = [_band(curves[s]) for s in steps]
    line = ax.plot(steps, [s[0] for s in stats], marker="o", markersize=3, label=label)[0]
    ax.fill_between(steps, [s[1] for s in stats], [s[2] for s in stats], color=line.get_color(), alpha=0.2)


def plot_study(results: dict[str, Any], records: list[dict[str, Any]], out_dir: Path) -> list[Path]:
    """Write the study's plots into ``out_dir``; returns their paths."""
    plt = _pyplot()
    arms = list(results["study"]["arms"])
    written = []

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for key, ax, title in (("masked_accuracy", axes[0], "held-out masked accuracy"),
                           ("eval_loss", axes[1], "held-out loss")):
        curves = _curves(records, "eval", key)
        for arm in arms:
            if curves.get(arm):
                _plot_curve(ax, curves[arm], arm)
        ax.set_title(f"{title} (fixed 15% random-token masks)", fontsize=10)
        ax.set_xlabel("optimizer step")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    written.append(_save(fig, out_dir / "learning_curves.png", plt))

    fig, ax = plt.subplots(figsize=(6, 4))
    ratios = _curves(records, "train", "mask_ratio")
    for arm in arms:
        if ratios.get(arm):
            steps = sorted(ratios[arm])
            ax.plot(steps, [float(np.mean(ratios[arm][s])) for s in steps], label=arm)
    ax.set_title("masking ratio over training", fontsize=10)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("share of tokens predicted")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    written.append(_save(fig, out_dir / "mask_ratio.png", plt))

    metrics = results["metrics"]
    if metrics:
        columns = min(4, len(metrics))
        rows = -(-len(metrics) // columns)
        fig, axes = plt.subplots(rows, columns, figsize=(3.6 * columns, 3.0 * rows), squeeze=False)
        for ax, metric in zip(axes.flat, metrics, strict=False):
            means, errors = [], [[], []]
            for arm in arms:
                s = results["arms"][arm].get(metric) or {}
                mean = s.get("mean")
                means.append(np.nan if mean is None else mean)
                ci = s.get("ci95")
                errors[0].append(0.0 if ci is None or mean is None else mean - ci[0])
                errors[1].append(0.0 if ci is None or mean is None else ci[1] - mean)
            # points with interval bars (not bars from zero): most metrics do not start at 0
            ax.errorbar(range(len(arms)), means, yerr=errors, fmt="o", capsize=4, color="tab:blue")
            base = arms.index(results["study"]["baseline"])
            if np.isfinite(means[base]):
                ax.axhline(means[base], color="grey", linestyle="--", linewidth=0.8)
            ax.set_xticks(range(len(arms)))
            ax.set_xticklabels(arms, rotation=60, ha="right", fontsize=7)
            arrow = "↓" if metric in results["lower_is_better"] else "↑"
            ax.set_title(f"{metric} {arrow}", fontsize=9)
            ax.set_xlim(-0.5, len(arms) - 0.5)
            ax.grid(axis="y", alpha=0.3)
        for ax in list(axes.flat)[len(metrics):]:
            ax.axis("off")
        fig.suptitle("final metrics: mean over seeds with 95% t-interval (dashed: baseline mean)", fontsize=10)
        fig.tight_layout()
        written.append(_save(fig, out_dir / "final_metrics.png", plt))
    return written


def _save(fig: Any, path: Path, plt: Any) -> Path:
    """Save atomically (a temporary file renamed into place)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    tmp.replace(path)
    return path
