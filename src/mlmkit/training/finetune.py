"""``mlmkit finetune classify|sentiment|ner``: the Accelerate loop for sequence and token classification.

The same flat shape as :mod:`mlmkit.training.pretrain`: build data and model,
``prepare``, loop with accumulation / clipping / schedule, evaluate on the held-out
set, save a standard model directory. Batches are padded dynamically (to a multiple
of 8) and grouped by length, so short texts do not pay for long ones.

One loop serves every task (``data.task``): single-label classification (``sentiment`` is
its preset), multi-label classification (sigmoid outputs, binary cross-entropy, a decision
threshold tuned on the evaluation split or fixed), regression (one output, mean squared
error) and token classification (word tags aligned to first sub-tokens). What differs
per task is the model class, the data preparation and the scoring of the evaluation outputs.
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
from accelerate.utils import set_seed
from rich.console import Console
from torch.utils.data import DataLoader
from transformers import (
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
    DataCollatorForTokenClassification,
    DataCollatorWithPadding,
)

from mlmkit.config.loading import config_to_yaml
from mlmkit.config.schema import FinetuneConfig, ModelConfig
from mlmkit.data.labelled import (
    LengthGroupedBatchSampler,
    column_values,
    load_labelled_splits,
    tokenize_labelled,
)
from mlmkit.data.ner import load_token_splits, prefix_space_tokenizer, tokenize_tagged, word_predictions
from mlmkit.errors import UserError
from mlmkit.io.outputs import prepare_output_dir, save_pretrained_atomic, write_text_atomic
from mlmkit.io.progress import training_progress
from mlmkit.modeling.fast_dropout import use_fast_dropout
from mlmkit.modeling.loading import load_pretrained, load_tokenizer
from mlmkit.training.classification_metrics import classification_report, majority_baseline, multi_label_report
from mlmkit.training.finish import finish_run
from mlmkit.training.launch import build_accelerator
from mlmkit.training.optim import build_lr_scheduler, build_optimizer
from mlmkit.training.regression_metrics import regression_report
from mlmkit.training.stopping import LogWindow, agreed_stop, parse_duration
from mlmkit.training.token_metrics import token_report
from mlmkit.training.tracking import open_metrics_log, reporting_options
from mlmkit.training.validation import validate_run_config

#: padded lengths are rounded up to this (tensor-core friendly on GPUs, harmless on CPUs)
PAD_TO_MULTIPLE_OF = 8


#: the headline metric of each task (what the suite averages); token tasks with plain tags use accuracy
PRIMARY_METRIC = {"single_label": "accuracy", "multi_label": "micro_f1", "regression": "pearson", "token": "f1"}


def primary_metric(task: str, scoring: str | None = None) -> str:
    """The headline metric of ``task``: entity F1 for BIO tags, word accuracy for other tag sets (POS)."""
    return "accuracy" if task == "token" and scoring == "token tags" else PRIMARY_METRIC[task]


@dataclass
class FinetuneResult:
    """What a fine-tuning run produced; the scores are on the evaluation set.

    ``accuracy`` and ``macro_f1`` are filled for single-label (as always), multi-label (exact-match
    accuracy, macro-F1 over labels) and token tasks (token accuracy; entity or tag macro-F1);
    regression leaves them None and reports in ``metrics``. ``metrics`` holds every score of the task,
    ``primary_metric`` names the headline one. Undefined scores (the correlation of a constant) are None,
    so the ``--json`` output is strict JSON.
    """

    output_dir: str
    label_names: list[str]
    steps: int
    epochs: float
    train_seconds: float
    examples_per_second: float
    final_loss: float
    accuracy: float | None
    macro_f1: float | None
    eval_loss: float
    baseline: dict[str, Any]
    per_class: list[dict[str, Any]]
    confusion_matrix: list[list[int]]
    eval_source: str
    data: dict[str, Any] = field(default_factory=dict)
    stopped_by_time: bool = False
    """True when train.max_time ended training before the planned number of steps."""
    task: str = "single_label"
    metrics: dict[str, float] = field(default_factory=dict)
    primary_metric: str = "accuracy"
    extra_evals: dict[str, dict[str, float]] = field(default_factory=dict)
    """Scores on data.extra_eval_splits (e.g. MNLI mismatched), by split name."""


def load_task_model(model_cfg: ModelConfig, label_names: list[str],
                    task: str = "single_label") -> tuple[Any, list[str]]:
    """The model class of ``task`` with a fresh head sized and named for ``label_names``.

    Sequence tasks load ``AutoModelForSequenceClassification`` (``problem_type`` set for
    multi-label and regression, so its loss is binary cross-entropy or MSE), token tasks
    ``AutoModelForTokenClassification``. An MLM or plain encoder checkpoint keeps its encoder
    weights; a checkpoint that already has a head of another size gets a new one.

    Returns:
        ``(model, newly_initialised_weight_names)``.
    """
    kwargs: dict[str, Any] = {
        "num_labels": len(label_names),
        "id2label": dict(enumerate(label_names)),
        "label2id": {label: i for i, label in enumerate(label_names)},
        "revision": model_cfg.revision,
        "trust_remote_code": model_cfg.trust_remote_code,
        "ignore_mismatched_sizes": True,
    }
    if task == "multi_label":
        kwargs["problem_type"] = "multi_label_classification"
    elif task == "regression":
        kwargs["problem_type"] = "regression"
    elif task == "single_label":
        kwargs["problem_type"] = "single_label_classification"
    if model_cfg.attn_implementation:
        kwargs["attn_implementation"] = model_cfg.attn_implementation
    if model_cfg.from_scratch:
        raise UserError("model.from_scratch is for pre-training; fine-tuning starts from a trained encoder")
    auto = AutoModelForTokenClassification if task == "token" else AutoModelForSequenceClassification
    model, info = load_pretrained(auto, model_cfg.name_or_path, **kwargs)
    fresh = sorted(set(info.get("missing_keys", [])) | {str(k[0]) if isinstance(k, tuple) else str(k)
                                                         for k in info.get("mismatched_keys", [])})
    return model, fresh


def load_sequence_classifier(model_cfg: ModelConfig, label_names: list[str]) -> tuple[Any, list[str]]:
    """``AutoModelForSequenceClassification`` for single-label classification (see :func:`load_task_model`)."""
    return load_task_model(model_cfg, label_names, "single_label")


def _classification_tokenizer(model_cfg: ModelConfig):
    tokenizer = load_tokenizer(model_cfg.tokenizer or model_cfg.name_or_path, model_cfg.revision,
                               model_cfg.trust_remote_code, require_mask=False)
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise UserError(f"the tokenizer of {model_cfg.name_or_path!r} has no padding token (nor an end token "
                            "to pad with), so batches of different lengths cannot be formed")
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def _nan_to_none(value: Any) -> Any:
    """NaN -> None in a number or (nested) dict of numbers."""
    if isinstance(value, dict):
        return {k: _nan_to_none(v) for k, v in value.items()}
    return None if isinstance(value, float) and math.isnan(value) else value


def _finite(values: dict[str, Any]) -> dict[str, float]:
    """The numeric, finite entries of ``values`` (what a metrics line and a tracker accept)."""
    return {k: v for k, v in values.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}


def _total_steps(cfg: FinetuneConfig, updates_per_epoch: int) -> int:
    tcfg = cfg.train
    if tcfg.max_steps > 0:
        return tcfg.max_steps
    if tcfg.num_epochs <= 0:
        raise UserError("set train.max_steps > 0 or train.num_epochs > 0")
    return max(1, math.ceil(tcfg.num_epochs * updates_per_epoch))


def _example_losses(logits: torch.Tensor, labels: torch.Tensor, task: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-example summed loss and the number of terms it sums (so the mean over a set is exact)."""
    logits = logits.float()
    if task == "multi_label":
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, labels.float(), reduction="none")
        return loss.mean(dim=-1), torch.ones_like(loss[:, 0])
    if task == "regression":
        return (logits.squeeze(-1) - labels.float()) ** 2, torch.ones_like(labels, dtype=torch.float)
    if task == "token":
        loss = torch.nn.functional.cross_entropy(logits.transpose(1, 2), labels, reduction="none",
                                                 ignore_index=-100)
        return loss.sum(dim=-1), (labels != -100).sum(dim=-1).float()
    loss = torch.nn.functional.cross_entropy(logits, labels, reduction="none")
    return loss, torch.ones_like(loss)


def _task_outputs(logits: torch.Tensor, task: str) -> torch.Tensor:
    """What evaluation keeps of the logits: class ids, sigmoid probabilities or scores."""
    if task == "multi_label":
        return torch.sigmoid(logits.float())
    if task == "regression":
        return logits.float().squeeze(-1)
    return logits.argmax(dim=-1)


@torch.no_grad()
def predict_eval(model: Any, loader: Any, accelerator: Any, task: str = "single_label") -> tuple[Any, Any, float]:
    """Predictions and references over ``loader`` (gathered across processes) and the mean loss.

    Single-label: class ids. Multi-label: ``(examples, labels)`` probabilities and multi-hot truth.
    Regression: scores. Token: a list of ``(example_id, predicted ids, label ids)`` per example, at the
    labelled positions only.
    """
    model.eval()
    predictions, references, losses, counts, ids = [], [], [], [], []
    for batch in loader:
        labels = batch.pop("labels")
        example_id = batch.pop("example_id", None)
        logits = model(**batch).logits
        loss, count = _example_losses(logits, labels, task)
        outputs = _task_outputs(logits, task)
        if task == "token":  # rows differ in length between processes: pad before gathering
            outputs = accelerator.pad_across_processes(outputs, dim=1, pad_index=-100)
            labels = accelerator.pad_across_processes(labels, dim=1, pad_index=-100)
            outputs, labels, loss, count, example_id = accelerator.gather_for_metrics(
                (outputs, labels, loss, count, example_id))
            ids.append(example_id.cpu())
        else:
            outputs, labels, loss, count = accelerator.gather_for_metrics((outputs, labels, loss, count))
        if task == "token":
            predictions.extend(o[r != -100] for o, r in zip(outputs.cpu(), labels.cpu(), strict=True))
            references.extend(r[r != -100] for r in labels.cpu())
        else:
            predictions.append(outputs.cpu())
            references.append(labels.cpu())
        losses.append(loss.cpu())
        counts.append(count.cpu())
    model.train()
    if not losses:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), float("nan")
    eval_loss = float(torch.cat(losses).sum() / torch.cat(counts).sum().clamp(min=1))
    if task == "token":
        order = torch.cat(ids).tolist()
        return ([(i, p.tolist()) for i, p in zip(order, predictions, strict=True)],
                [r.tolist() for r in references], eval_loss)
    return torch.cat(predictions).numpy(), torch.cat(references).numpy(), eval_loss


def score_outputs(task: str, preds: Any, refs: Any, names: list[str], eval_set: Any = None,
                  threshold: float | None = None) -> dict[str, Any]:
    """The evaluation report of one task from :func:`predict_eval`'s outputs.

    Returns:
        ``{"metrics": {name: value}, "per_class": [...], "confusion_matrix": [...], ...}``; ``metrics``
        always has ``accuracy`` and ``macro_f1`` (NaN where they mean nothing) and the task's primary metric.
    """
    nan = float("nan")
    if task == "single_label":
        report = classification_report(preds, refs, names)
        return {"metrics": {"accuracy": report["accuracy"], "macro_f1": report["macro_f1"],
                            "weighted_f1": report["weighted_f1"]},
                "per_class": report["per_class"], "confusion_matrix": report["confusion_matrix"]}
    if task == "multi_label":
        report = multi_label_report(preds, refs, names, threshold)
        return {"metrics": {"micro_f1": report["micro_f1"], "macro_f1": report["macro_f1"],
                            "accuracy": report["exact_match"], "threshold": report["threshold"]},
                "per_class": report["per_class"], "confusion_matrix": [],
                "threshold_tuned": report["threshold_tuned"]}
    if task == "regression":
        report = regression_report(preds, refs)
        return {"metrics": {"pearson": report["pearson"], "spearman": report["spearman"], "mse": report["mse"],
                            "mae": report["mae"], "accuracy": nan, "macro_f1": nan},
                "per_class": [], "confusion_matrix": []}

    gold = column_values(eval_set, "tags")
    labelled = column_values(eval_set, "labelled_words")
    predicted: list[list[str] | None] = [None] * len(gold)
    for example, tags in preds:
        predicted[example] = word_predictions(tags, labelled[example], len(gold[example]), names)
    if any(p is None for p in predicted):
        raise RuntimeError("evaluation lost examples")  # gathering must return every example once
    report = token_report(predicted, [[names[t] for t in tags] for tags in gold], names)
    metrics = {"accuracy": report["accuracy"], "macro_f1": report["macro_f1"]}
    if report["scoring"] == "seqeval entities":  # for plain tags (POS) F1 would only repeat the accuracy
        metrics.update({k: report[k] for k in ("f1", "precision", "recall")})
    return {"metrics": metrics, "per_class": report["per_class"], "confusion_matrix": [],
            "scoring": report["scoring"]}


def task_baseline(task: str, train_set: Any, eval_set: Any, refs: Any, names: list[str]) -> dict[str, Any]:
    """Scores of a constant guess made from the training labels, next to which the model is judged.

    Single-label: the majority class. Multi-label: every label more than half of the training texts
    carry (often none). Regression: the training mean (MSE; correlations are undefined). Token: the
    most frequent training tag for every word.
    """
    if task == "single_label":
        return majority_baseline(column_values(train_set, "label"), refs, names)
    if task == "multi_label":
        share = np.asarray(column_values(train_set, "label"), dtype=np.float64).mean(axis=0)
        chosen = [name for name, s in zip(names, share, strict=True) if s > 0.5]
        constant = np.tile((share > 0.5).astype(np.float64), (len(refs), 1))
        report = score_outputs(task, constant, refs, names, threshold=0.5)["metrics"]
        return {"label": "{" + ", ".join(chosen) + "}", **report}
    if task == "regression":
        mean = float(np.mean(column_values(train_set, "label")))
        report = score_outputs(task, np.full(len(refs), mean), refs, names)["metrics"]
        return {"label": f"mean {mean:.3g}", **report}
    counts = np.bincount([t for tags in column_values(train_set, "tags") for t in tags], minlength=len(names))
    tag = int(counts.argmax())
    constant = [(i, [tag] * len(r)) for i, r in enumerate(column_values(eval_set, "labelled_words"))]
    report = score_outputs(task, constant, None, names, eval_set)["metrics"]
    return {"label": names[tag], **report}


def _prepare_data(cfg: FinetuneConfig, tokenizer: Any, max_length: int) -> tuple[Any, Any, Any, dict[str, Any]]:
    """``(splits, train_set, eval_set, extra_sets)`` tokenized for ``cfg.data.task``."""
    if cfg.data.task == "token":
        splits = load_token_splits(cfg.data, cfg.train.seed)
        tokenize = tokenize_tagged
    else:
        splits = load_labelled_splits(cfg.data, cfg.train.seed)
        tokenize = tokenize_labelled
    extra = {name: tokenize(data, tokenizer, max_length) for name, data in splits.extra_evals.items()}
    return splits, tokenize(splits.train, tokenizer, max_length), tokenize(splits.eval, tokenizer, max_length), extra


#: columns the token task keeps for word-level scoring, never fed to the model
WORD_COLUMNS = ("tokens", "tags", "labelled_words")


def _eval_loader(data: Any, collator: Any, batch_size: int) -> Any:
    # sorted by length: evaluation order does not matter (token outputs carry their example id), padding does
    by_length = np.argsort(np.asarray(column_values(data, "length")), kind="stable")
    drop = ["length", *(c for c in WORD_COLUMNS if c in data.column_names)]
    return DataLoader(data.select(by_length).remove_columns(drop), batch_size=batch_size, shuffle=False,
                      collate_fn=collator)


def finetune_classifier(cfg: FinetuneConfig, console: Console | None = None,
                        keep_process_group: bool = False) -> FinetuneResult:
    """Fine-tune an encoder for the configured task (``data.task``) and evaluate it.

    Args:
        cfg: The resolved fine-tuning config.
        console: Where progress and notes go (stderr by default).
        keep_process_group: Leave a multi-process group open at the end, for a caller that runs
            another fine-tuning in the same processes (a suite); the caller closes it.

    Returns:
        Training statistics and the evaluation report, with a constant baseline (see :func:`task_baseline`).
    """
    console = console or Console(stderr=True)
    tcfg = cfg.train
    validate_run_config(cfg)  # the CLI did already; a config built in Python is checked here
    budget = parse_duration(tcfg.max_time)
    accelerator = build_accelerator(tcfg.grad_accum, tcfg.mixed_precision, **reporting_options(cfg))
    main = accelerator.is_main_process
    set_seed(tcfg.seed)

    # everything a user can get wrong (model name, data, columns) fails before the output dir is touched
    kind = cfg.data.task
    tokenizer = _classification_tokenizer(cfg.model)
    if kind == "token":
        tokenizer = prefix_space_tokenizer(tokenizer)
    max_length = min(cfg.data.max_seq_length, tokenizer.model_max_length or cfg.data.max_seq_length)
    with accelerator.main_process_first():
        splits, train_set, eval_set, extra_sets = _prepare_data(cfg, tokenizer, max_length)
    names = splits.label_names
    model, fresh = load_task_model(cfg.model, names, kind)
    if fresh and main:
        console.print(f"[dim]newly initialised weights: {', '.join(fresh[:4])}{' ...' if len(fresh) > 4 else ''}")
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id

    out = prepare_output_dir(cfg.output.dir, cfg.output.overwrite) if main else Path(cfg.output.dir)
    accelerator.wait_for_everyone()
    if main:
        write_text_atomic(out / "config.yaml", config_to_yaml(cfg))
        counts = ", ".join(f"{k} {v:,}" for k, v in splits.stats["train_per_class"].items())
        unit = " (words per tag)" if kind == "token" else ""
        console.print(f"data: {len(train_set):,} training examples ({counts}){unit}; {len(eval_set):,} for "
                      f"evaluation ({splits.eval_source})")
    metrics = open_metrics_log(accelerator, cfg, out)  # metrics.jsonl, also sent to train.report_to trackers

    if kind == "token":  # pads labels with -100 too
        collator = DataCollatorForTokenClassification(tokenizer, pad_to_multiple_of=PAD_TO_MULTIPLE_OF,
                                                      return_tensors="pt")
    else:
        collator = DataCollatorWithPadding(tokenizer, pad_to_multiple_of=PAD_TO_MULTIPLE_OF, return_tensors="pt")
    sampler = LengthGroupedBatchSampler(column_values(train_set, "length"), tcfg.batch_size, seed=tcfg.seed,
                                        group_by_length=cfg.data.group_by_length)
    not_inputs = ["length", *(c for c in (*WORD_COLUMNS, "example_id") if c in train_set.column_names)]
    train_loader = DataLoader(train_set.remove_columns(not_inputs), batch_sampler=sampler, collate_fn=collator,
                              num_workers=tcfg.num_workers, persistent_workers=tcfg.num_workers > 0)
    eval_loader = _eval_loader(eval_set, collator, tcfg.eval_batch_size)
    extra_loaders = {name: _eval_loader(data, collator, tcfg.eval_batch_size) for name, data in extra_sets.items()}

    if tcfg.fast_dropout and not tcfg.compile and accelerator.device.type == "cpu":
        use_fast_dropout(model)
    if tcfg.compile:
        model = torch.compile(model)
    optimizer = build_optimizer(model, tcfg.lr, tcfg.weight_decay)
    updates_per_epoch = math.ceil(math.ceil(len(sampler) / accelerator.num_processes) / tcfg.grad_accum)
    total_steps = _total_steps(cfg, updates_per_epoch)
    scheduler = build_lr_scheduler(tcfg.lr_scheduler, optimizer, total_steps, tcfg.warmup_ratio,
                                   accelerator.num_processes)
    model, optimizer, train_loader, eval_loader, scheduler, *extra_prepared = accelerator.prepare(
        model, optimizer, train_loader, eval_loader, scheduler, *extra_loaders.values())
    extra_loaders = dict(zip(extra_loaders, extra_prepared, strict=True))

    def evaluate_on(loader: Any, data: Any, threshold: float | None = cfg.data.threshold):
        preds, refs, loss = predict_eval(model, loader, accelerator, kind)
        return score_outputs(kind, preds, refs, names, data, threshold), refs, loss

    step, examples, loss_value, stopped_by_time = 0, 0, float("nan"), False
    model.train()
    window = LogWindow(tcfg.log_every, total_steps)
    start = window.start
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
                window.units += n_examples
                window.losses.append(loss.detach())
                if not accelerator.sync_gradients:
                    continue
                step += 1
                if window.due(step):
                    now = time.perf_counter()
                    loss_value, rate = window.close(accelerator, now)
                    lr = scheduler.get_last_lr()[0]
                    metrics.write(step=step, split="train", loss=loss_value, lr=lr, examples_per_s=round(rate, 2))
                    progress.update(task, stats=f"loss {loss_value:.3f}  lr {lr:.2e}  {rate:,.1f} ex/s")
                progress.update(task, completed=step)
                if tcfg.eval_every and step % tcfg.eval_every == 0 and step < total_steps:
                    report, _, eval_loss = evaluate_on(eval_loader, eval_set)
                    metrics.write(step=step, split="eval", **_finite(report["metrics"]), eval_loss=eval_loss)
                if step >= total_steps:
                    break
                # the same decision on every process, so they all stop at this step
                if budget is not None and agreed_stop(None, budget, time.perf_counter() - start, accelerator):
                    stopped_by_time = True
                    break
    train_seconds = time.perf_counter() - start
    if stopped_by_time and main:
        console.print(f"[yellow]time budget {tcfg.max_time} reached at step {step} of {total_steps}[/]")

    report, refs, eval_loss = evaluate_on(eval_loader, eval_set)
    baseline = task_baseline(kind, train_set, eval_set, refs, names)
    scores = report["metrics"]
    metrics.write(step=step, split="eval", **_finite(scores), eval_loss=eval_loss,
                  **{f"baseline_{k}": v for k, v in _finite(baseline).items() if k != "label"})
    extra_scores = {}
    for name, loader in extra_loaders.items():
        # multi-label: the threshold chosen on the evaluation split, not one tuned again on each extra split
        extra_report, _, extra_loss = evaluate_on(loader, extra_sets[name], scores.get("threshold"))
        extra_scores[name] = {**extra_report["metrics"], "eval_loss": extra_loss, "examples": len(extra_sets[name])}
        metrics.write(step=step, split=f"eval_{name}", **_finite(extra_scores[name]))

    result = FinetuneResult(
        output_dir=str(out), label_names=names, steps=step,
        epochs=round(examples / max(len(train_set), 1), 3), train_seconds=train_seconds,
        examples_per_second=examples / max(train_seconds, 1e-9), final_loss=loss_value,
        accuracy=_nan_to_none(scores["accuracy"]), macro_f1=_nan_to_none(scores["macro_f1"]), eval_loss=eval_loss,
        baseline=_nan_to_none(baseline), per_class=report["per_class"], confusion_matrix=report["confusion_matrix"],
        eval_source=splits.eval_source,
        data={**splits.stats, **{k: report[k] for k in ("threshold_tuned", "scoring") if k in report}},
        stopped_by_time=stopped_by_time, task=kind, metrics=_nan_to_none(scores),
        primary_metric=primary_metric(kind, report.get("scoring")), extra_evals=_nan_to_none(extra_scores),
    )
    accelerator.wait_for_everyone()
    if main:
        save_pretrained_atomic(out, accelerator.unwrap_model(model), tokenizer)
        write_text_atomic(out / "eval_results.json", json.dumps(asdict(result), indent=2) + "\n")
    if keep_process_group:  # end_training would also destroy the group the next run needs
        for tracker in accelerator.trackers:
            tracker.finish()
    else:
        accelerator.end_training()
    if main:  # training_curves.png, README.md model card; the Hub upload if configured
        finish_run(out, cfg.output, console)
    return result
