"""Read a run directory back: what kind of run, which strategy, how far, and its before/after numbers.

Everything comes from the files a run leaves (``config.yaml``, ``metrics.jsonl``, ``eval_results.json``),
so model cards, plots and ``mlmkit runs ls`` work on any run directory, finished or not, old or new.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from mlmkit.errors import UserError

#: what the loops write at the end: the fine-tuning report, or the pre-training before/after metrics
RESULTS_FILE = "eval_results.json"


@dataclass
class RunSummary:
    """The headline facts of one run directory."""

    path: str
    kind: str
    """'pretrain' or 'finetune'."""
    strategy: str | None
    """Masking strategy (pre-training runs)."""
    steps: int
    """Last optimizer step logged."""
    finished: bool
    """A model was saved (``config.json`` present)."""
    date: str
    """When the run last wrote its results or metrics (local time, ISO format)."""
    model: str
    """The model the run started from (``model.name_or_path``)."""
    data: str
    """The training data (``data.source`` or ``data.dataset``)."""
    before: dict[str, float] = field(default_factory=dict)
    """Held-out metrics before training (pre-training) or of the majority baseline (fine-tuning)."""
    after: dict[str, float] = field(default_factory=dict)
    """Held-out metrics after training (or at the latest evaluation of an unfinished run)."""
    downstream: dict[str, float] = field(default_factory=dict)
    """Classification scores: a fine-tuning run's own, or for a pre-training run those of the best
    fine-tuning run (in the same listing) that started from it."""


def load_run(run_dir: str | Path) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any]]:
    """``(config, metrics records, results)`` of a run directory; results are ``{}`` until the run ends.

    Raises:
        UserError: When ``run_dir`` has no ``metrics.jsonl`` and ``config.yaml`` (not a run directory).
    """
    run = Path(run_dir).expanduser()
    if not (run / "metrics.jsonl").is_file() or not (run / "config.yaml").is_file():
        raise UserError(f"{run} is not an mlmkit run directory (no metrics.jsonl and config.yaml)")
    config = OmegaConf.to_container(OmegaConf.load(run / "config.yaml"), resolve=True)
    results_path = run / RESULTS_FILE
    results = json.loads(results_path.read_text(encoding="utf-8")) if results_path.is_file() else {}
    return config, read_run_metrics(run / "metrics.jsonl"), results


def read_run_metrics(path: str | Path) -> list[dict[str, Any]]:
    """The records of a ``metrics.jsonl``, skipping lines that are not whole JSON objects.

    A run killed while appending leaves a cut line (and a resumed run appends after it);
    the rest of the file is still good.
    """
    records = []
    for line in Path(path).read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and "step" in record:
            records.append(record)
    return records


def latest_by_step(records: list[dict[str, Any]], split: str) -> list[dict[str, Any]]:
    """The ``split`` records in step order, the last one written for each step.

    A resumed run repeats the steps logged after its checkpoint; the later lines win.
    """
    by_step = {int(r["step"]): r for r in records if r.get("split") == split}
    return [by_step[step] for step in sorted(by_step)]


def run_kind(config: dict[str, Any]) -> str:
    """'pretrain' for configs with a masking section, otherwise 'finetune'."""
    return "pretrain" if "masking" in config else "finetune"


def _finite(values: dict[str, Any], keys: tuple[str, ...]) -> dict[str, float]:
    return {k: float(values[k]) for k in keys if isinstance(values.get(k), int | float)
            and math.isfinite(values[k])}


MLM_KEYS = ("masked_accuracy", "perplexity", "eval_loss")
CLASSIFICATION_KEYS = ("accuracy", "macro_f1", "eval_loss")


def summarize_run(run_dir: str | Path) -> RunSummary:
    """The :class:`RunSummary` of one run directory."""
    run = Path(run_dir).expanduser()
    config, records, results = load_run(run)
    kind = run_kind(config)
    train = latest_by_step(records, "train")
    evals = latest_by_step(records, "eval")
    steps = max([int(r["step"]) for r in train + evals] + [int(results.get("steps", 0))])
    if kind == "pretrain":
        before = _finite(results.get("before") or (evals[0] if evals and evals[0]["step"] == 0 else {}), MLM_KEYS)
        after = _finite(results.get("after") or (evals[-1] if len(evals) > 1 else {}), MLM_KEYS)
        downstream: dict[str, float] = {}
        data = config.get("data", {}).get("source", "")
    else:
        last = evals[-1] if evals else {}
        before = _finite(results.get("baseline", {}), ("accuracy", "macro_f1")) if results else \
            {key: float(last[f"baseline_{key}"]) for key in ("accuracy", "macro_f1") if f"baseline_{key}" in last}
        after = _finite(results or last, CLASSIFICATION_KEYS)
        downstream = {k: v for k, v in after.items() if k != "eval_loss"}
        data = config.get("data", {}).get("dataset", "")
    stamp_file = run / RESULTS_FILE if results else run / "metrics.jsonl"
    return RunSummary(
        path=str(run), kind=kind, strategy=config.get("masking", {}).get("name") if kind == "pretrain" else None,
        steps=steps, finished=(run / "config.json").is_file(),
        date=datetime.fromtimestamp(stamp_file.stat().st_mtime).isoformat(timespec="seconds"),
        model=str(config.get("model", {}).get("name_or_path", "")), data=str(data),
        before=before, after=after, downstream=downstream,
    )


def find_runs(root: str | Path) -> list[RunSummary]:
    """Every run directory under ``root`` (``root`` itself included), newest first.

    A pre-training run also shows the best downstream scores of the fine-tuning runs found here
    that started from it.

    Raises:
        UserError: When ``root`` is not a directory.
    """
    base = Path(root).expanduser()
    if not base.is_dir():
        raise UserError(f"{base} is not a directory")
    runs = [summarize_run(metrics.parent) for metrics in sorted(base.rglob("metrics.jsonl"))
            if (metrics.parent / "config.yaml").is_file()
            and "checkpoints" not in metrics.parent.relative_to(base).parts]
    pretrain_by_path = {Path(r.path).resolve(): r for r in runs if r.kind == "pretrain"}
    for run in runs:
        if run.kind != "finetune" or not run.downstream:
            continue
        parent = pretrain_by_path.get(_resolved_model_path(run))
        if parent is not None and run.downstream.get("accuracy", -1.0) > parent.downstream.get("accuracy", -1.0):
            parent.downstream = dict(run.downstream)
    return sorted(runs, key=lambda r: r.date, reverse=True)


def _resolved_model_path(run: RunSummary) -> Path | None:
    """The fine-tuned run's starting model as an absolute path.

    A relative name is tried from the current directory (where mlmkit ran) and from the run's parent.
    """
    model = Path(run.model).expanduser()
    for candidate in (model, Path(run.path).parent / model):
        if candidate.is_dir():
            return candidate.resolve()
    return None
