"""Turn a study's finished runs into ``results.json``, ``report.md`` and plots."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mlmkit.errors import UserError
from mlmkit.evaluation.masked import FAMILIES, LOWER_IS_BETTER
from mlmkit.io.outputs import write_text_atomic
from mlmkit.study.plots import plot_study
from mlmkit.study.recipe import Study
from mlmkit.study.runner import collect_results
from mlmkit.study.stats import compare_arms

#: counts and sizes in an evaluation report: context, not outcomes to compare
COUNT_METRICS = frozenset({"eval_tokens", "whole_word_tokens", "whole_words", "pll_sequences", "pll_tokens"})
#: the metrics shown first in the tables and bar charts, in this order (others follow)
HEADLINE = ("masked_accuracy", "perplexity", "whole_word_accuracy", "pseudo_perplexity", "content_word_accuracy",
            "function_word_accuracy", "probe_accuracy", "probe_macro_f1", "finetune_accuracy", "finetune_macro_f1")


def run_metrics(record: dict[str, Any]) -> tuple[dict[str, float], dict[str, str]]:
    """The comparable outcomes of one run and their evaluation families."""
    evaluation = record["evaluation"]
    values = {k: v for k, v in evaluation["metrics"].items() if k not in COUNT_METRICS and v is not None}
    families = {k: evaluation["families"][k] for k in values}
    for name, value in (record.get("finetune") or {}).items():
        values[name] = value
        families[name] = "finetune"
    return values, families


def build_results(study: Study, records: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-arm summaries and paired, Holm-corrected comparisons for every metric."""
    arms = list(study.config.arms)
    by_metric: dict[str, dict[str, dict[int, float]]] = {}
    families: dict[str, str] = {}
    for record in records:
        values, fams = run_metrics(record)
        families.update(fams)
        for name, value in values.items():
            by_metric.setdefault(name, {arm: {} for arm in arms})[record["arm"]][int(record["seed"])] = float(value)
    order = [m for m in HEADLINE if m in by_metric] + sorted(m for m in by_metric if m not in HEADLINE)
    summaries: dict[str, dict[str, Any]] = {arm: {} for arm in arms}
    comparisons: dict[str, dict[str, Any]] = {arm: {} for arm in arms if arm != study.baseline}
    for metric in order:
        per_arm = {arm: seeds for arm, seeds in by_metric[metric].items() if seeds}
        if study.baseline not in per_arm:
            continue
        arm_summary, arm_comparison = compare_arms(per_arm, study.baseline, metric in LOWER_IS_BETTER)
        for arm, summary in arm_summary.items():
            summaries[arm][metric] = summary
        for arm, comparison in arm_comparison.items():
            comparisons[arm][metric] = comparison
    timing = {arm: [r["pretrain"]["train_seconds"] for r in records if r["arm"] == arm] for arm in arms}
    return {
        "study": {"name": study.name, "recipe": study.recipe_path, "base": study.config.base,
                  "shared_overrides": list(study.config.overrides), "seeds": list(study.config.seeds),
                  "baseline": study.baseline, "arms": study.arm_masking,
                  "steps": records[0]["pretrain"]["steps"] if records else None,
                  "tokens_per_run": records[0].get("tokens") if records else None},
        "metrics": order,
        "families": {m: families[m] for m in order},
        "family_descriptions": {k: {"masks": v[0], "bias": v[1]} for k, v in FAMILIES.items()},
        "lower_is_better": sorted(m for m in order if m in LOWER_IS_BETTER),
        "arms": summaries,
        "comparisons": comparisons,
        "train_seconds": timing,
    }


def _fmt(value: float | None, digits: int = 4) -> str:
    if value is None:
        return "–"
    return f"{value:,.2f}" if abs(value) >= 100 else f"{value:.{digits}f}"


def _interval(ci: list[float] | None, digits: int = 4) -> str:
    return "–" if ci is None else f"[{_fmt(ci[0], digits)}, {_fmt(ci[1], digits)}]"


def _p(value: float | None) -> str:
    return "–" if value is None else ("<0.001" if value < 0.001 else f"{value:.3f}")


def render_markdown(results: dict[str, Any], plots: list[str]) -> str:
    """``report.md``: set-up, per-arm table, comparisons with the baseline, conclusions in words."""
    info = results["study"]
    baseline = info["baseline"]
    n_seeds = len(info["seeds"])
    lines = [f"# Study `{info['name']}`", ""]
    lines.append(f"Base recipe `{info['base']}`, {info['steps']} optimizer steps per run "
                 f"({info['tokens_per_run']:,} tokens), seeds {info['seeds']}; every arm runs with the same steps, "
                 "batch, data order (per seed), initial weights (per seed) and evaluation masks. "
                 f"Baseline: `{baseline}`.")
    lines += ["", "| arm | masking |", "|---|---|"]
    for arm, masking in info["arms"].items():
        lines.append(f"| {arm} | `{json.dumps(masking, sort_keys=True)}` |")
    lines += ["", "## Results (mean ± sd over seeds, 95% t-interval of the mean)", ""]
    metrics = results["metrics"]
    lines.append("| metric | family | " + " | ".join(info["arms"]) + " |")
    lines.append("|---|---|" + "---|" * len(info["arms"]))
    for metric in metrics:
        cells = []
        for arm in info["arms"]:
            s = results["arms"][arm].get(metric)
            if not s:
                cells.append("–")
                continue
            spread = f" ± {_fmt(s['sd'])}" if s["sd"] is not None else ""
            cells.append(f"{_fmt(s['mean'])}{spread} {_interval(s['ci95'])}")
        arrow = "↓" if metric in results["lower_is_better"] else "↑"
        lines.append(f"| {metric} {arrow} | {results['families'][metric]} | " + " | ".join(cells) + " |")
    lines += ["", f"## Paired differences with `{baseline}` (arm − baseline, by seed)", "",
              "p: two-sided paired t-test; p (Holm): corrected across the arms for each metric.", "",
              "| arm | metric | difference | 95% CI | p | p (Holm) | verdict |", "|---|---|---|---|---|---|---|"]
    for arm, per_metric in results["comparisons"].items():
        for metric in metrics:
            c = per_metric.get(metric)
            if c:
                lines.append(f"| {arm} | {metric} | {_fmt(c['mean'])} | {_interval(c['ci95'])} | {_p(c['p_value'])} "
                             f"| {_p(c['p_holm'])} | {c['verdict']} |")
    lines += ["", "## What the data say", ""]
    lines += conclusions(results, n_seeds)
    lines += ["", "## Evaluation families", "",
              "No single masking of the held-out text is neutral; read each number with its family:", ""]
    for family in sorted(set(results["families"].values())):
        desc = results["family_descriptions"].get(family)
        if desc:
            lines.append(f"- **{family}**: {desc['masks']} — {desc['bias']}.")
        elif family == "finetune":
            lines.append("- **finetune**: full fine-tuning of every run's encoder (downstream): the study's "
                         "fine-tuning recipe (`finetune_*`) and its suite's tasks (`suite_<task>_<metric>`).")
    lines += ["", "## Training time per run (s)", "", "| arm | seconds per run |", "|---|---|"]
    for arm, seconds in results["train_seconds"].items():
        lines.append(f"| {arm} | {', '.join(f'{s:.0f}' for s in seconds)} |")
    if plots:
        lines += ["", "## Plots", ""] + [f"![{Path(p).stem}]({Path(p).name})" for p in plots]
    return "\n".join(lines) + "\n"


def conclusions(results: dict[str, Any], n_seeds: int) -> list[str]:
    """One sentence per arm: which differences with the baseline are significant after correction."""
    baseline = results["study"]["baseline"]
    out = []
    if n_seeds < 2:
        return [f"Only one seed: no spread can be estimated, so no difference with `{baseline}` can be tested."]
    for arm, per_metric in results["comparisons"].items():
        if not per_metric:
            out.append(f"- `{arm}`: no finished run to compare.")
            continue
        better = [m for m, c in per_metric.items() if c["verdict"] == "better"]
        worse = [m for m, c in per_metric.items() if c["verdict"] == "worse"]
        if not better and not worse:
            out.append(f"- `{arm}`: no significant difference from `{baseline}` on any metric "
                       f"({n_seeds} seeds, Holm-corrected α = 0.05).")
            continue
        parts = []
        if better:
            parts.append("significantly better on " + ", ".join(f"{m} ({results['families'][m]})" for m in better))
        if worse:
            parts.append("significantly worse on " + ", ".join(f"{m} ({results['families'][m]})" for m in worse))
        rest = len(per_metric) - len(better) - len(worse)
        out.append(f"- `{arm}`: " + "; ".join(parts) + f"; no significant difference on the other {rest} metric(s).")
    return out


def write_report(study: Study, allow_partial: bool = False) -> dict[str, Any]:
    """Gather the finished runs, write ``results.json``, the plots and ``report.md``; returns the results."""
    records, missing = collect_results(study)
    if missing and not allow_partial:
        raise UserError(f"{len(missing)} of {len(study.runs)} runs are not finished ({', '.join(missing[:4])}"
                        f"{', ...' if len(missing) > 4 else ''}); run the remaining shards first")
    if not records:
        raise UserError(f"no finished runs in {study.dir}")
    results = build_results(study, records)
    results["missing_runs"] = missing
    plots = plot_study(results, records, study.dir)
    results["plots"] = [str(p) for p in plots]
    write_text_atomic(study.dir / "results.json", json.dumps(results, indent=1, default=str))
    write_text_atomic(study.dir / "report.md", render_markdown(results, [str(p) for p in plots]))
    return results
