"""``mlmkit finetune suite``: several fine-tuning recipes x seeds on one encoder, one table.

A suite recipe (``recipes/suite/*.yaml``) lists tasks, each a fine-tuning recipe plus
overrides; every task runs once per seed with the same encoder, into
``<output.dir>/<task>/seed-<seed>``. The table gives each task's headline metric as mean ±
sample standard deviation over seeds (and the constant baseline), and ``suite.json`` holds
every number. A run whose directory already has results for the very same config is
reused, so an interrupted suite continues where it stopped.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from mlmkit.config.loading import config_to_yaml, load_config
from mlmkit.config.schema import FinetuneConfig
from mlmkit.errors import UserError
from mlmkit.io.outputs import prepare_output_dir, write_text_atomic
from mlmkit.training.launch import process_state
from mlmkit.training.validation import validate_run_config

SUITE_FILE = "suite.json"
SUITE_CONFIG = "suite.yaml"


@dataclass
class SuiteTask:
    """One row of the suite: a fine-tuning recipe and what to change in it."""

    name: str = "task"
    """Row name, also the folder of its runs."""
    recipe: str = "demo"
    """Fine-tuning recipe: a packaged finetune recipe name or a YAML path."""
    overrides: list[str] = field(default_factory=list)
    """section.key=value overrides applied to the recipe (sizes, steps, ...)."""
    metric: str | None = None
    """Metric to report; default: the task's headline metric (accuracy, micro_f1, pearson, entity f1)."""


@dataclass
class SuiteOutput:
    """Where the suite writes."""

    dir: str = "runs/suite"
    """Suite directory: suite.yaml, suite.json and one folder per task and seed."""
    overwrite: bool = False
    """Start over in a directory that holds something else than this suite's runs."""


@dataclass
class SuiteConfig:
    """``mlmkit finetune suite``: fine-tuning tasks x seeds on one encoder."""

    model: str = "runs/demo/mlm"
    """Encoder every task starts from: a model directory, a Hub name, or 'embedded'."""
    tasks: list[SuiteTask] = field(default_factory=list)
    """The tasks (rows of the table)."""
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    """Seeds each task runs with (new head weights, data order, dropout)."""
    output: SuiteOutput = field(default_factory=SuiteOutput)
    """Suite directory."""


@dataclass
class SuiteRow:
    """One task's results over the seeds."""

    task: str
    metric: str
    values: dict[str, float]
    mean: float
    std: float
    baseline: float
    baseline_label: str
    eval_source: str
    seconds: float


def _stats(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (NaN for one value)."""
    array = np.asarray(values, dtype=np.float64)
    return float(array.mean()), float(array.std(ddof=1)) if len(array) > 1 else float("nan")


def task_config(suite: SuiteConfig, task: SuiteTask, seed: int, out: Path) -> Any:
    """The resolved fine-tuning config of one task and seed (the suite's model, seed and run folder win)."""
    fixed = [f"model.name_or_path={json.dumps(suite.model)}", f"output.dir={json.dumps(str(out))}",
             "output.overwrite=true", f"train.seed={seed}"]
    return load_config(FinetuneConfig, task.recipe, [*task.overrides, *fixed], kind="finetune")


def _previous_result(out: Path, cfg: Any) -> dict[str, Any] | None:
    """Results of a finished run in ``out`` with exactly this config, else None."""
    results, config = out / "eval_results.json", out / "config.yaml"
    if not (results.is_file() and config.is_file() and (out / "config.json").is_file()):
        return None
    if config.read_text(encoding="utf-8") != config_to_yaml(cfg):
        return None
    try:
        return json.loads(results.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return None


def _prepare_suite_dir(suite: SuiteConfig, text: str) -> Path:
    """Create the suite folder; refuse a non-empty folder of something else unless output.overwrite."""
    out = Path(suite.output.dir).expanduser()
    ours = (out / SUITE_CONFIG).is_file()
    if not ours:
        out = prepare_output_dir(str(out), suite.output.overwrite)
    write_text_atomic(out / SUITE_CONFIG, text)
    return out


def run_suite(suite: SuiteConfig, console: Console | None = None) -> dict[str, Any]:
    """Run every task of ``suite`` with every seed and summarise.

    Args:
        suite: The resolved suite config.
        console: Where progress goes (stderr by default).

    Returns:
        The content of ``suite.json`` (NaN written as None): ``model``, ``seeds``, ``rows`` (one per task:
        metric, per-seed values, mean, std, baseline) and ``runs`` (every run's metrics).
    """
    # lazy: looked up at each call, so a replaced mlmkit.training.finetune.finetune_classifier (tests) is used
    from mlmkit.training.finetune import finetune_classifier, primary_metric

    console = console or Console(stderr=True)
    if not suite.tasks:
        raise UserError("the suite has no tasks; list them under 'tasks' (name, recipe, overrides)")
    if not suite.seeds:
        raise UserError("the suite has no seeds; set seeds: [0, 1, 2] or --seeds 0,1,2")
    names = [task.name for task in suite.tasks]
    if len(set(names)) != len(names):
        raise UserError(f"suite task names must differ: {', '.join(names)}")
    root = Path(suite.output.dir).expanduser()
    # every task config resolves (recipe found, keys valid, sources readable) before anything runs
    plans = [(task, seed, task_config(suite, task, seed, root / task.name / f"seed-{seed}"))
             for task in suite.tasks for seed in suite.seeds]
    for _, _, cfg in plans[:: len(suite.seeds)]:
        validate_run_config(cfg)
    # launched on several processes, every process runs every task (its share of each batch) and
    # only the main one writes the suite's own files
    state = process_state()
    main = state.is_main_process
    # every process refuses a foreign folder alike, so none waits for a main process that stopped
    if not (root / SUITE_CONFIG).is_file() and not suite.output.overwrite and root.is_dir() and any(root.iterdir()):
        raise UserError(f"output directory {root} is not empty; choose another or set output.overwrite=true")
    state.wait_for_everyone()  # all have looked before the main process writes
    if not main:
        console = Console(stderr=True, quiet=True)
    out = _prepare_suite_dir(suite, config_to_yaml(suite)) if main else root

    runs: list[dict[str, Any]] = []
    for number, (task, seed, cfg) in enumerate(plans, 1):
        run_dir = Path(cfg.output.dir)
        result = _previous_result(run_dir, cfg)
        state.wait_for_everyone()  # all have decided on the same files before the main process rewrites them
        if result is not None:
            console.print(f"[dim]{task.name} seed {seed}: reusing the finished run in {run_dir}[/]")
        else:
            console.print(f"[bold]{task.name}[/] seed {seed} ({number}/{len(plans)})")
            # one process group serves every run; it is closed after the last
            result = asdict(finetune_classifier(cfg, console=console, keep_process_group=True))
        metric = task.metric or primary_metric(result.get("task", "single_label"), result["data"].get("scoring"))
        scores = {**{"accuracy": result["accuracy"], "macro_f1": result["macro_f1"]}, **result.get("metrics", {})}
        if metric not in scores:
            raise UserError(f"suite task {task.name!r} asks for metric {metric!r}; the run reports "
                            f"{', '.join(sorted(scores))}")
        runs.append({"task": task.name, "seed": seed, "dir": str(run_dir), "metric": metric,
                     "value": scores[metric], "baseline": result["baseline"].get(metric, float("nan")),
                     "baseline_label": result["baseline"].get("label", ""), "eval_source": result["eval_source"],
                     "train_seconds": result["train_seconds"], "steps": result["steps"], "metrics": scores})

    rows = []
    for task in suite.tasks:
        mine = [r for r in runs if r["task"] == task.name]
        mean, std = _stats([r["value"] for r in mine])
        rows.append(asdict(SuiteRow(task=task.name, metric=mine[0]["metric"],
                                    values={str(r["seed"]): r["value"] for r in mine}, mean=mean, std=std,
                                    baseline=mine[0]["baseline"], baseline_label=mine[0]["baseline_label"],
                                    eval_source=mine[0]["eval_source"],
                                    seconds=sum(r["train_seconds"] for r in mine))))
    summary = _json_safe({"model": suite.model, "seeds": list(suite.seeds), "rows": rows, "runs": runs})
    if main:
        write_text_atomic(out / SUITE_FILE, json.dumps(summary, indent=2) + "\n")
    state.wait_for_everyone()
    state.destroy_process_group()
    return summary


def _json_safe(value: Any) -> Any:
    """NaN -> None, so suite.json is strict JSON."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value
