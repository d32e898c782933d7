"""``mlmkit fill-mask``: ask a masked language model to fill in the blanks."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table
from rich.text import Text

from mlmkit.cli.common import err_console, out_console, print_json, quiet_libraries, user_errors

#: where ``make demo`` writes the adapted model
DEFAULT_MODEL = "runs/demo/mlm"


@user_errors
def fill_mask_command(
    text: str = typer.Argument(None, help="Text with one or more masks: [MASK], <mask> or the model's own token."),
    model: str = typer.Option(DEFAULT_MODEL, "--model", "-m",
                              help="MLM model directory or Hub name (default: the `make demo` model)."),
    top_k: int = typer.Option(5, "--top-k", "-k", min=1, help="Candidates per mask."),
    targets: str = typer.Option(None, "--targets", "-t",
                                help="Comma-separated candidate words; only these are scored."),
    file: str = typer.Option(None, "--file", "-f", help="Read one text per line from this file ('-' for stdin)."),
    batch_size: int = typer.Option(32, "--batch-size", "-b", min=1, help="Texts per forward pass."),
    as_json: bool = typer.Option(False, "--json", help="Print the candidates as JSON."),
) -> None:
    """Predict the masked words of TEXT (or of every line of --file) with a masked language model."""
    from mlmkit.errors import UserError

    if text is not None and file is not None:
        raise UserError("give either TEXT or --file, not both")
    if text is None and file is None:
        raise UserError("give a TEXT with a mask, e.g. mlmkit fill-mask 'Paris is the [MASK] of France.', "
                        "or --file")
    if model == DEFAULT_MODEL and not Path(model).exists():
        raise UserError(f"no such model directory: {model} (run `make demo` to create it, or pass --model)")

    from mlmkit.inference.fill_mask import fill_mask, load_fill_mask_model, read_texts, resolve_targets

    if file is not None:
        rows = read_texts(file)
        texts = [line for _, line in rows]
        labels = [f"line {number}" for number, _ in rows]
    else:
        texts, labels = [text], ["the text"]
    quiet_libraries()
    mlm, tokenizer = load_fill_mask_model(model)
    wanted = None
    if targets is not None:
        wanted = resolve_targets(tokenizer, targets.split(","))
        for note in wanted.notes:
            err_console.print(f"[yellow]note:[/] {note}", highlight=False, markup=True, soft_wrap=True)
    if len(texts) > batch_size and not as_json:
        results = _with_progress(mlm, tokenizer, texts, top_k, wanted, batch_size, labels)
    else:
        results = fill_mask(mlm, tokenizer, texts, top_k=top_k, targets=wanted, batch_size=batch_size, labels=labels)
    if as_json:
        print_json([r.to_dict() for r in results])
        return
    out_console.print(_table(results, model))


def _with_progress(mlm, tokenizer, texts, top_k, wanted, batch_size, labels):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from mlmkit.inference.fill_mask import fill_mask

    columns = (TextColumn("fill-mask"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=err_console, transient=True) as bar:
        task = bar.add_task("texts", total=len(texts))
        return fill_mask(mlm, tokenizer, texts, top_k=top_k, targets=wanted, batch_size=batch_size, labels=labels,
                         progress=lambda done: bar.advance(task, done))


def _table(results, model: str) -> Table:
    table = Table(title=f"fill-mask — {model}")
    table.add_column("text", overflow="fold")
    table.add_column("mask", justify="right")
    table.add_column("rank", justify="right")
    table.add_column("token")
    table.add_column("score", justify="right")
    table.add_column("filled sentence", overflow="fold")
    for n, result in enumerate(results):
        if n:
            table.add_section()
        first = True
        for mask_index, candidates in enumerate(result.masks, start=1):
            for rank, cand in enumerate(candidates, start=1):
                # Text() cells: tokens such as [UNK] must not be read as rich markup
                table.add_row(Text(result.text) if first else "", str(mask_index), str(rank),
                              Text(cand.token.strip() or repr(cand.token)), f"{cand.score:.4f}",
                              Text(cand.sequence))
                first = False
    return table
