"""``mlmkit cache ls`` / ``mlmkit cache clear``: the prepared corpora on disk."""

# Library imports (mlmkit's other layers and their dependencies) sit inside the functions that use them, so that
# `mlmkit --help` imports only this layer.

from __future__ import annotations

from dataclasses import asdict

import typer
from rich.markup import escape
from rich.table import Table

from mlmkit.cli.common import err_console, out_console, print_json, user_errors

app = typer.Typer(help="Prepared corpora (tokenized, featurized, packed blocks) kept on disk.", no_args_is_help=True)

CacheDir = typer.Option(None, "--cache-dir", help="Cache folder (default: <HF cache home>/mlmkit/prepared).")


def human_size(size: int) -> str:
    """``1.2 MB``-style size (powers of 1000, as ``du --si``)."""
    value = float(size)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


@app.command("ls")
@user_errors
def ls_command(
    cache_dir: str = CacheDir,
    as_json: bool = typer.Option(False, "--json", help="Print the prepared corpora as JSON."),
) -> None:
    """List the prepared corpora: source, tokenizer, block length, features, blocks, tokens, size."""
    from mlmkit.data.cache import list_prepared, resolve_cache_dir

    entries = list_prepared(cache_dir)
    if as_json:
        print_json([asdict(entry) for entry in entries])
        return
    total = sum(e.size_bytes for e in entries)
    table = Table(title=f"{len(entries)} prepared corpora in {escape(str(resolve_cache_dir(cache_dir)))} "
                        f"({human_size(total)}), newest first")
    for name, justify in (("key", "left"), ("source", "left"), ("tokenizer", "left"), ("length", "right"),
                          ("features", "left"), ("blocks", "right"), ("tokens", "right"), ("size", "right"),
                          ("created", "left")):
        table.add_column(name, justify=justify, no_wrap=name == "key")
    for e in entries:
        table.add_row(e.key, escape(e.source), escape(e.tokenizer), str(e.max_seq_length or "?"),
                      ", ".join(e.features) or "–", f"{e.blocks:,}", f"{e.tokens:,}", human_size(e.size_bytes),
                      e.created if e.problem is None else f"[red]damaged: {escape(e.problem)}[/]")
    out_console.print(table)


@app.command("clear")
@user_errors
def clear_command(
    keys: list[str] = typer.Argument(None, help="Keys to delete (see `mlmkit cache ls`); all when none is given."),
    cache_dir: str = CacheDir,
) -> None:
    """Delete prepared corpora (they are rebuilt by the next run that needs them)."""
    from mlmkit.data.cache import clear_prepared, resolve_cache_dir

    removed = clear_prepared(cache_dir, keys or ())
    err_console.print(f"removed {len(removed)} prepared corpora from {escape(str(resolve_cache_dir(cache_dir)))}",
                      highlight=False)
