"""``mlmkit finetune ...``: fine-tune an encoder for classification."""

from __future__ import annotations

import json
from typing import Any

import typer
from rich.table import Table

from mlmkit.cli.common import err_console, out_console, user_errors
from mlmkit.cli.launch_options import (
    AccelerateConfig,
    MachineRank,
    MainProcessIp,
    MainProcessPort,
    NumMachines,
    NumProcesses,
    run_here_or_launch,
)

app = typer.Typer(help="Fine-tune an encoder for classification.", no_args_is_help=True)

#: replaced in tests to check the multi-process command line without starting processes
LAUNCHER = None


def option_overrides(**options: Any) -> list[str]:
    """Turn the command's options into ``section.key=value`` overrides (None means "not given").

    Values are written as JSON so that paths and names stay strings whatever they look like.
    """
    keys = {"model": "model.name_or_path", "dataset": "data.dataset", "text_column": "data.text_column",
            "label_column": "data.label_column", "output": "output.dir", "overwrite": "output.overwrite",
            "epochs": "train.num_epochs", "max_steps": "train.max_steps"}
    overrides = [f"{keys[name]}={json.dumps(value)}" for name, value in options.items() if value is not None]
    if options.get("epochs") is not None and options.get("max_steps") is None:
        # --epochs alone means "train for this many epochs", even if the recipe fixes a step count
        overrides.append("train.max_steps=-1")
    return overrides


def report_tables(result: Any) -> list[Table]:
    """Rich tables of a :class:`~mlmkit.training.finetune.FinetuneResult`: summary, per-class, confusion."""
    summary = Table(title=f"evaluation on {result.data.get('eval_examples', '?'):,} examples ({result.eval_source})")
    summary.add_column("metric")
    summary.add_column("fine-tuned", justify="right")
    summary.add_column(f"majority baseline ('{result.baseline['label']}')", justify="right")
    summary.add_row("accuracy", f"{result.accuracy:.4f}", f"{result.baseline['accuracy']:.4f}")
    summary.add_row("macro-F1", f"{result.macro_f1:.4f}", f"{result.baseline['macro_f1']:.4f}")

    per_class = Table(title="per-class report")
    for column in ("class", "precision", "recall", "F1", "support"):
        per_class.add_column(column, justify="left" if column == "class" else "right")
    for row in result.per_class:
        per_class.add_row(row["label"], f"{row['precision']:.4f}", f"{row['recall']:.4f}", f"{row['f1']:.4f}",
                          f"{row['support']:,}")
    n = len(result.per_class) or 1
    per_class.add_section()
    per_class.add_row("macro average", f"{sum(r['precision'] for r in result.per_class) / n:.4f}",
                      f"{sum(r['recall'] for r in result.per_class) / n:.4f}", f"{result.macro_f1:.4f}",
                      f"{sum(r['support'] for r in result.per_class):,}")

    confusion = Table(title="confusion matrix (rows: true class, columns: predicted)")
    confusion.add_column("true \\ predicted")
    for name in result.label_names:
        confusion.add_column(name, justify="right")
    for name, counts in zip(result.label_names, result.confusion_matrix, strict=True):
        best = max(counts) if counts else 0
        confusion.add_row(name, *(f"[bold]{c:,}[/]" if c == best and c else f"{c:,}" for c in counts))
    return [summary, per_class, confusion]


@app.command("sentiment")
@user_errors
def sentiment(
    overrides: list[str] = typer.Argument(None, help="Config overrides applied last, e.g. train.lr=3e-5."),
    recipe: str = typer.Option(None, "--recipe", "-r", help="Recipe YAML path or packaged finetune recipe name."),
    model: str = typer.Option(None, "--model", "-m", help="Encoder: a model directory, a Hub name, or 'embedded'."),
    dataset: str = typer.Option(None, "--dataset", "-d",
                                help="'embedded' tweets, a Hub dataset (sst2, imdb, ...) or a csv/json/jsonl/parquet."),
    text_column: str = typer.Option(None, "--text-column", help="Column holding the text."),
    label_column: str = typer.Option(None, "--label-column", help="Column holding the labels (strings or ints)."),
    output: str = typer.Option(None, "--output", "-o", help="Directory for the fine-tuned model."),
    overwrite: bool = typer.Option(None, "--overwrite", help="Replace a non-empty output directory.",
                                   show_default=False),
    epochs: float = typer.Option(None, "--epochs", help="Epochs over the training set."),
    max_steps: int = typer.Option(None, "--max-steps", help="Optimizer steps (overrides --epochs)."),
    num_processes: NumProcesses = 1,
    num_machines: NumMachines = 1,
    machine_rank: MachineRank = 0,
    main_process_ip: MainProcessIp = None,
    main_process_port: MainProcessPort = None,
    accelerate_config: AccelerateConfig = None,
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Fine-tune an encoder for sentiment (or any single-label) classification and evaluate it."""
    from mlmkit.config import FinetuneConfig, load_config
    from mlmkit.training.finetune import finetune_classifier

    options = option_overrides(model=model, dataset=dataset, text_column=text_column, label_column=label_column,
                               output=output, overwrite=overwrite or None, epochs=epochs, max_steps=max_steps)
    all_overrides = options + list(overrides or [])
    cfg = load_config(FinetuneConfig, recipe, all_overrides, kind="finetune")  # validate before launching
    argv = ["finetune", "sentiment", *all_overrides, *(["--recipe", recipe] if recipe else []),
            *(["--json"] if as_json else [])]
    launch = (num_processes, num_machines, machine_rank, main_process_ip, main_process_port, accelerate_config)
    result = run_here_or_launch(argv, launch, LAUNCHER, lambda: finetune_classifier(cfg, console=err_console),
                                as_json)
    if result is None:
        return
    for table in report_tables(result):
        out_console.print(table)
    epochs = f"{result.epochs:g} epoch{'' if result.epochs == 1 else 's'}"
    out_console.print(f"{result.steps} steps ({epochs}) in {result.train_seconds:.1f} s "
                      f"({result.examples_per_second:,.1f} examples/s); model saved to {result.output_dir}")
