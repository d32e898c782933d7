"""``mlmkit tokenizer ...``: train a tokenizer on a corpus, extend a model's vocabulary."""

# Library imports (mlmkit's other layers and their dependencies) sit inside the functions that use them, so that
# `mlmkit --help` imports only this layer.

from __future__ import annotations

from dataclasses import asdict

import typer
from rich.table import Table

from mlmkit.cli.common import err_console, out_console, print_json, quiet_libraries, user_errors

app = typer.Typer(help="Train tokenizers and extend vocabularies.", no_args_is_help=True)


@app.command("train")
@user_errors
def train_command(
    corpus: list[str] = typer.Argument(..., help="Corpora: 'embedded', txt/csv/json/jsonl/parquet files, "
                                                  "directories, globs or Hub dataset names."),
    output: str = typer.Option(..., "--output", "-o", help="Directory to save the tokenizer to."),
    kind: str = typer.Option(None, "--type", "-t", help="wordpiece, bpe (byte-level) or unigram "
                                                         "(default: wordpiece for bert, bpe for roberta)."),
    vocab_size: int = typer.Option(8192, "--vocab-size", "-v", help="Vocabulary size, special tokens included."),
    family: str = typer.Option("bert", "--family", help="Special tokens: bert ([CLS] [SEP] [PAD] [UNK] [MASK]) or "
                                                         "roberta (<s> </s> <pad> <unk> <mask>)."),
    lowercase: bool = typer.Option(None, "--lowercase/--no-lowercase",
                                   help="Lowercase text (default: yes for bert, no for roberta)."),
    strip_accents: bool = typer.Option(None, "--strip-accents/--no-strip-accents",
                                       help="Remove accents (default: as --lowercase)."),
    round_size: bool = typer.Option(True, "--round/--no-round", help="Round the vocabulary size up to a multiple "
                                                                      "of 64."),
    min_frequency: int = typer.Option(2, "--min-frequency", help="Merge only pairs/pieces seen this often."),
    text_column: str = typer.Option("text", "--text-column", help="Text column of csv/json/parquet/Hub corpora."),
    split: str = typer.Option("train", "--split", help="Split of Hub datasets."),
    max_documents: int = typer.Option(None, "--max-documents", help="Use at most N documents."),
    max_length: int = typer.Option(512, "--max-length", help="Longest sequence the tokenizer declares."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a non-empty output directory."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Train a fast tokenizer that AutoTokenizer.from_pretrained(OUTPUT) loads."""
    from mlmkit.tokenization.train import DEFAULT_TYPE, FAMILIES, check_choice, train_tokenizer_on_corpus

    family = check_choice(family, tuple(FAMILIES), "tokenizer family")
    quiet_libraries()
    trained = train_tokenizer_on_corpus(
        corpus, output, text_column=text_column, split=split, max_documents=max_documents, overwrite=overwrite,
        console=None if as_json else err_console, kind=kind or DEFAULT_TYPE[family], vocab_size=vocab_size,
        family=family, lowercase=lowercase, strip_accents=strip_accents, min_frequency=min_frequency,
        round_to=64 if round_size else 1, model_max_length=max_length,
    )
    summary = trained.summary(output)
    if summary["note"]:
        err_console.print(f"[yellow]note:[/] {summary['note']}")
    if as_json:
        print_json(summary)
        return
    table = Table(title=f"tokenizer — {output}", show_header=False)
    table.add_row("type / family", f"{summary['type']} / {summary['family']}")
    table.add_row("vocabulary", f"{summary['vocab_size']:,} (asked {summary['requested_vocab_size']:,}, "
                                f"target {summary['target_vocab_size']:,})")
    table.add_row("documents", f"{summary['documents']:,} in {summary['seconds']:.1f} s")
    table.add_row("special token ids", ", ".join(f"{k}={v}" for k, v in summary["special_token_ids"].items()))
    out_console.print(table)


@app.command("extend")
@user_errors
def extend_command(
    corpus: list[str] = typer.Option(..., "--corpus", "-c", help="Domain corpus (repeat for several): 'embedded', "
                                                                  "files, directories or Hub dataset names."),
    add: int = typer.Option(..., "--add", "-n", help="How many words to add."),
    output: str = typer.Option(..., "--output", "-o", help="Directory for the extended model and tokenizer."),
    model: str = typer.Option("embedded", "--model", "-m", help="Model directory, Hub name or 'embedded'."),
    min_count: int = typer.Option(2, "--min-count", help="Ignore words seen fewer times."),
    text_column: str = typer.Option("text", "--text-column", help="Text column of csv/json/parquet/Hub corpora."),
    split: str = typer.Option("train", "--split", help="Split of Hub datasets."),
    max_documents: int = typer.Option(None, "--max-documents", help="Count words in at most N documents."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a non-empty output directory."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Add the most frequent corpus words the tokenizer splits; new embeddings = mean of their old pieces."""
    from mlmkit.tokenization.extend import extend_vocabulary_on_corpus

    quiet_libraries()
    result = extend_vocabulary_on_corpus(model, corpus, add, output, text_column=text_column, split=split,
                                         max_documents=max_documents, min_count=min_count, overwrite=overwrite)
    if len(result.words) < add:
        err_console.print(f"[yellow]note:[/] only {len(result.words)} words seen at least {min_count} times are split "
                          f"by the tokenizer (asked for {add})")
    if as_json:
        print_json(asdict(result))
        return
    table = Table(title=f"added {len(result.words)} words: vocabulary {result.old_vocab_size:,} -> "
                        f"{result.new_vocab_size:,} — {result.output_dir}")
    for column, justify in (("id", "right"), ("word", "left"), ("count", "right"), ("was split into", "left")):
        table.add_column(column, justify=justify)
    for word in result.words:
        table.add_row(str(word.token_id), word.word, f"{word.count:,}", " ".join(word.pieces))
    out_console.print(table)
    out_console.print(f"ready for pre-training: mlmkit pretrain model.name_or_path={result.output_dir}",
                      soft_wrap=True, highlight=False)
