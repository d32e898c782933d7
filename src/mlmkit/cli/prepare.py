"""``mlmkit prepare``: tokenize, featurize and pack a recipe's corpus once, ahead of training."""

# Library imports (mlmkit's other layers and their dependencies) sit inside the functions that use them, so that
# `mlmkit --help` imports only this layer.

from __future__ import annotations

import os
import time

import typer
from rich.markup import escape
from rich.table import Table

from mlmkit.cli.cache import human_size
from mlmkit.cli.common import err_console, out_console, print_json, user_errors


@user_errors
def prepare_command(
    overrides: list[str] = typer.Argument(None, help="Config overrides, e.g. data.source=corpus.txt data.num_proc=8."),
    recipe: str = typer.Option(None, "--recipe", "-r", help="Recipe YAML path or packaged recipe name."),
    rebuild: bool = typer.Option(False, "--rebuild", help="Prepare again even when a matching cache exists."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Prepare the corpus of a pre-training recipe on disk; `pretrain` with the same settings then reuses it.

    Uses data.num_proc processes, or all cores when it is unset (the blocks are the same either way).
    """
    from mlmkit.config import PretrainConfig, load_config
    from mlmkit.training.prepare import prepare_for_config

    cfg = load_config(PretrainConfig, recipe, list(overrides or []), kind="pretrain")
    started = time.perf_counter()
    prepared = prepare_for_config(
        cfg, rebuild=rebuild, num_proc=os.cpu_count(),
        notify=lambda text: err_console.print(text, style="yellow", markup=False, highlight=False, soft_wrap=True))
    seconds = time.perf_counter() - started
    result = {"path": str(prepared.path), "reused": prepared.reused, "documents": prepared.documents,
              "blocks": len(prepared.blocks), "tokens": prepared.tokens, "size_bytes": prepared.size_bytes,
              "seconds": round(seconds, 3)}
    if as_json:
        print_json(result)
        return
    table = Table(title="prepared corpus (reused, nothing rebuilt)" if prepared.reused else "prepared corpus")
    table.add_column("")
    table.add_column("", justify="right")
    for label, value in (("location", escape(result["path"])), ("size", human_size(prepared.size_bytes)),
                         ("documents", f"{prepared.documents:,}"), ("blocks", f"{result['blocks']:,}"),
                         ("tokens", f"{prepared.tokens:,}"), ("seconds", f"{seconds:.1f}")):
        table.add_row(label, value)
    table.show_header = False
    out_console.print(table)
