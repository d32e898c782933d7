"""The ``mlmkit`` command line. Each command lives in its own module; heavy imports are lazy."""

from __future__ import annotations

from typing import Any

import typer
from typer.core import TyperGroup

try:  # recent Typer parses with its own copy of Click; older releases use Click itself
    from typer._click.exceptions import NoArgsIsHelpError, UsageError
except ImportError:  # pragma: no cover - depends on the installed Typer
    from click.exceptions import NoArgsIsHelpError, UsageError  # type: ignore[no-redef]

from mlmkit import __version__
from mlmkit.cli import cache as cache_cli
from mlmkit.cli import finetune, masking, runs
from mlmkit.cli import tokenizer as tokenizer_cli
from mlmkit.cli.common import fail
from mlmkit.cli.compare import compare_command
from mlmkit.cli.evaluate import evaluate_command
from mlmkit.cli.fill_mask import fill_mask_command
from mlmkit.cli.launch_options import ARGV_KEY
from mlmkit.cli.plot import plot_command
from mlmkit.cli.prepare import prepare_command
from mlmkit.cli.pretrain import pretrain_command
from mlmkit.cli.push import push_command
from mlmkit.cli.score import score_command


class OneLineErrors(TyperGroup):
    """The top-level group: a command line Click cannot parse ends in one ``error:`` line, exit 2.

    Click reports a bad option value or an unknown option with a usage box; mlmkit reports every
    user error the same way (one line on stderr naming the problem, exit code 2), so scripts and
    people see the same shape whether the mistake was caught by Click or by mlmkit. Parsing the
    top-level options happens in ``make_context``; sub-commands are resolved and parsed in ``invoke``.
    """

    def make_context(self, info_name: str | None, args: list[str], *rest: Any, **kwargs: Any) -> Any:  # noqa: D102
        typed = list(args)  # as the user typed them: training commands hand them on to launched workers
        try:
            ctx = super().make_context(info_name, args, *rest, **kwargs)
        except UsageError as exc:
            _usage_error_line(exc)
        ctx.meta[ARGV_KEY] = typed
        return ctx

    def invoke(self, ctx: Any) -> Any:  # noqa: D102
        try:
            return super().invoke(ctx)
        except UsageError as exc:
            _usage_error_line(exc)


def _usage_error_line(exc: Any) -> None:
    """Print Click's usage error as one ``error:`` line and exit 2 (help requested by no arguments passes)."""
    if isinstance(exc, NoArgsIsHelpError):
        raise exc

    command = exc.ctx.command_path if exc.ctx is not None else "mlmkit"
    fail(f"{' '.join(exc.format_message().split())} (see '{command} --help')")


app = typer.Typer(
    name="mlmkit",
    cls=OneLineErrors,
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
