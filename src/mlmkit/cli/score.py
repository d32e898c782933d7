"""``mlmkit score``: how natural a masked language model finds each text (pseudo-log-likelihood)."""

# Library imports (mlmkit's other layers and their dependencies) sit inside the functions that use them, so that
# `mlmkit --help` imports only this layer.

from __future__ import annotations

import typer
from rich.table import Table
from rich.text import Text

from mlmkit.cli.common import out_console, print_json, quiet_libraries, user_errors
from mlmkit.cli.fill_mask import DEFAULT_MODEL, check_model_path, texts_from_arguments


@user_errors
def score_command(
    texts: list[str] = typer.Argument(None, help="One or more texts to score."),
    model: str = typer.Option(DEFAULT_MODEL, "--model", "-m",
                              help="MLM model directory or Hub name (default: the `make demo` model)."),
    file: str = typer.Option(None, "--file", "-f", help="Read one text per line from this file ('-' for stdin)."),
    rank: bool = typer.Option(False, "--rank", "-r", help="Sort the texts by PLL, most natural first."),
    batch_size: int = typer.Option(64, "--batch-size", "-b", min=1,
                                   help="Masked copies per forward pass (copies of several texts share one)."),
    as_json: bool = typer.Option(False, "--json", help="Print the scores, with every token's contribution, as JSON."),
) -> None:
    """Pseudo-log-likelihood and pseudo-perplexity of each TEXT (or of every line of --file)."""
    chosen, labels = texts_from_arguments(texts or [], file,
                                          usage="one or more TEXTs, e.g. mlmkit score 'I love my car.'")
    check_model_path(model)

    from mlmkit.inference.fill_mask import load_fill_mask_model
    from mlmkit.inference.scoring import score_texts

    quiet_libraries()
    mlm, tokenizer = load_fill_mask_model(model)
    scored = score_texts(mlm, tokenizer, chosen, batch_size=batch_size, rank=rank, labels=labels)
    if as_json:
        print_json([s.to_dict() for s in scored])
        return
    table = Table(title=f"score — {model}")
    if rank:
        table.add_column("rank", justify="right")
    table.add_column("#", justify="right")
    table.add_column("text", overflow="fold")
    table.add_column("PLL", justify="right")
    table.add_column("tokens", justify="right")
    table.add_column("pseudo-perplexity", justify="right")
    for position, s in enumerate(scored, start=1):
        cells = [str(position)] if rank else []
        table.add_row(*cells, str(s.index + 1), Text(s.text), f"{s.pll:.2f}", str(s.num_tokens),
                      f"{s.pseudo_perplexity:.2f}")
    out_console.print(table)
