"""``mlmkit masking ...``: inspect the masking-strategy registry, preview strategies, build their data."""

# Library imports (mlmkit's other layers and their dependencies) sit inside the functions that use them, so that
# `mlmkit --help` imports only this layer.

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from mlmkit.cli.common import err_console, out_console, print_json, quiet_libraries, user_errors

app = typer.Typer(help="Inspect masking strategies.", no_args_is_help=True)

#: preview colours of the three corruptions
STYLES = {"mask": "bold white on red", "random": "bold black on yellow", "kept": "bold black on green"}


@app.command("ls")
@user_errors
def list_strategies(as_json: bool = typer.Option(False, "--json", help="Print as JSON.")) -> None:
    """List registered masking strategies with their parameters (and defaults), description and paper."""
    from mlmkit.masking.registry import get_strategy_class, strategy_names

    rows = []
    for name in strategy_names():
        cls = get_strategy_class(name)
        rows.append({"name": name, "description": cls.description, "paper": cls.paper,
                     "parameters": dict(cls.parameters())})
    if as_json:
        print_json(rows)
        return
    params_text = {row["name"]: "\n".join(f"{k}={v!r}" for k, v in row["parameters"].items()) for row in rows}
    widest = max((len(line) for text in params_text.values() for line in text.splitlines()), default=10)
    # Keep one parameter a line where the terminal allows: the widest parameters column that still
    # lets the table fit (rich crops a table whose minimum widths exceed the terminal).
    table = None
    for min_width in [*range(widest, 9, -2), None]:
        table = _strategy_table(rows, params_text, min_width)
        if _fits(table, out_console.width):
            break
    out_console.print(table)
    out_console.print("Set them in a recipe's masking section, or on the command line: "
                      "mlmkit pretrain masking.name=span masking.max_span=10", highlight=False)


def _strategy_table(rows: list[dict[str, Any]], params_text: dict[str, str], min_width: int | None) -> Table:
    table = Table(title="masking strategies", show_lines=True)
    table.add_column("name", overflow="fold", style="bold")
    table.add_column("parameters (defaults)", overflow="fold", min_width=min_width)
    table.add_column("description", overflow="fold")
    table.add_column("paper", overflow="fold")
    for row in rows:
        table.add_row(row["name"], params_text[row["name"]], row["description"], row["paper"])
    return table


def _fits(table: Table, width: int) -> bool:
    """True when ``table`` renders within ``width`` columns without being cropped."""
    probe = Console(file=io.StringIO(), width=width, color_system=None)
    probe.print(table)
    lines = probe.file.getvalue().splitlines()[1:]  # skip the centred title
    return all(line.rstrip().endswith(("┓", "┃", "┩", "│", "┤", "┘", "┛", "╯", "┐")) for line in lines if line.strip())


def split_preview_args(args: list[str]) -> tuple[str | None, dict[str, Any]]:
    """Separate the text to preview from ``masking.key=value`` overrides."""
    from mlmkit.config.loading import parse_overrides
    from mlmkit.errors import UserError

    texts = [a for a in args if not (a.startswith("masking.") and "=" in a)]
    overrides = [a for a in args if a.startswith("masking.") and "=" in a]
    if len(texts) > 1:
        raise UserError("give one TEXT to preview (quote it); overrides look like masking.key=value")
    from omegaconf import OmegaConf

    params = OmegaConf.to_container(parse_overrides(overrides), resolve=True).get("masking", {}) if overrides else {}
    return (texts[0] if texts else None), dict(params)


def _render_preview(preview: Any, model: str) -> None:
    text = Text(preview.text)
    for unit in preview.units:
        if unit.end > unit.start:
            text.stylize(STYLES[unit.corruption], unit.start, unit.end)
    out_console.print(text)
    legend = Text("  ")
    for kind, style in STYLES.items():
        legend.append(f" {kind} ", style=style)
        legend.append("  ")
    out_console.print(legend)
    table = Table(title=f"{preview.strategy} on {model}: {preview.predicted_tokens} of {preview.maskable_tokens} "
                        f"tokens predicted in {len(preview.units)} unit(s) (target ratio {preview.ratio:g}, "
                        f"seed {preview.seed})")
    table.add_column("#", justify="right")
    table.add_column("unit", overflow="fold")
    table.add_column("tokens", overflow="fold")
    table.add_column("corruption", overflow="fold")
    for index, unit in enumerate(preview.units, start=1):
        how = unit.corruption
        if unit.corruption == "random":
            how = "random -> " + " ".join(unit.replacements)
        table.add_row(str(index), unit.text, " ".join(unit.tokens), Text(how, style=STYLES[unit.corruption]))
    out_console.print(table)
    out_console.print("model input: " + " ".join(preview.corrupted_tokens), highlight=False, soft_wrap=True)


def _render_stats(stats: dict[str, Any], source: str) -> None:
    table = Table(title=f"{stats['strategy']} on {source}: {stats['documents']:,} documents, "
                        f"{stats['blocks']:,} blocks")
    table.add_column("statistic")
    table.add_column("value", justify="right")
    rows = [
        ("target ratio", f"{stats['target_ratio']:.4f}"),
        ("realized ratio", f"{stats['realized_ratio']:.4f}"),
        ("predicted / maskable tokens", f"{stats['predicted_tokens']:,} / {stats['maskable_tokens']:,}"),
        ("mask / random / kept", " / ".join(f"{stats['corruption'][k]:.3f}" for k in ("mask", "random", "kept"))),
        ("units", f"{stats['units']:,}"),
        ("mean unit length (words / tokens)", f"{stats['mean_unit_words']:.2f} / {stats['mean_unit_tokens']:.2f}"),
        *([("mean span length drawn (words)", f"{stats['expected_mean_unit_words']:.2f}")]
          if stats.get("expected_mean_unit_words") is not None else []),
        ("blocks with no prediction", f"{stats['rows_without_prediction']:.2%}"),
        ("content words among predicted tokens", f"{stats['content_share_predicted']:.3f}"),
        ("function words among predicted tokens", f"{stats['function_share_predicted']:.3f}"),
        ("content words in the corpus", f"{stats['content_share_corpus']:.3f}"),
        (f"function words in the corpus ({stats['language']})", f"{stats['function_share_corpus']:.3f}"),
    ]
    for row in rows:
        table.add_row(*row)
    out_console.print(table)
    hist = Table(title="unit length histogram")
    hist.add_column("length")
    hist.add_column("units (by words)", justify="right")
    hist.add_column("units (by tokens)", justify="right")
    total = max(stats["units"], 1)
    for key, count in stats["unit_words_histogram"].items():
        by_tokens = stats["unit_tokens_histogram"][key]
        hist.add_row(key, f"{count:,} ({count / total:.1%})", f"{by_tokens:,} ({by_tokens / total:.1%})")
    out_console.print(hist)


@app.command("preview", context_settings={"allow_interspersed_args": True})
@user_errors
def preview(
    args: list[str] = typer.Argument(None, metavar="[TEXT] [masking.KEY=VALUE ...]",
                                     help="Text to mask (quoted), and strategy parameters as masking.key=value."),
    strategy: str = typer.Option("random", "--strategy", "-s", help="Registered name or package.module:Class."),
    model: str = typer.Option("embedded", "--model", "-m", help="Model directory or Hub name (its tokenizer)."),
    seed: int = typer.Option(0, "--seed", help="Masking seed (the draw training makes at step 0)."),
    ratio: float = typer.Option(None, "--ratio", help="Masking ratio (default: the strategy's own)."),
    corpus: str = typer.Option(None, "--corpus", help="Corpus for --stats: 'embedded', local files or a Hub name."),
    stats: bool = typer.Option(False, "--stats", help="Statistics over --corpus instead of one text."),
    text_column: str = typer.Option("text", "--text-column", help="Text column of csv/json/parquet corpora."),
    max_documents: int = typer.Option(None, "--max-documents", help="Use only the first N documents."),
    block_size: int = typer.Option(128, "--block-size", help="Packed block length for --stats."),
    as_json: bool = typer.Option(False, "--json", help="Print as JSON."),
) -> None:
    """Show how a strategy masks TEXT, or (--corpus FILE --stats) what it predicts over a corpus."""
    from mlmkit.errors import UserError

    text, params = split_preview_args(list(args or []))
    if stats and corpus is None:
        raise UserError("--stats needs --corpus FILE (or --corpus embedded)")
    if corpus is not None and text is not None:
        raise UserError("give either a TEXT or --corpus, not both")
    if corpus is None and text is None:
        raise UserError('give a TEXT to preview, e.g. mlmkit masking preview "Self-driving cars are here." '
                        "--strategy span, or --corpus FILE --stats")
    if ratio is not None and not 0.0 <= ratio <= 1.0:
        raise UserError(f"--ratio must be between 0 and 1, got {ratio}")

    quiet_libraries()
    from mlmkit.masking.preview import corpus_stats, preview_text
    from mlmkit.masking.registry import build_strategy
    from mlmkit.modeling.loading import load_tokenizer

    spec = {"name": params.pop("name", strategy), **params}
    if ratio is not None:
        spec["ratio"] = ratio
    instance = build_strategy(spec)
    tokenizer = load_tokenizer(model)
    if corpus is None:
        result = preview_text(text, instance, tokenizer, seed=seed)
        if as_json:
            print_json(dict(result.to_dict(), model=model))
        else:
            _render_preview(result, model)
        return
    if block_size < 2:
        raise UserError("--block-size must be at least 2")
    from mlmkit.config.schema import PretrainDataConfig

    # the tokenized, labelled and packed corpus is kept on disk and reused by the next --stats on it
    data = PretrainDataConfig(source=corpus, text_column=text_column, max_documents=max_documents,
                              max_seq_length=block_size)
    summary = corpus_stats(None, instance, tokenizer, seed=seed, block_size=block_size, data=data,
                           notify=lambda line: err_console.print(line, markup=False, highlight=False, soft_wrap=True))
    if as_json:
        print_json(dict(summary, corpus=corpus, model=model))
    else:
        _render_stats(summary, corpus)


@app.command("build-weights")
@user_errors
def build_weights(
    corpus: str = typer.Argument(..., help="'embedded', local txt/csv/json/jsonl/parquet file(s), or a Hub name."),
    output: Path = typer.Option(..., "--output", "-o", help="Table to write: a .json or .safetensors file."),
    model: str = typer.Option("embedded", "--model", "-m", help="Model directory or Hub name (its tokenizer)."),
    ratio: float = typer.Option(0.15, "--ratio", help="Share of each window marked as informative."),
    window: int = typer.Option(64, "--window", help="Co-occurrence window, in tokens."),
    min_pair_count: int = typer.Option(2, "--min-pair-count", help="Ignore token pairs seen in fewer windows."),
    prior_strength: float = typer.Option(10.0, "--prior-strength", help="Pseudo-count shrinking rare tokens."),
    text_column: str = typer.Option("text", "--text-column", help="Text column of csv/json/parquet corpora."),
    max_documents: int = typer.Option(None, "--max-documents", help="Use only the first N documents."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Build the per-token masking table of the token_weighted strategy (InforMask-style PMI informativeness)."""
    from mlmkit.errors import UserError

    if not 0.0 < ratio < 1.0:
        raise UserError(f"--ratio must be between 0 and 1, got {ratio}")
    if window < 2:
        raise UserError("--window must be at least 2 tokens")
    quiet_libraries()
    from mlmkit.masking.token_weighted import build_weights_file

    with err_console.status("counting tokens and token pairs ..."):
        summary = build_weights_file(corpus, output, model=model, text_column=text_column,
                                     max_documents=max_documents, ratio=ratio, window=window,
                                     min_pair_count=min_pair_count, prior_strength=prior_strength)
    if as_json:
        print_json(summary)
        return
    table = Table(title=f"token weights for {model} from {corpus}")
    table.add_column("most weighted", overflow="fold")
    table.add_column("least weighted", overflow="fold")
    for high, low in zip(summary["most_weighted"], summary["least_weighted"], strict=False):
        table.add_row(f"{high['token']}  {high['weight']:.3f}", f"{low['token']}  {low['weight']:.3f}")
    out_console.print(table)
    out_console.print(f"{summary['tokens']:,} tokens in {summary['windows']:,} windows, "
                      f"{summary['distinct_tokens']:,} distinct tokens, {summary['pairs']:,} token pairs; "
                      f"wrote {summary['output']}", highlight=False)
    out_console.print(f"use it: mlmkit pretrain masking.name=token_weighted masking.weights_file={summary['output']}",
                      highlight=False)


@app.command("build-vocab")
@user_errors
def build_vocab(
    corpora: list[str] = typer.Argument(..., help="Corpora: 'embedded', local txt/csv/json/jsonl/parquet files, "
                                                  "directories or globs, or Hub dataset names."),
    output: Path = typer.Option(..., "--output", "-o", help="Vocabulary to write (JSON)."),
    model: str = typer.Option("embedded", "--model", "-m",
                              help="Model directory or Hub name whose tokenizer splits (and lowercases) words."),
    max_n: int = typer.Option(5, "--max-n", help="Longest n-gram."),
    min_count: int = typer.Option(10, "--min-count", help="Keep n-grams seen more than this many times (paper: 10)."),
    size: int = typer.Option(800_000, "--size", help="Total entries (1/2 bigrams, 1/4 trigrams, 1/8 4- and 5-grams)."),
    min_pmi: float = typer.Option(0.0, "--min-pmi", help="Keep n-grams whose PMI_n exceeds this."),
    text_column: str = typer.Option("text", "--text-column", help="Text column of csv/json/parquet corpora."),
    max_documents: int = typer.Option(None, "--max-documents", help="Use only the first N documents."),
    language: str = typer.Option("en", "--language", help="Corpus language (ISO code or auto), as masking.language."),
    segmenter: str = typer.Option("auto", "--segmenter", help="Word segmenter, as masking.segmenter."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Build the PMI n-gram collocation vocabulary for `masking.name=pmi` (Levine et al., ICLR 2021)."""
    from mlmkit.masking.pmi_vocab import build_vocab_file

    quiet_libraries()
    summary = build_vocab_file(corpora, output, model=model, max_n=max_n, min_count=min_count, size=size,
                               min_pmi=min_pmi, text_column=text_column, max_documents=max_documents,
                               console=err_console, language=language, segmenter=segmenter)
    if as_json:
        print_json(summary)
        return
    table = Table(title=f"PMI n-gram vocabulary from {', '.join(corpora)}")
    for column in ("n", "entries", "top collocations (PMI_n, count)"):
        table.add_column(column)
    for n, count in summary["entries"].items():
        top = "\n".join(f"{e['ngram']}  ({e['pmi']:.2f}, {e['count']})" for e in summary["top"][n])
        table.add_row(str(n), f"{count:,}", top)
    out_console.print(table)
    out_console.print(f"{summary['documents']:,} documents, {summary['words']:,} words; wrote {summary['output']}",
                      highlight=False)
    if not sum(summary["entries"].values()):
        out_console.print("no n-gram qualified: lower --min-count or use a bigger corpus", highlight=False)
    out_console.print(f"use it: mlmkit pretrain masking.name=pmi masking.vocab={summary['output']}", highlight=False)
