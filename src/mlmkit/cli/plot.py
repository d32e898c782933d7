"""``mlmkit plot``: overlay the training curves of several runs in one picture."""

# Library imports (mlmkit's other layers and their dependencies) sit inside the functions that use them, so that
# `mlmkit --help` imports only this layer.

from __future__ import annotations

import typer

from mlmkit.cli.common import err_console, user_errors


@user_errors
def plot_command(
    run_dirs: list[str] = typer.Argument(..., help="Run directories (each with a metrics.jsonl)."),
    output: str = typer.Option(..., "--output", "-o", help="Picture to write: .png, .svg, .pdf, ..."),
    labels: str = typer.Option(None, "--labels", "-l",
                               help="Comma-separated names of the runs, in order (default: directory names)."),
    title: str = typer.Option(None, "--title", help="Title above the panels."),
) -> None:
    """Plot loss, held-out accuracy, learning rate and masking ratio of one or more runs, overlaid."""
    from mlmkit.training.run_plots import plot_run_dirs

    names = [name.strip() for name in labels.split(",")] if labels is not None else None
    path = plot_run_dirs(run_dirs, output, labels=names, title=title)
    err_console.print(f"wrote {path}", highlight=False, soft_wrap=True)
