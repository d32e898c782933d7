"""``mlmkit fill-mask``: ask a masked language model to fill in the blanks."""

# Library imports (mlmkit's other layers and their dependencies) sit inside the functions that use them, so that
# `mlmkit --help` imports only this layer.

from __future__ import annotations

from pathlib import Path

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
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
    top_k: int = typer.Option(5, "--top-k", "-k", min=1, help="Candidates per mask (with --joint: fillings per text)."),
    targets: str = typer.Option(None, "--targets", "-t",
                                help="Comma-separated candidate words; only these are scored."),
    joint: bool = typer.Option(False, "--joint", "-j",
                               help="Fill all masks together: the best complete fillings by joint score."),
    beam: int = typer.Option(5, "--beam", min=1, help="With --joint: beam width."),
    max_tokens: int = typer.Option(1, "--max-tokens", "-n", min=1,
                                   help="A mask may become a whole word of up to N sub-tokens (implies --joint)."),
    length_penalty: float = typer.Option(0.5, "--length-penalty", min=0.0,
                                         help="Rank fillings by log-prob / tokens**P (0: the sum; 1: per token)."),
    file: str = typer.Option(None, "--file", "-f", help="Read one text per line from this file ('-' for stdin)."),
    batch_size: int = typer.Option(32, "--batch-size", "-b", min=1, help="Texts (--joint: beams) per forward pass."),
    as_json: bool = typer.Option(False, "--json", help="Print the candidates as JSON."),
) -> None:
    """Predict the masked words of TEXT (or of every line of --file) with a masked language model."""
    from mlmkit.errors import UserError

    joint = joint or max_tokens > 1
    if joint and targets is not None:
        raise UserError("--targets works with independent filling only; drop --joint and --max-tokens, or --targets")
    texts, labels = texts_from_arguments([text] if text is not None else [], file,
                                         usage="a TEXT with a mask, e.g. mlmkit fill-mask 'Paris is the [MASK] of "
                                               "France.'")
    check_model_path(model)

    from mlmkit.inference.fill_mask import fill_mask, load_fill_mask_model, resolve_targets
    from mlmkit.inference.joint_fill import joint_fill

    quiet_libraries()
    mlm, tokenizer = load_fill_mask_model(model)
    if joint:
        options = dict(top_k=top_k, beam=beam, max_tokens=max_tokens, length_penalty=length_penalty,
                       batch_size=batch_size, labels=labels)
        found = _with_progress(joint_fill, mlm, tokenizer, texts, options, show=not as_json)
        if as_json:
            print_json([r.to_dict() for r in found])
            return
        out_console.print(_joint_table(found, model, max_tokens > 1))
        return
    wanted = None
    if targets is not None:
        wanted = resolve_targets(tokenizer, targets.split(","))
        for note in wanted.notes:
            err_console.print(f"[yellow]note:[/] {note}", highlight=False, markup=True, soft_wrap=True)
    options = dict(top_k=top_k, targets=wanted, batch_size=batch_size, labels=labels)
    results = _with_progress(fill_mask, mlm, tokenizer, texts, options, show=not as_json and len(texts) > batch_size)
    if as_json:
        print_json([r.to_dict() for r in results])
        return
    out_console.print(_table(results, model))


def texts_from_arguments(texts: list[str], file: str | None, usage: str) -> tuple[list[str], list[str]]:
    """The texts to work on, from the command line or from ``--file``, and how errors name each one.

    Args:
        texts: Texts given on the command line.
        file: ``--file`` (a path, or ``-`` for stdin).
        usage: What to give, with an example, for the error when neither was given.

    Raises:
        UserError: Both or neither were given, or the file is missing or empty.
    """
    from mlmkit.errors import UserError
    from mlmkit.inference.fill_mask import read_texts

    if texts and file is not None:
        raise UserError("give either TEXT or --file, not both")
    if not texts and file is None:
        raise UserError(f"give {usage}, or --file")
    if file is not None:
        rows = read_texts(file)
        return [line for _, line in rows], [f"line {number}" for number, _ in rows]
    if len(texts) == 1:
        return list(texts), ["the text"]
    return list(texts), [f"text {i}" for i in range(1, len(texts) + 1)]


def check_model_path(model: str) -> None:
    """The default model is a directory `make demo` writes: say so when it is missing."""
    from mlmkit.errors import UserError

    if model == DEFAULT_MODEL and not Path(model).exists():
        raise UserError(f"no such model directory: {model} (run `make demo` to create it, or pass --model)")


def _with_progress(fill, mlm, tokenizer, texts, options, show: bool):
    """Run ``fill`` (fill_mask or joint_fill) with a progress bar on stderr when ``show``."""
    if not show:
        return fill(mlm, tokenizer, texts, **options)

    columns = (TextColumn("fill-mask"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=err_console, transient=True) as bar:
        task = bar.add_task("texts", total=len(texts))
        return fill(mlm, tokenizer, texts, **options, progress=lambda done: bar.advance(task, done))


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


def _joint_table(results, model: str, multi_token: bool) -> Table:
    title = f"fill-mask --joint{' --max-tokens' if multi_token else ''} — {model}"
    table = Table(title=title)
    table.add_column("text", overflow="fold")
    table.add_column("rank", justify="right")
    table.add_column("filled text", overflow="fold")
    table.add_column("log-prob", justify="right")
    if multi_token:
        table.add_column("score", justify="right")
    table.add_column("fills, in order (log-prob; best alternatives)", overflow="fold")
    for n, result in enumerate(results):
        if n:
            table.add_section()
        if not result.fillings:
            table.add_row(Text(result.text), "", Text("(no whole-word filling found)", style="dim"), "", "", "")
        for rank, filling in enumerate(result.fillings, start=1):
            fills = "\n".join(_describe_step(step, multi_token) for step in filling.steps)
            cells = [Text(result.text) if rank == 1 else "", str(rank), Text(filling.sequence),
                     f"{filling.log_prob:.2f}"]
            if multi_token:
                cells.append(f"{filling.score:.2f}")
            table.add_row(*cells, Text(fills))
    return table


def _describe_step(step, multi_token: bool) -> str:
    where = f"{step.mask + 1}.{step.piece + 1}" if multi_token else f"{step.mask + 1}"
    others = ", ".join(f"{a.token.strip() or repr(a.token)} {a.log_prob:.2f}" for a in step.alternatives
                       if a.token_id != step.token_id)
    return f"mask {where}: {step.token.strip() or repr(step.token)} {step.log_prob:.2f}" + \
        (f" ({others})" if others else "")
