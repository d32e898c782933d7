"""``mlmkit runs ls``: the runs under a directory, newest first."""

# Library imports (mlmkit's other layers and their dependencies) sit inside the functions that use them, so that
# `mlmkit --help` imports only this layer.

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from mlmkit.cli.common import out_console, print_json, user_errors

app = typer.Typer(help="Look at the runs on disk.", no_args_is_help=True)


def _score(values: dict[str, float], key: str) -> str:
    return f"{values[key]:.3f}" if key in values else "–"


@app.command("ls")
@user_errors
def ls_command(
    directory: str = typer.Argument("runs", help="Folder to search for run directories (recursively)."),
    as_json: bool = typer.Option(False, "--json", help="Print the runs as JSON."),
) -> None:
    """List pre-training and fine-tuning runs: strategy, steps, masked accuracy before/after, downstream scores."""
    from mlmkit.training.run_summary import find_runs

    runs = find_runs(directory)
    if as_json:
        print_json([asdict(run) for run in runs])
        return
    table = Table(title=f"{len(runs)} run(s) in {directory}, newest first",
                  caption="masked acc.: held-out masked-token accuracy before → after pre-training; "
                          "downstream: fine-tuned accuracy / macro-F1")
    table.add_column("run", no_wrap=True)
    table.add_column("strategy")
    table.add_column("steps", justify="right")
    table.add_column("masked acc.", justify="right")
    table.add_column("downstream", justify="right")
    table.add_column("date")
    for run in runs:
        mlm = f"{_score(run.before, 'masked_accuracy')} → {_score(run.after, 'masked_accuracy')}" \
            if run.kind == "pretrain" else "–"
        downstream = f"{_score(run.downstream, 'accuracy')} / {_score(run.downstream, 'macro_f1')}" \
            if run.downstream else "–"
        table.add_row(
            escape(str(Path(run.path).relative_to(directory))) + ("" if run.finished else " [yellow](unfinished)[/]"),
            run.strategy if run.kind == "pretrain" else "(finetune)", f"{run.steps:,}", mlm, downstream,
            run.date.replace("T", " ")[:16],
        )
    out_console.print(table)
