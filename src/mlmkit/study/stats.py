"""Statistics of a comparison: per-arm intervals and paired tests against the baseline.

Everything is computed by SciPy and statsmodels:

* per arm and metric: mean, sample standard deviation (``ddof=1``) and the 95%
  Student-t interval of the mean (``scipy.stats.t.interval`` with ``n - 1`` degrees of
  freedom and the standard error ``sd / sqrt(n)``);
* per arm against the baseline: the differences paired by seed (same seed = same
  initial weights, data order and evaluation split), their mean and 95% t-interval and
  the two-sided paired t-test (``scipy.stats.ttest_rel``);
* across the arms compared with the baseline, for each metric, Holm's step-down
  correction of the p-values (``statsmodels.stats.multitest.multipletests``), which keeps
  the family-wise error rate at 5% however many arms are compared.

With one seed there is no spread to estimate: intervals and p-values are ``None``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy import stats
from statsmodels.stats.multitest import multipletests

ALPHA = 0.05


def _finite(value: float) -> float | None:
    return float(value) if value is not None and math.isfinite(float(value)) else None


def summarize(values: Sequence[float], confidence: float = 0.95) -> dict[str, Any]:
    """``values``, ``n``, ``mean``, ``sd`` (ddof=1) and the t-interval ``ci95`` of the mean."""
    data = np.asarray(values, dtype=float)
    n = int(data.size)
    out: dict[str, Any] = {"values": [float(v) for v in data], "n": n,
                           "mean": float(data.mean()) if n else None, "sd": None, "ci95": None}
    if n >= 2:
        sd = float(data.std(ddof=1))
        out["sd"] = sd
        if sd == 0.0:
            out["ci95"] = [out["mean"], out["mean"]]
        else:
            low, high = stats.t.interval(confidence, n - 1, loc=data.mean(), scale=sd / math.sqrt(n))
            out["ci95"] = [float(low), float(high)]
    return out


def paired_difference(arm: Sequence[float], baseline: Sequence[float], confidence: float = 0.95) -> dict[str, Any]:
    """Arm minus baseline, paired by position (seed): mean, its t-interval and the paired t-test p-value."""
    a, b = np.asarray(arm, dtype=float), np.asarray(baseline, dtype=float)
    if a.shape != b.shape:
        raise ValueError("paired values need the same seeds on both sides")
    diff = a - b
    out: dict[str, Any] = {"differences": [float(d) for d in diff], "n": int(diff.size),
                           "mean": float(diff.mean()) if diff.size else None, "ci95": None, "p_value": None}
    if diff.size < 2:
        return out
    if float(diff.std(ddof=1)) == 0.0:
        # identical differences: no spread, so the t statistic is undefined
        out["ci95"] = [out["mean"], out["mean"]]
        out["p_value"] = 1.0 if out["mean"] == 0.0 else None
        return out
    result = stats.ttest_rel(a, b)
    interval = result.confidence_interval(confidence)
    out["ci95"] = [float(interval.low), float(interval.high)]
    out["p_value"] = _finite(result.pvalue)
    return out


def holm(p_values: Mapping[str, float | None]) -> dict[str, float | None]:
    """Holm-corrected p-values; entries that are ``None`` stay ``None`` and do not count."""
    keys = [k for k, p in p_values.items() if p is not None]
    corrected: dict[str, float | None] = dict.fromkeys(p_values)
    if keys:
        _, adjusted, _, _ = multipletests([p_values[k] for k in keys], alpha=ALPHA, method="holm")
        corrected.update({k: float(p) for k, p in zip(keys, adjusted, strict=True)})
    return corrected


def compare_arms(values: Mapping[str, Mapping[int, float]], baseline: str,
                 lower_is_better: bool = False) -> tuple[dict[str, Any], dict[str, Any]]:
    """Per-arm summaries and Holm-corrected paired comparisons with ``baseline`` for one metric.

    Args:
        values: ``{arm: {seed: value}}``.
        baseline: the arm every other arm is compared with.
        lower_is_better: True for losses and perplexities (decides the word 'better').

    Returns:
        ``(summaries, comparisons)``: ``{arm: summarize(...)}`` (values in seed order, with
        ``seeds``) and ``{arm: paired_difference(...) + p_holm, significant, verdict}``.
    """
    summaries = {}
    for arm, by_seed in values.items():
        seeds = sorted(by_seed)
        summaries[arm] = {"seeds": seeds, **summarize([by_seed[s] for s in seeds])}
    comparisons: dict[str, Any] = {}
    base = values.get(baseline, {})
    for arm, by_seed in values.items():
        if arm == baseline:
            continue
        seeds = sorted(set(by_seed) & set(base))
        entry = {"seeds": seeds, **paired_difference([by_seed[s] for s in seeds], [base[s] for s in seeds])}
        comparisons[arm] = entry
    corrected = holm({arm: c["p_value"] for arm, c in comparisons.items()})
    for arm, entry in comparisons.items():
        entry["p_holm"] = corrected[arm]
        entry["significant"] = entry["p_holm"] is not None and entry["p_holm"] < ALPHA
        entry["verdict"] = verdict(entry, lower_is_better)
    return summaries, comparisons


def verdict(entry: Mapping[str, Any], lower_is_better: bool) -> str:
    """'better', 'worse', 'no significant difference' or 'not testable' (fewer than 2 paired seeds)."""
    if entry.get("p_holm") is None:
        return "not testable"
    if not entry["significant"]:
        return "no significant difference"
    improved = entry["mean"] < 0 if lower_is_better else entry["mean"] > 0
    return "better" if improved else "worse"
