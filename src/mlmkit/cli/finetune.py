"""``mlmkit finetune sentiment|classify|ner|suite``: fine-tune an encoder for a task, or a suite of tasks."""

# Library imports (mlmkit's other layers and their dependencies) sit inside the functions that use them, so that
# `mlmkit --help` imports only this layer.

from __future__ import annotations

import functools
import inspect
import json
import math
from collections.abc import Callable
from typing import Annotated, Any

import typer
from rich.table import Table

from mlmkit.cli.common import err_console, out_console, user_errors
from mlmkit.cli.launch_options import run_here_or_launch, with_launch_options

app = typer.Typer(help="Fine-tune an encoder: sentiment, any sequence classification or regression, NER; a suite "
                       "of tasks.", no_args_is_help=True)

#: replaced in tests to check the multi-process command line without starting processes
LAUNCHER = None


def option_overrides(**options: Any) -> list[str]:
    """Turn the command's options into ``section.key=value`` overrides (None means "not given").

    Values are written as JSON so that paths and names stay strings whatever they look like.
    """
    keys = {"model": "model.name_or_path", "dataset": "data.dataset", "text_column": "data.text_column",
            "label_column": "data.label_column", "output": "output.dir", "overwrite": "output.overwrite",
            "epochs": "train.num_epochs", "max_steps": "train.max_steps", "task": "data.task",
            "text_pair_column": "data.text_pair_column", "label_separator": "data.label_separator",
            "threshold": "data.threshold", "config_name": "data.config_name"}
    overrides = [f"{keys[name]}={json.dumps(value)}" for name, value in options.items() if value is not None]
    if options.get("epochs") is not None and options.get("max_steps") is None:
        # --epochs alone means "train for this many epochs", even if the recipe fixes a step count
        overrides.append("train.max_steps=-1")
    return overrides


def _score(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.4f}" if isinstance(value, (int, float)) and not isinstance(value, bool) else str(value)


#: how the summary table names metrics
#: (weighted-F1 is in the JSON only, so the single-label table stays as it always was)
METRIC_LABELS = {"accuracy": "accuracy", "macro_f1": "macro-F1", "micro_f1": "micro-F1",
                 "f1": "F1", "precision": "precision", "recall": "recall", "pearson": "Pearson r",
                 "spearman": "Spearman rho", "mse": "MSE", "mae": "MAE", "threshold": "threshold"}


def _summary_rows(result: Any) -> list[tuple[str, str]]:
    """(name, key) of the metrics to show for the result's task, headline first."""
    metrics = result.metrics or {"accuracy": result.accuracy, "macro_f1": result.macro_f1}
    order = [result.primary_metric, *(k for k in METRIC_LABELS if k != result.primary_metric)]
    return [(METRIC_LABELS[k], k) for k in order if k in metrics and metrics[k] is not None
            and not (isinstance(metrics[k], float) and math.isnan(metrics[k]))]


def report_tables(result: Any) -> list[Table]:
    """Rich tables of a :class:`~mlmkit.training.finetune.FinetuneResult`: summary, per-class, confusion."""
    metrics = result.metrics or {"accuracy": result.accuracy, "macro_f1": result.macro_f1}
    baseline_name = {"single_label": "majority baseline", "multi_label": "majority-label baseline",
                     "regression": "mean baseline", "token": "most-frequent-tag baseline"}.get(result.task)
    summary = Table(title=f"evaluation on {result.data.get('eval_examples', '?'):,} examples ({result.eval_source})")
    summary.add_column("metric")
    summary.add_column("fine-tuned", justify="right")
    summary.add_column(f"{baseline_name} ('{result.baseline['label']}')", justify="right")
    for label, key in _summary_rows(result):
        if key == "threshold" and result.task == "multi_label":
            label = "threshold (tuned on this set)" if result.data.get("threshold_tuned") else "threshold (fixed)"
        summary.add_row(label, _score(metrics[key]), _score(result.baseline.get(key, "")) if key != "threshold" else "")
    tables = [summary]
    if result.per_class:
        title = {"token": "per-type report (entities)" if result.data.get("scoring") == "seqeval entities"
                 else "per-tag report (words)", "multi_label": "per-label report"}.get(result.task, "per-class report")
        per_class = Table(title=title)
        for column in ("class", "precision", "recall", "F1", "support"):
            per_class.add_column(column, justify="left" if column == "class" else "right")
        for row in result.per_class:
            per_class.add_row(row["label"], f"{row['precision']:.4f}", f"{row['recall']:.4f}", f"{row['f1']:.4f}",
                              f"{row['support']:,}")
        n = len(result.per_class) or 1
        per_class.add_section()
        per_class.add_row("macro average", f"{sum(r['precision'] for r in result.per_class) / n:.4f}",
                          f"{sum(r['recall'] for r in result.per_class) / n:.4f}", _score(result.macro_f1),
                          f"{sum(r['support'] for r in result.per_class):,}")
        tables.append(per_class)
    if result.confusion_matrix:
        confusion = Table(title="confusion matrix (rows: true class, columns: predicted)")
        confusion.add_column("true \\ predicted")
        for name in result.label_names:
            confusion.add_column(name, justify="right")
        for name, counts in zip(result.label_names, result.confusion_matrix, strict=True):
            best = max(counts) if counts else 0
            confusion.add_row(name, *(f"[bold]{c:,}[/]" if c == best and c else f"{c:,}" for c in counts))
        tables.append(confusion)
    if result.extra_evals:
        extra = Table(title="further evaluation splits")
        keys = [k for _, k in _summary_rows(result) if k != "threshold"]
        extra.add_column("split")
        for key in keys:
            extra.add_column(METRIC_LABELS[key], justify="right")
        extra.add_column("examples", justify="right")
        for split, scores in result.extra_evals.items():
            extra.add_row(split, *(_score(scores.get(k, float("nan"))) for k in keys), f"{scores['examples']:,}")
        tables.append(extra)
    return tables


def _run(command: str, recipe: str | None, options: list[str], overrides: list[str] | None, launch: tuple,
         run: dict[str, Any], argv: list[str] | None) -> None:
    """Shared body of sentiment / classify / ner: resolve the config, run here or launch, print tables.

    ``run`` holds the values of :data:`RUN_OPTIONS`; ``argv`` is the command line as typed, which
    launched workers get; None (called from Python) rebuilds it from the parsed values.
    """
    from mlmkit.config import FinetuneConfig, load_config
    from mlmkit.training.finetune import finetune_classifier
    from mlmkit.training.launch import LaunchOptions, wants_launch
    from mlmkit.training.validation import validate_run_config

    as_json = run["as_json"]
    options = [*options, *option_overrides(output=run["output"], overwrite=run["overwrite"] or None,
                                           epochs=run["epochs"], max_steps=run["max_steps"])]
    all_overrides = options + list(overrides or [])
    cfg = load_config(FinetuneConfig, recipe, all_overrides, kind="finetune")  # validate before launching
    if wants_launch(LaunchOptions(*launch)):  # files and sources too: once here, not in every worker
        validate_run_config(cfg)
    if argv is None:
        argv = ["finetune", command, *all_overrides, *(["--recipe", recipe] if recipe else []),
                *(["--json"] if as_json else [])]
    result = run_here_or_launch(argv, launch, LAUNCHER, lambda: finetune_classifier(cfg, console=err_console),
                                as_json)
    if result is None:
        return
    for table in report_tables(result):
        out_console.print(table)
    epochs = f"{result.epochs:g} epoch{'' if result.epochs == 1 else 's'}"
    out_console.print(f"{result.steps} steps ({epochs}) in {result.train_seconds:.1f} s "
                      f"({result.examples_per_second:,.1f} examples/s); model saved to {result.output_dir}")


Overrides = Annotated[list[str], typer.Argument(help="Config overrides applied last, e.g. train.lr=3e-5.")]
Recipe = Annotated[str, typer.Option("--recipe", "-r", help="Recipe YAML path or packaged finetune recipe name.")]
Model = Annotated[str, typer.Option("--model", "-m", help="Encoder: a model directory, a Hub name, or 'embedded'.")]
Output = Annotated[str, typer.Option("--output", "-o", help="Directory for the fine-tuned model.")]
Overwrite = Annotated[bool, typer.Option("--overwrite", help="Replace a non-empty output directory.",
                                         show_default=False)]
Epochs = Annotated[float, typer.Option("--epochs", help="Epochs over the training set.")]
MaxSteps = Annotated[int, typer.Option("--max-steps", help="Optimizer steps (overrides --epochs).")]
AsJson = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]
TextColumn = Annotated[str, typer.Option("--text-column", help="Column holding the text.")]
LabelColumn = Annotated[str, typer.Option("--label-column", help="Column holding the labels (strings or ints).")]
ConfigName = Annotated[str, typer.Option("--config-name", help="Hub dataset configuration (e.g. GLUE's 'mrpc').")]

#: the options every fine-tuning command takes after its own: (parameter, type with its option, default)
RUN_OPTIONS: tuple[tuple[str, Any, Any], ...] = (
    ("output", Output, None),
    ("overwrite", Overwrite, None),
    ("epochs", Epochs, None),
    ("max_steps", MaxSteps, None),
    ("as_json", AsJson, False),
)


def with_run_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Add :data:`RUN_OPTIONS` to a fine-tuning command, declared once; ``fn`` receives them as ``run`` (a dict)."""
    signature = inspect.signature(fn, eval_str=True)
    own = [p for p in signature.parameters.values() if p.name != "run"]
    position = next(i for i, p in enumerate(own) if p.name == "launch")  # Typer keeps the declared order in --help
    added = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=kind)
             for name, kind, default in RUN_OPTIONS]

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        run = {name: kwargs.pop(name) for name, _, _ in RUN_OPTIONS}
        return fn(*args, run=run, **kwargs)

    parameters = [*own[:position], *added, *own[position:]]
    wrapper.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
    return wrapper


@app.command("sentiment")
@user_errors
@with_launch_options
@with_run_options
def sentiment(
    overrides: Overrides = None,
    recipe: Recipe = None,
    model: Model = None,
    dataset: str = typer.Option(None, "--dataset", "-d",
                                help="'embedded' tweets, a Hub dataset (sst2, imdb, ...) or a csv/json/jsonl/parquet."),
    text_column: TextColumn = None,
    label_column: LabelColumn = None,
    *,
    launch: tuple = (),
    argv: list[str] | None = None,
    run: dict[str, Any],
) -> None:
    """Fine-tune an encoder for sentiment (or any single-label) classification and evaluate it."""
    options = option_overrides(model=model, dataset=dataset, text_column=text_column, label_column=label_column)
    _run("sentiment", recipe, options, overrides, launch, run, argv)


@app.command("classify")
@user_errors
@with_launch_options
@with_run_options
def classify(
    overrides: Overrides = None,
    recipe: Recipe = None,
    model: Model = None,
    dataset: str = typer.Option(None, "--dataset", "-d",
                                help="'embedded' tweets, a Hub dataset (glue with --config-name, ...) or a "
                                     "csv/json/jsonl/parquet file."),
    config_name: ConfigName = None,
    text_column: TextColumn = None,
    text_pair_column: str = typer.Option(None, "--text-pair-column",
                                         help="Second text of a pair (NLI, paraphrase, similarity)."),
    label_column: LabelColumn = None,
    task: str = typer.Option(None, "--task",
                             help="single_label (default), multi_label or regression (float labels)."),
    label_separator: str = typer.Option(None, "--label-separator",
                                        help="Multi-label: split string labels on this (implies --task multi_label)."),
    threshold: float = typer.Option(None, "--threshold",
                                    help="Multi-label decision threshold; default: tuned on the evaluation split."),
    *,
    launch: tuple = (),
    argv: list[str] | None = None,
    run: dict[str, Any],
) -> None:
    """Fine-tune for sequence classification: one text or a pair; single-label, multi-label or regression."""
    if task is None and (label_separator is not None or threshold is not None):
        task = "multi_label"
    options = option_overrides(model=model, dataset=dataset, config_name=config_name, text_column=text_column,
                               text_pair_column=text_pair_column, label_column=label_column, task=task,
                               label_separator=label_separator, threshold=threshold)
    _run("classify", recipe, options, overrides, launch, run, argv)


@app.command("ner")
@user_errors
@with_launch_options
@with_run_options
def ner(
    overrides: Overrides = None,
    recipe: Recipe = None,
    model: Model = None,
    dataset: str = typer.Option(None, "--dataset", "-d",
                                help="A Hub dataset (conll2003, wnut_17, ...), a CoNLL file, JSON lines with "
                                     "tokens/tags, or 'embedded-pos'."),
    config_name: ConfigName = None,
    tokens_column: str = typer.Option(None, "--tokens-column", help="Column of word lists (default 'tokens')."),
    tags_column: str = typer.Option(None, "--tags-column",
                                    help="Column of tag lists (default: Hub 'ner_tags', files 'tags')."),
    *,
    launch: tuple = (),
    argv: list[str] | None = None,
    run: dict[str, Any],
) -> None:
    """Fine-tune for token classification (NER: entity-level seqeval scores; other tags: word accuracy)."""
    options = ["data.task=token", *option_overrides(
        model=model, dataset=dataset, config_name=config_name, text_column=tokens_column, label_column=tags_column)]
    _run("ner", recipe, options, overrides, launch, run, argv)


def suite_table(summary: dict[str, Any]) -> Table:
    """The suite's one table: task, metric, mean ± std over seeds, per-seed values, baseline."""
    seeds = summary["seeds"]
    table = Table(title=f"fine-tuning suite on {summary['model']} ({len(seeds)} seed{'s' if len(seeds) != 1 else ''})")
    for column in ("task", "metric", "mean ± std", "per seed", "baseline", "evaluated on", "train s"):
        table.add_column(column, justify="left" if column in ("task", "metric", "evaluated on") else "right")
    for row in summary["rows"]:
        spread = "" if row["std"] is None or math.isnan(row["std"]) else f" ± {row['std']:.4f}"
        table.add_row(row["task"], row["metric"], f"{row['mean']:.4f}{spread}",
                      " ".join(f"{v:.4f}" for v in row["values"].values()),
                      f"{_score(row['baseline'])} ({row['baseline_label']})", row["eval_source"],
                      f"{row['seconds']:.0f}")
    return table


@app.command("suite")
@user_errors
@with_launch_options
def suite(
    overrides: Annotated[list[str], typer.Argument(help="Suite config overrides, e.g. seeds=[0,1] "
                                                        "output.dir=runs/suite-b.")] = None,
    recipe: str = typer.Option("embedded", "--recipe", "-r", help="Suite recipe YAML path or packaged suite name."),
    model: Model = None,
    seeds: str = typer.Option(None, "--seeds", help="Comma-separated seeds, e.g. 0,1,2 (default: the recipe's)."),
    output: str = typer.Option(None, "--output", "-o", help="Suite directory (suite.json, one folder per run)."),
    overwrite: Overwrite = None,
    as_json: AsJson = False,
    launch: tuple = (),
    argv: list[str] | None = None,
) -> None:
    """Run several fine-tuning recipes x seeds on one encoder; one table of mean ± std, and suite.json."""
    from mlmkit.config import load_config
    from mlmkit.errors import UserError
    from mlmkit.training.suite import SuiteConfig, run_suite

    options = []
    if model is not None:
        options.append(f"model={json.dumps(model)}")
    if seeds is not None:
        try:
            options.append(f"seeds={json.dumps([int(s) for s in seeds.split(',') if s.strip()])}")
        except ValueError:
            raise UserError(f"--seeds takes comma-separated integers, got {seeds!r}") from None
    if output is not None:
        options.append(f"output.dir={json.dumps(output)}")
    if overwrite:
        options.append("output.overwrite=true")
    all_overrides = options + list(overrides or [])
    cfg = load_config(SuiteConfig, recipe, all_overrides, kind="suite")  # validate before launching
    if argv is None:
        argv = ["finetune", "suite", *all_overrides, "--recipe", recipe, *(["--json"] if as_json else [])]
    summary = run_here_or_launch(argv, launch, LAUNCHER, lambda: run_suite(cfg, console=err_console), as_json)
    if summary is None:
        return
    out_console.print(suite_table(summary))
    out_console.print(f"results in {cfg.output.dir}/suite.json")
