"""Run directories written from constructed metrics, no training: exact numbers for cards, plots and listings."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from mlmkit.config.loading import config_to_yaml
from mlmkit.config.schema import FinetuneConfig, ModelConfig, OutputConfig, PretrainConfig, TrainConfig

PRETRAIN_BEFORE = {"masked_accuracy": 0.05, "eval_loss": 6.0, "perplexity": math.exp(6.0)}
PRETRAIN_AFTER = {"masked_accuracy": 0.3125, "eval_loss": 3.0, "perplexity": math.exp(3.0)}


def _write_records(path: Path, records: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")


def _finish(run: Path, timestamp: float | None) -> None:
    (run / "config.json").write_text(json.dumps({"model_type": "bert"}))
    (run / "tokenizer_config.json").write_text(json.dumps({"mask_token": "[MASK]"}))
    if timestamp is not None:
        for name in ("metrics.jsonl", "eval_results.json"):
            os.utime(run / name, (timestamp, timestamp))


def make_pretrain_run(run: Path, strategy: str = "span", timestamp: float | None = None,
                      masking: dict | None = None, finished: bool = True, **output) -> Path:
    """A 20-step pre-training run: evaluations at steps 0, 10, 20; training lines at 1, 10, 20."""
    run.mkdir(parents=True, exist_ok=True)
    cfg = PretrainConfig(masking=masking or {"name": strategy, "ratio": 0.15},
                         train=TrainConfig(max_steps=20, batch_size=8, log_every=10),
                         output=OutputConfig(dir=str(run), **output))
    (run / "config.yaml").write_text(config_to_yaml(cfg))
    train = [{"step": s, "split": "train", "loss": loss, "lr": lr, "mask_ratio": 0.15, "tokens_per_s": tps}
             for s, loss, lr, tps in ((1, 5.0, 1e-4, 900.0), (10, 4.0, 5e-4, 1000.0), (20, 3.25, 0.0, 1100.0))]
    middle = {"masked_accuracy": 0.2, "eval_loss": 4.0, "perplexity": math.exp(4.0)}
    _write_records(run / "metrics.jsonl", [{"step": 0, "split": "eval", **PRETRAIN_BEFORE}, train[0], train[1],
                                           {"step": 10, "split": "eval", **middle}, train[2]]
                   + ([{"step": 20, "split": "eval", **PRETRAIN_AFTER}] if finished else []))
    if finished:
        (run / "eval_results.json").write_text(json.dumps({
            "output_dir": str(run), "steps": 20, "train_seconds": 12.5, "tokens_per_second": 1000.0,
            "before": PRETRAIN_BEFORE, "after": PRETRAIN_AFTER, "final_loss": 3.25,
            "data": {"documents": 200, "blocks": 78, "train_blocks": 62, "eval_blocks": 16}, "resumed_from": None}))
        _finish(run, timestamp)
    elif timestamp is not None:
        os.utime(run / "metrics.jsonl", (timestamp, timestamp))
    return run


def make_finetune_run(run: Path, model: str, accuracy: float, timestamp: float | None = None) -> Path:
    """A 30-step fine-tuning run from ``model`` with the given final accuracy (macro-F1 = accuracy - 0.05)."""
    run.mkdir(parents=True, exist_ok=True)
    cfg = FinetuneConfig(model=ModelConfig(name_or_path=model), output=OutputConfig(dir=str(run)))
    (run / "config.yaml").write_text(config_to_yaml(cfg))
    final = {"accuracy": accuracy, "macro_f1": accuracy - 0.05, "eval_loss": 0.5}
    baseline = {"label": "negative", "accuracy": 0.4, "macro_f1": 0.19}
    _write_records(run / "metrics.jsonl", [
        {"step": 1, "split": "train", "loss": 1.1, "lr": 1e-5, "examples_per_s": 50.0},
        {"step": 30, "split": "train", "loss": 0.4, "lr": 0.0, "examples_per_s": 60.0},
        {"step": 30, "split": "eval", **final, "baseline_accuracy": 0.4, "baseline_macro_f1": 0.19}])
    per_class = [{"label": name, "precision": 0.75, "recall": 0.5, "f1": 0.6, "support": 40}
                 for name in ("negative", "neutral", "positive")]
    (run / "eval_results.json").write_text(json.dumps({
        "output_dir": str(run), "label_names": ["negative", "neutral", "positive"], "steps": 30, "epochs": 2.0,
        "train_seconds": 9.0, "examples_per_second": 55.0, "final_loss": 0.4, **final, "baseline": baseline,
        "per_class": per_class, "confusion_matrix": [[20, 10, 10], [10, 20, 10], [10, 10, 20]],
        "eval_source": "a stratified 10% of train", "data": {"train_examples": 360, "eval_examples": 120},
        "stopped_by_time": False}))
    _finish(run, timestamp)
    return run
