"""``mlmkit pretrain``."""

# Library imports (mlmkit's other layers and their dependencies) sit inside the functions that use them, so that
# `mlmkit --help` imports only this layer.

from __future__ import annotations

from collections.abc import Callable

import typer
from rich.table import Table

from mlmkit.cli.common import err_console, out_console, user_errors
from mlmkit.cli.launch_options import run_here_or_launch, with_launch_options

#: replaced in tests to check the multi-process command line without starting processes
LAUNCHER: Callable[[list[str]], int] | None = None


@user_errors
@with_launch_options
def pretrain_command(
    overrides: list[str] = typer.Argument(None, help="Config overrides, e.g. train.max_steps=200 masking.name=random."),
    recipe: str = typer.Option(None, "--recipe", "-r", help="Recipe YAML path or packaged recipe name."),
    resume: str = typer.Option(None, "--resume", help="'auto' (latest checkpoint in output.dir) or a checkpoint path."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    launch: tuple = (),
    argv: list[str] | None = None,
) -> None:
    """Continue MLM pre-training of an encoder (default: the packaged MiniLM on the packaged tweets)."""
    from mlmkit.config import PretrainConfig, load_config
    from mlmkit.training.launch import LaunchOptions, wants_launch

    overrides = list(overrides or [])
    if resume:
        overrides.append(f"train.resume={resume}")
    cfg = load_config(PretrainConfig, recipe, overrides, kind="pretrain")  # validate before launching
    if wants_launch(LaunchOptions(*launch)):
        # what the workers would check (files, strategy and schedule parameters) fails here, once, as one
        # error line, rather than in every worker behind the launcher's traceback
        from mlmkit.masking.registry import build_strategy
        from mlmkit.masking.schedules import build_schedule
        from mlmkit.training.validation import validate_run_config

        validate_run_config(cfg)
        build_schedule(cfg.masking.get("schedule"), build_strategy(cfg.masking).ratio, cfg.train.max_steps)
    if argv is None:  # called from Python: the workers get the same command from the parsed values
        argv = ["pretrain", *overrides, *(["--recipe", recipe] if recipe else []), *(["--json"] if as_json else [])]

    def work():
        from mlmkit.training.pretrain import pretrain

        return pretrain(cfg, console=err_console)

    result = run_here_or_launch(argv, launch, LAUNCHER, work, as_json)
    if result is None:
        return
    table = Table(title=f"held-out MLM metrics (fixed 15% random masks) — {result.output_dir}")
    table.add_column("metric")
    table.add_column("before", justify="right")
    table.add_column("after", justify="right")
    table.add_row("masked-token accuracy", f"{result.before['masked_accuracy']:.4f}",
                  f"{result.after['masked_accuracy']:.4f}")
    table.add_row("perplexity", f"{result.before['perplexity']:,.2f}", f"{result.after['perplexity']:,.2f}")
    table.add_row("eval loss", f"{result.before['eval_loss']:.4f}", f"{result.after['eval_loss']:.4f}")
    out_console.print(table)
    out_console.print(f"{result.steps} steps in {result.train_seconds:.1f} s "
                      f"({result.tokens_per_second:,.0f} tokens/s); model saved to {result.output_dir}")

