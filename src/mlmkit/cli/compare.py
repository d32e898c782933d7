"""``mlmkit compare``: which masking is better? Arms x seeds at equal compute, with confidence intervals."""

# Library imports (mlmkit's other layers and their dependencies) sit inside the functions that use them, so that
# `mlmkit --help` imports only this layer.

from __future__ import annotations

import typer
from rich.table import Table

from mlmkit.cli.common import err_console, out_console, print_json, quiet_libraries, user_errors


@user_errors
def compare_command(
    overrides: list[str] = typer.Argument(None, help="Overrides: pre-training keys apply to every run "
                                                     "(train.max_steps=300); study keys to the study (seeds=[0,1])."),
    recipe: str = typer.Option(..., "--recipe", "-r", help="Study recipe path or packaged name (recipes/compare)."),
    study_dir: str = typer.Option(None, "--dir", "-d", help="Study directory (default: runs/compare/<recipe>)."),
    shard: str = typer.Option(None, "--shard", help="Run only the share i/n of the runs (0 <= i < n), e.g. "
                                                    "$SLURM_ARRAY_TASK_ID/4; gather with --report."),
    report_only: bool = typer.Option(False, "--report", help="Only gather the finished runs and write the report."),
    allow_partial: bool = typer.Option(False, "--allow-partial", help="With --report: report the finished runs even "
                                                                      "if some are missing."),
    as_json: bool = typer.Option(False, "--json", help="Print the results as JSON."),
) -> None:
    """Pre-train every arm of a study recipe with every seed, evaluate, and compare with the baseline."""
    from mlmkit.study.recipe import load_study, parse_shard
    from mlmkit.study.report import write_report
    from mlmkit.study.runner import prepare_pmi_vocabulary, prepare_tokenizer, run_study

    quiet_libraries()
    part = parse_shard(shard)
    study = load_study(recipe, list(overrides or []), study_dir)
    tokenizer = prepare_tokenizer(study, err_console, train=not report_only)
    if tokenizer is not None:
        study = load_study(recipe, list(overrides or []), study_dir, tokenizer_dir=tokenizer)
    progress = None
    if not report_only:
        prepare_pmi_vocabulary(study, err_console)
        err_console.print(f"study {study.name}: {len(study.config.arms)} arms x {len(study.config.seeds)} seeds = "
                          f"{len(study.runs)} runs in {study.dir}" + (f" (shard {shard})" if part else ""))
        progress = run_study(study, part, err_console)
        err_console.print(f"{len(progress.executed)} run(s) trained ({len(progress.resumed)} resumed), "
                          f"{len(progress.skipped)} skipped, in {progress.seconds:.0f} s")
        if progress.missing:
            message = (f"{len(progress.missing)} run(s) of the study are not finished yet (other shards); when "
                       f"they are, gather them with: mlmkit compare --recipe {recipe} --report")
            if as_json:
                print_json({"executed": progress.executed, "resumed": progress.resumed,
                            "skipped": progress.skipped, "missing": progress.missing})
            else:
                out_console.print(message)
            return
    results = write_report(study, allow_partial=allow_partial)
    if as_json:
        payload = dict(results)
        if progress is not None:
            payload["progress"] = {"executed": progress.executed, "resumed": progress.resumed,
                                   "skipped": progress.skipped}
        print_json(payload)
        return
    _print_table(results)
    out_console.print(f"report: {study.dir / 'report.md'}; results: {study.dir / 'results.json'}; plots: "
                      + ", ".join(p.split("/")[-1] for p in results["plots"]))


def _print_table(results: dict) -> None:
    """Arms as rows, the headline metrics as columns (means over seeds); the full table is in report.md."""
    arms = list(results["study"]["arms"])
    baseline = results["study"]["baseline"]
    shown = results["metrics"][:6]
    table = Table(title=f"study {results['study']['name']}: means over {len(results['study']['seeds'])} seeds; "
                        f"vs {baseline}: Holm-corrected paired t-tests")
    table.add_column("arm")
    for metric in shown:
        table.add_column(metric.replace("_", " "), justify="right")
    for arm in arms:
        cells = []
        for metric in shown:
            s = results["arms"][arm].get(metric)
            if not s:
                cells.append("–")
                continue
            text = f"{s['mean']:.4g}"
            verdict = results["comparisons"].get(arm, {}).get(metric, {}).get("verdict")
            if verdict in ("better", "worse"):
                text += " [green]▲[/]" if verdict == "better" else " [red]▼[/]"
            cells.append(text)
        table.add_row(arm, *cells)
    out_console.print(table)
    out_console.print("▲/▼: significantly better/worse than the baseline; unmarked: no significant difference "
                      "(standard deviations, intervals and p-values: report.md)")
