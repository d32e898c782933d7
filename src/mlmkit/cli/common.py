"""What every command shares: consoles and the user-error boundary."""

# Library imports (mlmkit's other layers and their dependencies) sit inside the functions that use them, so that
# `mlmkit --help` imports only this layer.

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

F = TypeVar("F", bound=Callable[..., Any])

#: results go to stdout; progress, notes and errors to stderr
out_console = Console()
err_console = Console(stderr=True)

EXIT_USER_ERROR = 2


def fail(message: str) -> None:
    """Print one red error line on stderr and exit with code 2."""
    # escaped: messages name extras such as mlmkit[zh], which rich would read as markup and drop
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(EXIT_USER_ERROR)


def user_errors(fn: F) -> F:
    """Turn :class:`~mlmkit.errors.UserError` into one clear line and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from mlmkit.errors import UserError
        from mlmkit.io.outputs import restores_replaced_output
        from mlmkit.training.stopping import TrainingInterrupted

        try:  # an output directory the failed command emptied (overwrite) gets its old files back
            return restores_replaced_output(fn)(*args, **kwargs)
        except TrainingInterrupted as exc:
            if is_main_process():  # one notice for a multi-process run, from its main process
                err_console.print(f"[bold yellow]{exc}[/]", highlight=False, soft_wrap=True)
            raise typer.Exit(128 + exc.signal_number) from None
        except UserError as exc:
            fail(str(exc))
        except KeyboardInterrupt:
            err_console.print("[yellow]interrupted[/]")
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def is_main_process() -> bool:
    """True outside a launch, and in the rank-0 process of one."""
    return os.environ.get("RANK", "0") == "0"


def print_json(payload: Any) -> None:
    """Machine-readable output on stdout."""
    sys.stdout.write(json.dumps(payload, indent=2, default=str) + "\n")


def quiet_libraries() -> None:
    """Silence library chatter that is not for the user (weight-init notes, telemetry)."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        import datasets

        datasets.logging.set_verbosity_error()
        datasets.disable_progress_bars()
    except ImportError:  # pragma: no cover - datasets is a hard dependency
        pass
