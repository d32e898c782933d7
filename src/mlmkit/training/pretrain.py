"""``mlmkit pretrain``: the Accelerate MLM loop.

One flat function in the spirit of ``run_mlm_no_trainer.py``: build data, model and
masking, ``prepare``, loop with accumulation / clipping / schedule, evaluate on a
fixed-mask held-out split before and after, and save a standard model directory.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
import torch
import transformers
from accelerate.utils import DistributedType, set_seed
from rich.console import Console

from mlmkit.config.loading import config_to_yaml
from mlmkit.config.schema import PretrainConfig
from mlmkit.data.cache import prepared_corpus, streamed_blocks
from mlmkit.data.packing import split_eval
from mlmkit.errors import UserError
from mlmkit.io.outputs import (
    prepare_output_dir,
    restores_replaced_output,
    save_pretrained_atomic,
    write_text_atomic,
)
from mlmkit.io.progress import training_progress
from mlmkit.masking.collator import MaskingCollator, predicts_nothing, step_seed
from mlmkit.masking.registry import build_strategy
from mlmkit.masking.schedules import build_schedule
from mlmkit.modeling.fast_dropout import use_fast_dropout
from mlmkit.modeling.loading import load_mlm_model
from mlmkit.modeling.presets import is_from_scratch
from mlmkit.modeling.sparse_head import SparseMLM
from mlmkit.tokenization.train import tokenizer_for_run
from mlmkit.training.checkpoint import (
    TrainerState,
    list_checkpoints,
    load_checkpoint,
    resolve_resume,
    save_checkpoint,
)
from mlmkit.training.data_stream import BlockStream
from mlmkit.training.finish import finish_run
from mlmkit.training.launch import build_accelerator
from mlmkit.training.mlm_eval import (
    EVALUATIONS_DIR,
    evaluate_mlm,
    evaluation_key,
    fixed_eval_batches,
    most_frequent_token_baseline,
    read_remembered,
    remember,
)
from mlmkit.training.optim import build_lr_scheduler, build_optimizer
from mlmkit.training.stopping import (
    LogWindow,
    StopReason,
    StopSignals,
    TrainingInterrupted,
    agreed_stop,
    parse_duration,
)
from mlmkit.training.tracking import open_metrics_log, reporting_options
from mlmkit.training.validation import validate_run_config


@dataclass
class PretrainResult:
    """What a pre-training run produced."""

    output_dir: str
    steps: int
    train_seconds: float
    tokens_per_second: float
    before: dict[str, float]
    after: dict[str, float]
    final_loss: float | None
    """Mean training loss of the last logged window that predicted any token."""
    data: dict[str, int] = field(default_factory=dict)
    resumed_from: str | None = None
    """Checkpoint the run continued from, if any."""
    skipped_batches: int = 0
    """Micro-batches skipped because the masking strategy predicted no token in them."""


def build_pretrain_data(cfg: PretrainConfig, tokenizer: Any, strategy: Any,
                        notify: Callable[[str], None] | None = None):
    """Load, tokenize, pack and split the corpus; returns ``(train_blocks, eval_blocks, stats)``.

    A map-style corpus is prepared once and kept on disk (``data.cache``, see
    :mod:`mlmkit.data.cache`); later runs with the same corpus, tokenizer, sequence length
    and features load the blocks instead. With ``data.streaming`` the training blocks are a
    lazily read ``IterableDataset`` and the first ``data.eval_max_blocks`` blocks of the
    stream are held out. ``notify`` receives one-line notices (cache reused, damaged cache rebuilt).
    """
    if cfg.data.streaming:
        blocks = streamed_blocks(cfg.data, tokenizer, strategy, notify)  # a matching prepared corpus, else raw text
        held_out = list(blocks.take(cfg.data.eval_max_blocks))
        if not held_out:
            raise UserError(f"the corpus {cfg.data.source!r} gives no blocks")
        eval_blocks = datasets.Dataset.from_list(held_out)
        train_blocks = blocks.skip(len(held_out))
        return train_blocks, eval_blocks, {"documents": -1, "blocks": -1, "train_blocks": -1,
                                           "eval_blocks": len(eval_blocks)}
    prepared = prepared_corpus(cfg.data, tokenizer, strategy, notify=notify)
    blocks = prepared.blocks
    train_blocks, eval_blocks = split_eval(blocks, cfg.data.eval_fraction, cfg.data.eval_max_blocks, cfg.train.seed)
    stats = {"documents": prepared.documents, "blocks": len(blocks), "train_blocks": len(train_blocks),
             "eval_blocks": len(eval_blocks), "prepared_path": str(prepared.path) if prepared.path else None}
    if notify is not None and prepared.reused:
        notify(f"data: reusing the prepared corpus in {prepared.path}")
    return train_blocks, eval_blocks, stats


def pretrain(cfg: PretrainConfig, console: Console | None = None) -> PretrainResult:
    """Run MLM pre-training as configured and return the before/after metrics.

    Set-up (processes, run directory, model, masking, data), the step loop, then the final
    evaluation and the saved model. The loop's position lives in a :class:`TrainerState`:
    everything a checkpoint needs to continue bitwise where the run stopped. An output
    directory the run overwrites comes back if it fails (:func:`restores_replaced_output`).
    """
    # applied here rather than as a decorator: mutation testing (tools/mutation.py) skips decorated functions
    return restores_replaced_output(_pretrain)(cfg, console)


def _pretrain(cfg: PretrainConfig, console: Console | None) -> PretrainResult:
    console = console or Console(stderr=True)
    tcfg = cfg.train
    validate_run_config(cfg)  # the CLI did already; a config built in Python is checked here
    accelerator = build_accelerator(tcfg.grad_accum, tcfg.mixed_precision, **reporting_options(cfg))
    main, world = accelerator.is_main_process, accelerator.num_processes
    set_seed(tcfg.seed)

    # the run directory: a damaged checkpoint stops the run before anything in it changes, and
    # resuming keeps it (checkpoints, metrics) as it is
    resuming = bool(tcfg.resume)
    out = Path(cfg.output.dir).expanduser()
    checkpoint = resolve_resume(tcfg.resume, out, notify=_warner(console) if main else None) if resuming else None
    if resuming and checkpoint is None and tcfg.resume != "auto":
        raise UserError(f"nothing to resume from {tcfg.resume}")
    if main:
        prepare_output_dir(out, cfg.output.overwrite, resume=resuming)
    accelerator.wait_for_everyone()
    config_yaml = config_to_yaml(cfg)
    if main:
        write_text_atomic(out / "config.yaml", config_yaml)
    metrics = open_metrics_log(accelerator, cfg, out)  # metrics.jsonl, also sent to train.report_to trackers
    budget = parse_duration(tcfg.max_time)

    # model, masking and data (the main process prepares the corpus first; the others reuse it)
    model, tokenizer, fresh = load_mlm_model(tokenizer_for_run(cfg, out, accelerator, console))
    if main and checkpoint is None and is_from_scratch(cfg.model):
        console.print("[dim]weights initialised from scratch[/]")
    elif main and checkpoint is None and fresh:
        console.print(f"[dim]{len(fresh)} weight tensor(s) not in the checkpoint start fresh (e.g. {fresh[0]})[/]")
    strategy = build_strategy(cfg.masking)
    schedule = build_schedule(cfg.masking.get("schedule"), strategy.ratio, tcfg.max_steps)
    collator = MaskingCollator(tokenizer, strategy, schedule, seed=tcfg.seed, rank=accelerator.process_index)
    with accelerator.main_process_first():
        notify = (lambda text: console.print(text, markup=False, highlight=False, soft_wrap=True)) if main else None
        train_blocks, eval_blocks, data_stats = build_pretrain_data(cfg, tokenizer, strategy, notify)
    if main:
        source = "a streamed corpus" if cfg.data.streaming else f"{data_stats['documents']:,} documents -> " \
            f"{data_stats['blocks']:,} blocks"
        console.print(f"data: {source} of up to {cfg.data.max_seq_length} tokens "
                      f"({data_stats['eval_blocks']:,} blocks held out)")

    # the speed paths: fused dropout on CPU; the sparse head and last layer swap a module during
    # forward, so eager mode only and no sharding wrappers around layers
    if tcfg.fast_dropout and not tcfg.compile and accelerator.device.type == "cpu":
        use_fast_dropout(model)
    sharded = accelerator.distributed_type in (DistributedType.FSDP, DistributedType.DEEPSPEED)
    wrapped = SparseMLM(model, sparse=cfg.model.sparse_head,
                        last_layer=cfg.model.sparse_last_layer and not tcfg.compile and not sharded)
    if tcfg.compile:
        wrapped = torch.compile(wrapped)
    optimizer = build_optimizer(wrapped, tcfg.lr, tcfg.weight_decay)
    scheduler = build_lr_scheduler(tcfg.lr_scheduler, optimizer, tcfg.max_steps, tcfg.warmup_ratio, world)
    wrapped, optimizer, scheduler = accelerator.prepare(wrapped, optimizer, scheduler)
    stream = BlockStream(train_blocks, accelerator, tcfg.batch_size, collator.pad, tcfg.seed,
                         streaming=cfg.data.streaming, num_workers=tcfg.num_workers)
    eval_batches = fixed_eval_batches(eval_blocks, tokenizer, tcfg.eval_batch_size)

    # where the run starts: a checkpoint's state, or step 0 with the evaluation before training
    if checkpoint is not None:
        state = load_checkpoint(accelerator, checkpoint)
        schedule.load_state_dict(state.schedule)
        strategy.load_state_dict(state.strategy)
        stream.load_state_dict(state, checkpoint)
        if main:
            console.print(f"resumed from {checkpoint} at step {state.step}")
    else:
        state = TrainerState(num_processes=world)
        record = _before_record(model, eval_batches, accelerator, cfg, data_stats.get("prepared_path"))
        state.before = _evaluate_before(wrapped, eval_batches, accelerator, cfg, tokenizer, console, record)
        metrics.write(step=0, split="eval", **state.before)

    def checkpoint_now() -> Path:
        state.schedule, state.strategy, state.data_state = schedule.state_dict(), strategy.state_dict(), \
            stream.state_dict()
        skips.fold_into(state)
        return save_checkpoint(accelerator, out, state, config_yaml, tcfg.keep_checkpoints)

    wrapped.train()
    window, skips = LogWindow(tcfg.log_every, tcfg.max_steps), SkippedBatches(accelerator)
    start, prior_seconds, last_checkpoint_time = window.start, state.train_seconds, window.start
    loss_value, stop, grads_pending = None, None, False
    with StopSignals() as signals, training_progress(console, enabled=main) as progress:
        task = progress.add_task("pretrain", total=tcfg.max_steps, completed=state.step, stats="")
        while state.step < tcfg.max_steps and stop is None:
            batches_seen = 0
            for padded in stream.epoch_batches(state):
                batches_seen += 1
                # dropout draws, like masks, depend only on (seed, micro-batch, process): an exact
                # resume does not hinge on which iterator or library touched the global RNG
                torch.manual_seed(step_seed(tcfg.seed, state.micro_step, 0, accelerator.process_index))
                with accelerator.accumulate(wrapped):
                    batch = collator.mask(padded, state.step, state.micro_step)
                    empty = skips.count(predicts_nothing(batch))  # labels are still on the CPU: no device sync
                    # alone, skip the pass; with several processes a zero-gradient pass keeps the
                    # collectives in step (its loss is not logged)
                    if not (empty and world == 1):
                        loss = _forward_backward(wrapped, batch, padded, strategy, accelerator, feedback=not empty)
                        if not empty:
                            window.losses.append(loss)
                        grads_pending = True
                    if grads_pending:  # a step whose micro-batches all predicted nothing changes no weight
                        if accelerator.sync_gradients and tcfg.max_grad_norm > 0:
                            accelerator.clip_grad_norm_(wrapped.parameters(), tcfg.max_grad_norm)
                        optimizer.step()
                    scheduler.step()
                    optimizer.zero_grad(set_to_none=True)
                    grads_pending = grads_pending and not accelerator.sync_gradients
                state.micro_step += 1
                state.batches_in_epoch += 1
                n_tokens = int(padded["attention_mask"].sum()) * world  # a CPU tensor: no device sync
                state.tokens += n_tokens
                window.units += n_tokens
                if not accelerator.sync_gradients:
                    continue
                # an optimizer step is done: log, evaluate, agree on stopping, checkpoint
                state.step += 1
                now = time.perf_counter()
                state.train_seconds = prior_seconds + (now - start)
                if window.due(state.step):
                    window_loss, rate = window.close(accelerator, now)  # None: nothing predicted in the window
                    loss_value = loss_value if window_loss is None else window_loss
                    skips.fold_into(state)
                    lr = scheduler.get_last_lr()[0]
                    skipped = {"skipped_batches": state.skipped_batches} if state.skipped_batches else {}
                    metrics.write(step=state.step, split="train", loss=window_loss, lr=lr, tokens_per_s=round(rate, 1),
                                  mask_ratio=schedule(state.step - 1), **skipped, **strategy.log_values())
                    shown = "no token predicted" if window_loss is None else f"loss {window_loss:.3f}"
                    progress.update(task, stats=f"{shown}  lr {lr:.2e}  {rate:,.0f} tok/s")
                progress.update(task, completed=state.step)
                if tcfg.eval_every and state.step % tcfg.eval_every == 0 and state.step < tcfg.max_steps:
                    metrics.write(step=state.step, split="eval", **evaluate_mlm(wrapped, eval_batches, accelerator))
                stop = agreed_stop(signals, budget, state.train_seconds, accelerator)
                due = (tcfg.checkpoint_every and state.step % tcfg.checkpoint_every == 0) or (
                    tcfg.checkpoint_minutes and now - last_checkpoint_time >= tcfg.checkpoint_minutes * 60)
                if (due or stop) and state.step < tcfg.max_steps:
                    checkpoint_now()
                    last_checkpoint_time = time.perf_counter()
                if stop or state.step >= tcfg.max_steps:
                    break
            if stop is None and state.step < tcfg.max_steps:  # the epoch ran out
                stream.next_epoch(state, batches_seen)

    # finish: an interrupted run keeps its checkpoint and says how to resume; otherwise evaluate and save
    if stop is not None and stop.reason is StopReason.SIGNAL:
        accelerator.end_training()
        where = list_checkpoints(out)[-1] if list_checkpoints(out) else out
        raise TrainingInterrupted(
            f"stopped by {stop.signal_name} at step {state.step}; checkpoint saved to {where}. "
            f"Resume with: mlmkit pretrain --resume auto output.dir={out} (plus the same recipe and overrides)",
            stop.signal_number,
        )
    skips.fold_into(state)
    if main and state.skipped_batches:
        console.print(f"[yellow]note:[/] {state.skipped_batches:,} micro-batch(es) had no token to predict at their "
                      "masking ratio and were skipped (no loss, no update); see skipped_batches in metrics.jsonl")
    after = evaluate_mlm(wrapped, eval_batches, accelerator)
    metrics.write(step=state.step, split="eval", **after)
    timed_out = stop is not None and stop.reason is StopReason.TIME
    if timed_out or tcfg.checkpoint_every or tcfg.checkpoint_minutes:
        checkpoint_now()  # the final state, resumable (e.g. with a larger max_steps)
    if main and timed_out:
        console.print(f"[yellow]time budget {tcfg.max_time} reached at step {state.step}[/]")

    accelerator.wait_for_everyone()
    if main:
        save_pretrained_atomic(out, accelerator.unwrap_model(wrapped).model, tokenizer)
        if strategy.state_dict():
            write_text_atomic(out / "masking_state.json", json.dumps(strategy.state_dict()))
    accelerator.end_training()
    result = PretrainResult(
        output_dir=str(out), steps=state.step, train_seconds=state.train_seconds,
        tokens_per_second=state.tokens / max(state.train_seconds, 1e-9), before=state.before, after=after,
        final_loss=loss_value, data=data_stats, resumed_from=str(checkpoint) if checkpoint else None,
        skipped_batches=state.skipped_batches,
    )
    if main:  # eval_results.json, training_curves.png, README.md model card; the Hub upload if configured
        finish_run(out, cfg.output, console, result)
    return result


def _before_record(model: Any, eval_batches: Any, accelerator: Any, cfg: PretrainConfig,
                   prepared_path: str | None) -> Path | None:
    """Where the evaluation before training is remembered, in the prepared corpus; None to always evaluate.

    Every arm and repeat of a study that starts from the same weights on the same held-out
    blocks gets the same numbers, so only the first evaluates. The key covers the weights,
    the batches and how the model runs; with several processes each evaluates (no shared file
    to agree on).
    """
    if prepared_path is None or accelerator.num_processes > 1:
        return None
    settings = {"device": accelerator.device.type, "mixed_precision": accelerator.mixed_precision,
                "sparse_head": cfg.model.sparse_head, "sparse_last_layer": cfg.model.sparse_last_layer,
                "compile": cfg.train.compile, "from_scratch": is_from_scratch(cfg.model),
                "torch": torch.__version__, "transformers": transformers.__version__}
    return Path(prepared_path) / EVALUATIONS_DIR / f"{evaluation_key(model, eval_batches, settings)}.json"


def _evaluate_before(wrapped: Any, eval_batches: Any, accelerator: Any, cfg: PretrainConfig, tokenizer: Any,
                     console: Console, record: Path | None = None) -> dict[str, float]:
    """Held-out metrics before the first step (and, for a model from scratch, a trivial predictor's).

    Read from ``record`` when an earlier run stored them there, else computed (and stored).
    """
    before = read_remembered(record)
    if before is None:
        before = evaluate_mlm(wrapped, eval_batches, accelerator)
        if is_from_scratch(cfg.model):  # a random model's accuracy means something only next to a trivial one's
            before.update(most_frequent_token_baseline(eval_batches))
        remember(record, before)
    elif accelerator.is_main_process:
        console.print(f"[dim]evaluation before training: the same weights and held-out blocks as an earlier run, "
                      f"its result reused ({record})[/]", highlight=False)
    if accelerator.is_main_process:
        console.print(f"before training: masked accuracy {before['masked_accuracy']:.3f}, "
                      f"perplexity {before['perplexity']:,.1f}")
        if "most_frequent_accuracy" in before:
            console.print(f"most-frequent-token baseline: masked accuracy {before['most_frequent_accuracy']:.3f} "
                          f"(always {tokenizer.convert_ids_to_tokens(before['most_frequent_token'])!r})")
    return before


def _forward_backward(wrapped: Any, batch: dict[str, torch.Tensor], padded: dict[str, torch.Tensor], strategy: Any,
                      accelerator: Any, feedback: bool) -> torch.Tensor:
    """Forward and backward one masked micro-batch; a strategy that learns from losses sees them per token."""
    fwd = wrapped(**{k: v.to(accelerator.device, non_blocking=True) for k, v in batch.items()})
    accelerator.backward(fwd["loss"])
    if feedback and strategy.wants_feedback:
        token_losses = torch.zeros(fwd["predicted"].shape, device=fwd["token_loss"].device)
        token_losses[fwd["predicted"]] = fwd["token_loss"].detach().float()
        strategy.observe(padded, token_losses.cpu())
    return fwd["loss"].detach()


class SkippedBatches:
    """Micro-batches with nothing to predict, counted per process and summed over processes when folded."""

    def __init__(self, accelerator: Any) -> None:
        self.accelerator = accelerator
        self.pending = 0

    def count(self, empty: bool) -> bool:
        """Count ``empty`` if true; return it."""
        self.pending += int(empty)
        return empty

    def fold_into(self, state: TrainerState) -> None:
        """Add the micro-batches skipped since the last fold, on all processes, to ``state.skipped_batches``."""
        total = self.accelerator.reduce(torch.tensor(self.pending, device=self.accelerator.device), reduction="sum")
        state.skipped_batches += int(total.item())
        self.pending = 0


def _warner(console: Console):
    """A callback printing a warning line as plain text (paths may hold brackets rich would read as markup)."""
    return lambda text: console.print(text, style="yellow", markup=False, highlight=False, soft_wrap=True)
