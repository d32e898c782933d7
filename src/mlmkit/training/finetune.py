"""``mlmkit finetune sentiment``: the Accelerate loop for sequence classification.

The same flat shape as :mod:`mlmkit.training.pretrain`: build data and model,
``prepare``, loop with accumulation / clipping / schedule, evaluate on the held-out
set, save a standard model directory. Batches are padded dynamically (to a multiple
of 8) and grouped by length, so short texts do not pay for long ones.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console

from mlmkit.config.loading import config_to_yaml, validate_config
from mlmkit.config.schema import FinetuneConfig, ModelConfig
from mlmkit.data.labelled import (
    LengthGroupedBatchSampler,
    column_values,
    load_labelled_splits,
    tokenize_labelled,
)
from mlmkit.errors import UserError
from mlmkit.modeling.fast_dropout import use_fast_dropout
from mlmkit.modeling.loading import load_pretrained, load_tokenizer
from mlmkit.training.classification_metrics import classification_report, majority_baseline
from mlmkit.training.launch import build_accelerator
from mlmkit.training.model_card import finish_run
from mlmkit.training.optim import build_lr_scheduler, build_optimizer
from mlmkit.training.progress import training_progress
from mlmkit.training.run_dir import prepare_output_dir, save_pretrained_atomic, write_text_atomic
from mlmkit.training.stopping import parse_duration
from mlmkit.training.tracking import open_metrics_log, reporting_options

#: padded lengths are rounded up to this (tensor-core friendly on GPUs, harmless on CPUs)
PAD_TO_MULTIPLE_OF = 8


@dataclass
class FinetuneResult:
    """What a fine-tuning run produced; ``accuracy`` and ``macro_f1`` are on the evaluation set."""

    output_dir: str
    label_names: list[str]
    steps: int
    epochs: float
    train_seconds: float
    examples_per_second: float
    final_loss: float
    accuracy: float
    macro_f1: float
    eval_loss: float
    baseline: dict[str, Any]
    per_class: list[dict[str, Any]]
    confusion_matrix: list[list[int]]
    eval_source: str
    data: dict[str, Any] = field(default_factory=dict)
    stopped_by_time: bool = False
    """True when train.max_time ended training before the planned number of steps."""


def load_sequence_classifier(model_cfg: ModelConfig, label_names: list[str]) -> tuple[Any, list[str]]:
    """``AutoModelForSequenceClassification`` with a fresh head sized and named for ``label_names``.

    Loading an MLM or plain encoder checkpoint keeps the encoder weights; a checkpoint that
    already has a classification head of another size gets a new one.

    Returns:
        ``(model, newly_initialised_weight_names)``.
    """
    from transformers import AutoModelForSequenceClassification

    kwargs: dict[str, Any] = {
        "num_labels": len(label_names),
        "id2label": dict(enumerate(label_names)),
        "label2id": {label: i for i, label in enumerate(label_names)},
        "revision": model_cfg.revision,
        "trust_remote_code": model_cfg.trust_remote_code,
        "ignore_mismatched_sizes": True,
    }
    if model_cfg.attn_implementation:
        kwargs["attn_implementation"] = model_cfg.attn_implementation
    if model_cfg.from_scratch:
        raise UserError("model.from_scratch is for pre-training; fine-tuning starts from a trained encoder")
    model, info = load_pretrained(AutoModelForSequenceClassification, model_cfg.name_or_path, **kwargs)
    fresh = sorted(set(info.get("missing_keys", [])) | {str(k[0]) if isinstance(k, tuple) else str(k)
                                                         for k in info.get("mismatched_keys", [])})
    return model, fresh


def _classification_tokenizer(model_cfg: ModelConfig):
    tokenizer = load_tokenizer(model_cfg.tokenizer or model_cfg.name_or_path, model_cfg.revision,
                               model_cfg.trust_remote_code, require_mask=False)
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise UserError(f"the tokenizer of {model_cfg.name_or_path!r} has no padding token (nor an end token "
                            "to pad with), so batches of different lengths cannot be formed")
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def _budget_spent(start: float, budget: float, accelerator: Any) -> bool:
    """Whether the time budget is used up, decided the same way on every process."""
    spent = torch.tensor([float(time.perf_counter() - start >= budget)], device=accelerator.device)
    if accelerator.num_processes > 1:
        spent = accelerator.gather(spent).max()
    return bool(spent.item())


def _total_steps(cfg: FinetuneConfig, updates_per_epoch: int) -> int:
    tcfg = cfg.train
    if tcfg.max_steps > 0:
        return tcfg.max_steps
    if tcfg.num_epochs <= 0:
        raise UserError("set train.max_steps > 0 or train.num_epochs > 0")
    return max(1, math.ceil(tcfg.num_epochs * updates_per_epoch))


@torch.no_grad()
def predict_eval(model: Any, loader: Any, accelerator: Any) -> tuple[np.ndarray, np.ndarray, float]:
    """Predicted and true class ids over ``loader`` (gathered across processes) and the mean loss."""
    model.eval()
    predictions, references, losses = [], [], []
    for batch in loader:
        labels = batch.pop("labels")
        logits = model(**batch).logits
        loss = torch.nn.functional.cross_entropy(logits.float(), labels, reduction="none")
        preds, labels, loss = accelerator.gather_for_metrics((logits.argmax(dim=-1), labels, loss))
        predictions.append(preds.cpu())
        references.append(labels.cpu())
        losses.append(loss.cpu())
    model.train()
    if not predictions:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), float("nan")
    return (torch.cat(predictions).numpy(), torch.cat(references).numpy(), float(torch.cat(losses).mean()))


def finetune_classifier(cfg: FinetuneConfig, console: Console | None = None) -> FinetuneResult:
    """Fine-tune an encoder for sequence classification as configured and evaluate it.

    Args:
        cfg: The resolved fine-tuning config.
        console: Where progress and notes go (stderr by default).

    Returns:
        Training statistics and the evaluation report, with the majority-class baseline.
    """
    from accelerate.utils import set_seed
    from torch.utils.data import DataLoader
    from transformers import DataCollatorWithPadding

    console = console or Console(stderr=True)
    tcfg = cfg.train
    validate_config(cfg)  # the CLI did already; a config built in Python is checked here
    budget = parse_duration(tcfg.max_time)
    accelerator = build_accelerator(tcfg.grad_accum, tcfg.mixed_precision, **reporting_options(cfg))
    main = accelerator.is_main_process
    set_seed(tcfg.seed)

    # everything a user can get wrong (model name, data, columns) fails before the output dir is touched
    tokenizer = _classification_tokenizer(cfg.model)
    max_length = min(cfg.data.max_seq_length, tokenizer.model_max_length or cfg.data.max_seq_length)
    with accelerator.main_process_first():
        splits = load_labelled_splits(cfg.data, tcfg.seed)
        train_set = tokenize_labelled(splits.train, tokenizer, max_length)
        eval_set = tokenize_labelled(splits.eval, tokenizer, max_length)
    names = splits.label_names
    model, fresh = load_sequence_classifier(cfg.model, names)
    if fresh and main:
        console.print(f"[dim]newly initialised weights: {', '.join(fresh[:4])}{' ...' if len(fresh) > 4 else ''}")
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id

    out = prepare_output_dir(cfg.output.dir, cfg.output.overwrite) if main else Path(cfg.output.dir)
    accelerator.wait_for_everyone()
    if main:
        write_text_atomic(out / "config.yaml", config_to_yaml(cfg))
        counts = ", ".join(f"{k} {v:,}" for k, v in splits.stats["train_per_class"].items())
        console.print(f"data: {len(train_set):,} training examples ({counts}); {len(eval_set):,} for evaluation "
                      f"({splits.eval_source})")
    metrics = open_metrics_log(accelerator, cfg, out)  # metrics.jsonl, also sent to train.report_to trackers

    train_labels = column_values(train_set, "label")
    collator = DataCollatorWithPadding(tokenizer, pad_to_multiple_of=PAD_TO_MULTIPLE_OF, return_tensors="pt")
    sampler = LengthGroupedBatchSampler(column_values(train_set, "length"), tcfg.batch_size, seed=tcfg.seed,
                                        group_by_length=cfg.data.group_by_length)
    train_loader = DataLoader(train_set.remove_columns("length"), batch_sampler=sampler, collate_fn=collator,
                              num_workers=tcfg.num_workers, persistent_workers=tcfg.num_workers > 0)
    # sorted by length: evaluation order does not matter, padding does
    by_length = np.argsort(np.asarray(column_values(eval_set, "length")), kind="stable")
    eval_loader = DataLoader(eval_set.select(by_length).remove_columns("length"), batch_size=tcfg.eval_batch_size,
                             shuffle=False, collate_fn=collator)

    if tcfg.fast_dropout and not tcfg.compile and accelerator.device.type == "cpu":
        use_fast_dropout(model)
    if tcfg.compile:
        model = torch.compile(model)
    optimizer = build_optimizer(model, tcfg.lr, tcfg.weight_decay)
    updates_per_epoch = math.ceil(math.ceil(len(sampler) / accelerator.num_processes) / tcfg.grad_accum)
    total_steps = _total_steps(cfg, updates_per_epoch)
    scheduler = build_lr_scheduler(tcfg.lr_scheduler, optimizer, total_steps, tcfg.warmup_ratio,
                                   accelerator.num_processes)
    model, optimizer, train_loader, eval_loader, scheduler = accelerator.prepare(
        model, optimizer, train_loader, eval_loader, scheduler)

    step, examples, loss_value, stopped_by_time = 0, 0, float("nan"), False
    model.train()
    start = time.perf_counter()
    window_examples, window_start, window_loss = 0, start, []
    with training_progress(console, enabled=main) as progress:
        task = progress.add_task("finetune", total=total_steps, stats="")
        while step < total_steps and not stopped_by_time:
            for batch in train_loader:
                with accelerator.accumulate(model):
                    loss = model(**batch).loss
                    accelerator.backward(loss)
                    if accelerator.sync_gradients and tcfg.max_grad_norm > 0:
                        accelerator.clip_grad_norm_(model.parameters(), tcfg.max_grad_norm)
                    optimizer.step()
                    scheduler.step()
                    optimizer.zero_grad(set_to_none=True)
                n_examples = int(batch["labels"].shape[0]) * accelerator.num_processes
                examples += n_examples
                window_examples += n_examples
                window_loss.append(loss.detach())
                if not accelerator.sync_gradients:
                    continue
                step += 1
                if step % tcfg.log_every == 0 or step == total_steps or step == 1:
                    loss_value = accelerator.reduce(torch.stack(window_loss).mean(), reduction="mean").item()
                    now = time.perf_counter()
                    rate = window_examples / max(now - window_start, 1e-9)
                    lr = scheduler.get_last_lr()[0]
                    metrics.write(step=step, split="train", loss=loss_value, lr=lr, examples_per_s=round(rate, 2))
                    progress.update(task, stats=f"loss {loss_value:.3f}  lr {lr:.2e}  {rate:,.1f} ex/s")
                    window_examples, window_start, window_loss = 0, now, []
                progress.update(task, completed=step)
                if tcfg.eval_every and step % tcfg.eval_every == 0 and step < total_steps:
                    preds, refs, eval_loss = predict_eval(model, eval_loader, accelerator)
                    report = classification_report(preds, refs, names)
                    metrics.write(step=step, split="eval", accuracy=report["accuracy"],
                                  macro_f1=report["macro_f1"], eval_loss=eval_loss)
                if step >= total_steps:
                    break
                if budget is not None and _budget_spent(start, budget, accelerator):
                    stopped_by_time = True
                    break
    train_seconds = time.perf_counter() - start
    if stopped_by_time and main:
        console.print(f"[yellow]time budget {tcfg.max_time} reached at step {step} of {total_steps}[/]")

    preds, refs, eval_loss = predict_eval(model, eval_loader, accelerator)
    report = classification_report(preds, refs, names)
    baseline = majority_baseline(train_labels, refs, names)
    metrics.write(step=step, split="eval", accuracy=report["accuracy"], macro_f1=report["macro_f1"],
                  eval_loss=eval_loss, baseline_accuracy=baseline["accuracy"], baseline_macro_f1=baseline["macro_f1"])

    result = FinetuneResult(
        output_dir=str(out), label_names=names, steps=step,
        epochs=round(examples / max(len(train_set), 1), 3), train_seconds=train_seconds,
        examples_per_second=examples / max(train_seconds, 1e-9), final_loss=loss_value,
        accuracy=report["accuracy"], macro_f1=report["macro_f1"], eval_loss=eval_loss, baseline=baseline,
        per_class=report["per_class"], confusion_matrix=report["confusion_matrix"], eval_source=splits.eval_source,
        data=splits.stats, stopped_by_time=stopped_by_time,
    )
    accelerator.wait_for_everyone()
    if main:
        save_pretrained_atomic(out, accelerator.unwrap_model(model), tokenizer)
        write_text_atomic(out / "eval_results.json", json.dumps(asdict(result), indent=2) + "\n")
    accelerator.end_training()
    if main:  # training_curves.png, README.md model card; the Hub upload if configured
        finish_run(out, cfg.output, console)
    return result
