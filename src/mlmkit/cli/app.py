"""The ``mlmkit`` command line. Each command lives in its own module; heavy imports are lazy."""

from __future__ import annotations

import typer

from mlmkit import __version__
from mlmkit.cli import cache as cache_cli
from mlmkit.cli import finetune, masking, runs
from mlmkit.cli import tokenizer as tokenizer_cli
from mlmkit.cli.compare import compare_command
from mlmkit.cli.evaluate import evaluate_command
from mlmkit.cli.fill_mask import fill_mask_command
from mlmkit.cli.plot import plot_command
from mlmkit.cli.prepare import prepare_command
from mlmkit.cli.pretrain import pretrain_command
from mlmkit.cli.push import push_command
from mlmkit.cli.score import score_command

app = typer.Typer(
    name="mlmkit",
    help="Masked language modeling on the Hugging Face stack: pretrain, finetune, fill-mask.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
app.command("pretrain")(pretrain_command)
app.command("prepare")(prepare_command)
app.add_typer(cache_cli.app, name="cache")
app.command("fill-mask")(fill_mask_command)
app.command("score")(score_command)
app.command("evaluate")(evaluate_command)
app.command("compare")(compare_command)
app.add_typer(finetune.app, name="finetune")
app.add_typer(masking.app, name="masking")
app.add_typer(tokenizer_cli.app, name="tokenizer")
app.command("plot")(plot_command)
app.command("push")(push_command)
app.add_typer(runs.app, name="runs")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"mlmkit {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version."),
) -> None:
    """Masked language modeling on the Hugging Face stack."""


def main() -> None:
    """Console-script entry point."""
    app()
