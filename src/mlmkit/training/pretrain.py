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

import torch
from rich.console import Console

from mlmkit.config.loading import config_to_yaml
from mlmkit.config.schema import PretrainConfig
from mlmkit.data.cache import prepared_corpus, streamed_blocks
from mlmkit.data.packing import split_eval
from mlmkit.data.sampler import EpochShuffleSampler
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
from mlmkit.training.launch import build_accelerator
from mlmkit.training.mlm_eval import evaluate_mlm, fixed_eval_batches, most_frequent_token_baseline
from mlmkit.training.model_card import finish_run
from mlmkit.training.optim import build_lr_scheduler, build_optimizer
from mlmkit.training.stopping import StopSignals, TrainingInterrupted, parse_duration
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
        import datasets

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
             "eval_blocks": len(eval_blocks)}
    if notify is not None and prepared.reused:
        notify(f"data: reusing the prepared corpus in {prepared.path}")
    return train_blocks, eval_blocks, stats


@restores_replaced_output
def pretrain(cfg: PretrainConfig, console: Console | None = None) -> PretrainResult:
    """Run MLM pre-training as configured and return the before/after metrics."""
    from accelerate.utils import DistributedType, set_seed
    from torch.utils.data import DataLoader

    console = console or Console(stderr=True)
    tcfg = cfg.train
    validate_run_config(cfg)  # the CLI did already; a config built in Python is checked here
    accelerator = build_accelerator(tcfg.grad_accum, tcfg.mixed_precision, **reporting_options(cfg))
    main = accelerator.is_main_process
    set_seed(tcfg.seed)

    resuming = bool(tcfg.resume)
    out = Path(cfg.output.dir).expanduser()
    # a damaged checkpoint stops the run before anything in the run directory changes
    checkpoint = resolve_resume(tcfg.resume, out, notify=_warner(console) if main else None) if resuming else None
    if resuming and checkpoint is None and tcfg.resume != "auto":
        raise UserError(f"nothing to resume from {tcfg.resume}")
    if main:
        # resuming keeps the run directory (checkpoints, metrics) as it is
        prepare_output_dir(out, cfg.output.overwrite, resume=resuming)
    accelerator.wait_for_everyone()
    config_yaml = config_to_yaml(cfg)
    if main:
        write_text_atomic(out / "config.yaml", config_yaml)
    metrics = open_metrics_log(accelerator, cfg, out)  # metrics.jsonl, also sent to train.report_to trackers
    budget = parse_duration(tcfg.max_time)

    model, tokenizer, fresh = load_mlm_model(tokenizer_for_run(cfg, out, accelerator, console))
    if fresh and main and checkpoint is None:
        console.print(f"[dim]{len(fresh)} weight tensor(s) not in the checkpoint start fresh "
                      f"(e.g. {fresh[0]})[/]" if len(fresh) > 1 or "scratch" not in fresh[0] else
                      "[dim]weights initialised from scratch[/]")
    strategy = build_strategy(cfg.masking)
    schedule = build_schedule(cfg.masking.get("schedule"), strategy.ratio, tcfg.max_steps)
    collator = MaskingCollator(tokenizer, strategy, schedule, seed=tcfg.seed, rank=accelerator.process_index)

    with accelerator.main_process_first():
        notify = (lambda text: console.print(text, markup=False, highlight=False, soft_wrap=True)) if main else None
        train_blocks, eval_blocks, data_stats = build_pretrain_data(cfg, tokenizer, strategy, notify)
    streaming = cfg.data.streaming
    if main:
        source = "a streamed corpus" if streaming else f"{data_stats['documents']:,} documents -> " \
            f"{data_stats['blocks']:,} blocks"
        console.print(f"data: {source} of up to {cfg.data.max_seq_length} tokens "
                      f"({data_stats['eval_blocks']:,} blocks held out)")

    if tcfg.fast_dropout and not tcfg.compile and accelerator.device.type == "cpu":
        use_fast_dropout(model)
    # the last-layer path swaps a module during forward: eager mode, and no sharding wrappers around layers
    sharded = accelerator.distributed_type in (DistributedType.FSDP, DistributedType.DEEPSPEED)
    wrapped = SparseMLM(model, sparse=cfg.model.sparse_head,
                        last_layer=cfg.model.sparse_last_layer and not tcfg.compile and not sharded)
    if tcfg.compile:
        wrapped = torch.compile(wrapped)
    optimizer = build_optimizer(wrapped, tcfg.lr, tcfg.weight_decay)
    scheduler = build_lr_scheduler(tcfg.lr_scheduler, optimizer, tcfg.max_steps, tcfg.warmup_ratio,
                                   accelerator.num_processes)
    if streaming:
        from datasets.distributed import split_dataset_by_node

        # each process reads its own part of the stream; the position is saved per process
        train_blocks = split_dataset_by_node(train_blocks, accelerator.process_index, accelerator.num_processes)
        sampler = None
        loader = DataLoader(train_blocks, batch_size=tcfg.batch_size, collate_fn=collator.pad, num_workers=0)
        wrapped, optimizer, scheduler = accelerator.prepare(wrapped, optimizer, scheduler)
    else:
        sampler = EpochShuffleSampler(len(train_blocks), tcfg.seed)
        loader = DataLoader(
            train_blocks, batch_size=tcfg.batch_size, sampler=sampler, collate_fn=collator.pad,
            num_workers=tcfg.num_workers, persistent_workers=tcfg.num_workers > 0,
            # its own generator, so creating an iterator never draws from the global RNG (exact resume)
            generator=torch.Generator().manual_seed(tcfg.seed), drop_last=False,
        )
        wrapped, optimizer, scheduler = accelerator.prepare(wrapped, optimizer, scheduler)
        # batches stay on the CPU, where the masking strategies draw from CPU generators; the loop moves them
        loader = accelerator.prepare_data_loader(loader, device_placement=False)
    eval_batches = fixed_eval_batches(eval_blocks, tokenizer, tcfg.eval_batch_size)

    world = accelerator.num_processes
    if checkpoint is not None:
        state = load_checkpoint(accelerator, checkpoint)
        schedule.load_state_dict(state.schedule)
        strategy.load_state_dict(state.strategy)
        if streaming:
            if len(state.data_state) != world:
                raise UserError(f"{checkpoint} was written by {len(state.data_state)} process(es); a streamed "
                                f"corpus resumes only with the same number (got {world})")
            train_blocks.load_state_dict(state.data_state[accelerator.process_index])
        elif state.num_processes != world:
            # the data position is kept in samples, whatever the process count
            state.batches_in_epoch = state.batches_in_epoch * state.num_processes // world
            state.num_processes = world
        before = state.before
        if main:
            console.print(f"resumed from {checkpoint} at step {state.step}")
    else:
        state = TrainerState(num_processes=world)
        before = evaluate_mlm(wrapped, eval_batches, accelerator)
        if is_from_scratch(cfg.model):  # a random model's accuracy means something only next to a trivial predictor's
            before.update(most_frequent_token_baseline(eval_batches))
        state.before = before
        metrics.write(step=0, split="eval", **before)
        if main:
            console.print(f"before training: masked accuracy {before['masked_accuracy']:.3f}, "
                          f"perplexity {before['perplexity']:,.1f}")
            if "most_frequent_accuracy" in before:
                console.print(f"most-frequent-token baseline: masked accuracy {before['most_frequent_accuracy']:.3f} "
                              f"(always {tokenizer.convert_ids_to_tokens(before['most_frequent_token'])!r})")

    def checkpoint_now() -> Path:
        state.schedule = schedule.state_dict()
        state.strategy = strategy.state_dict()
        if streaming:
            from accelerate.utils import gather_object

            state.data_state = gather_object([train_blocks.state_dict()])
        fold_skipped()
        return save_checkpoint(accelerator, out, state, config_yaml, tcfg.keep_checkpoints)

    def fold_skipped() -> None:
        """Add the micro-batches skipped since the last call, on all processes, to the saved count."""
        nonlocal window_skipped
        state.skipped_batches += int(accelerator.reduce(torch.tensor(window_skipped, device=accelerator.device),
                                                        reduction="sum").item())
        window_skipped = 0

    loss_value: float | None = None
    wants_feedback = strategy.wants_feedback
    wrapped.train()
    start = time.perf_counter()
    prior_seconds = state.train_seconds
    last_checkpoint_time = start
    window_tokens, window_start, window_loss = 0, start, []
    window_skipped, grads_pending = 0, False
    stop_reason: str | None = None
    with StopSignals() as signals, training_progress(console, enabled=main) as progress:
        task = progress.add_task("pretrain", total=tcfg.max_steps, completed=state.step, stats="")
        while state.step < tcfg.max_steps and stop_reason is None:
            if streaming:
                train_blocks.set_epoch(state.epoch)  # a resumed stream continues from its saved position
                epoch_loader = loader
            else:
                sampler.use_epoch(state.epoch)
                epoch_loader = accelerator.skip_first_batches(loader, state.batches_in_epoch) \
                    if state.batches_in_epoch else loader
            batches_seen = 0
            for padded in epoch_loader:
                batches_seen += 1
                # dropout draws, like masks, depend only on (seed, micro-batch, process): an exact
                # resume does not hinge on which iterator or library touched the global RNG
                torch.manual_seed(step_seed(tcfg.seed, state.micro_step, 0, accelerator.process_index))
                with accelerator.accumulate(wrapped):
                    batch = collator.mask(padded, state.step, state.micro_step)
                    empty = predicts_nothing(batch)  # labels are still on the CPU: no device sync
                    window_skipped += empty
                    # alone, skip the pass; with several processes, a zero-gradient pass keeps their collectives
                    # in step (its loss is not logged)
                    if not (empty and world == 1):
                        batch = {k: v.to(accelerator.device, non_blocking=True) for k, v in batch.items()}
                        fwd = wrapped(**batch)
                        accelerator.backward(fwd["loss"])
                        grads_pending = True
                        if not empty:
                            window_loss.append(fwd["loss"].detach())
                        if wants_feedback and not empty:
                            token_losses = torch.zeros(fwd["predicted"].shape, device=fwd["token_loss"].device)
                            token_losses[fwd["predicted"]] = fwd["token_loss"].detach().float()
                            strategy.observe(padded, token_losses.cpu())
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
                window_tokens += n_tokens
                if not accelerator.sync_gradients:
                    continue
                state.step += 1
                step = state.step
                now = time.perf_counter()
                state.train_seconds = prior_seconds + (now - start)
                if step % tcfg.log_every == 0 or step == tcfg.max_steps or step == 1:
                    window_value = _window_loss(window_loss, accelerator)  # None: nothing predicted in the window
                    loss_value = loss_value if window_value is None else window_value
                    fold_skipped()
                    rate = window_tokens / max(now - window_start, 1e-9)
                    lr = scheduler.get_last_lr()[0]
                    skipped = {"skipped_batches": state.skipped_batches} if state.skipped_batches else {}
                    metrics.write(step=step, split="train", loss=window_value, lr=lr, mask_ratio=schedule(step - 1),
                                  tokens_per_s=round(rate, 1), **skipped, **strategy.log_values())
                    shown = "no token predicted" if window_value is None else f"loss {window_value:.3f}"
                    progress.update(task, stats=f"{shown}  lr {lr:.2e}  {rate:,.0f} tok/s")
                    window_tokens, window_start, window_loss = 0, now, []
                progress.update(task, completed=step)
                if tcfg.eval_every and step % tcfg.eval_every == 0 and step < tcfg.max_steps:
                    metrics.write(step=step, split="eval", **evaluate_mlm(wrapped, eval_batches, accelerator))
                stop_reason = _stop_reason(signals, budget, state.train_seconds, accelerator)
                due = (tcfg.checkpoint_every and step % tcfg.checkpoint_every == 0) or (
                    tcfg.checkpoint_minutes and now - last_checkpoint_time >= tcfg.checkpoint_minutes * 60)
                if (due or stop_reason) and step < tcfg.max_steps:
                    checkpoint_now()
                    last_checkpoint_time = time.perf_counter()
                if stop_reason or step >= tcfg.max_steps:
                    break
            else:
                if batches_seen == 0 and state.batches_in_epoch == 0:
                    raise UserError("no training blocks are left after holding out the evaluation blocks; "
                                    "use more text or lower data.eval_max_blocks")
                state.epoch += 1
                state.batches_in_epoch = 0

    if stop_reason and stop_reason.startswith("signal"):
        accelerator.end_training()
        where = list_checkpoints(out)[-1] if list_checkpoints(out) else out
        raise TrainingInterrupted(
            f"stopped by {stop_reason[7:]} at step {state.step}; checkpoint saved to {where}. "
            f"Resume with: mlmkit pretrain --resume auto output.dir={out} (plus the same recipe and overrides)",
            signals.received or 0,
        )
    fold_skipped()
    if main and state.skipped_batches:
        console.print(f"[yellow]note:[/] {state.skipped_batches:,} micro-batch(es) had no token to predict at their "
                      "masking ratio and were skipped (no loss, no update); see skipped_batches in metrics.jsonl")
    after = evaluate_mlm(wrapped, eval_batches, accelerator)
    metrics.write(step=state.step, split="eval", **after)
    if stop_reason == "time" or (tcfg.checkpoint_every or tcfg.checkpoint_minutes):
        checkpoint_now()  # the final state, resumable (e.g. with a larger max_steps)
    if main and stop_reason == "time":
        console.print(f"[yellow]time budget {tcfg.max_time} reached at step {state.step}[/]")

    accelerator.wait_for_everyone()
    if main:
        save_pretrained_atomic(out, accelerator.unwrap_model(wrapped).model, tokenizer)
        if strategy.state_dict():
            write_text_atomic(out / "masking_state.json", json.dumps(strategy.state_dict()))
    accelerator.end_training()
    result = PretrainResult(
        output_dir=str(out), steps=state.step, train_seconds=state.train_seconds,
        tokens_per_second=state.tokens / max(state.train_seconds, 1e-9), before=before, after=after,
        final_loss=loss_value, data=data_stats, resumed_from=str(checkpoint) if checkpoint else None,
        skipped_batches=state.skipped_batches,
    )
    if main:  # eval_results.json, training_curves.png, README.md model card; the Hub upload if configured
        finish_run(out, cfg.output, console, result)
    return result


def _window_loss(losses: list[torch.Tensor], accelerator: Any) -> float | None:
    """Mean loss of the micro-batches that predicted any token, over all processes; None when none did."""
    total = torch.stack(losses).float().sum() if losses else torch.zeros((), device=accelerator.device)
    pair = accelerator.reduce(torch.stack([total, torch.tensor(float(len(losses)), device=total.device)]),
                              reduction="sum")
    loss_sum, count = pair.tolist()
    return loss_sum / count if count else None


def _warner(console: Console):
    """A callback printing a warning line as plain text (paths may hold brackets rich would read as markup)."""
    return lambda text: console.print(text, style="yellow", markup=False, highlight=False, soft_wrap=True)


def _stop_reason(signals: StopSignals, budget: float | None, seconds: float, accelerator: Any) -> str | None:
    """'signal SIGTERM' / 'time' / None, agreed by all processes so they stop at the same step."""
    import signal as signal_module

    code = 0
    if signals.received is not None:
        code = 1000 + int(signals.received)
    elif budget is not None and seconds >= budget:
        code = 1
    if accelerator.num_processes > 1:
        code = int(accelerator.reduce(torch.tensor(code, device=accelerator.device), reduction="max").item())
    if code >= 1000:
        return f"signal {signal_module.Signals(code - 1000).name}"
    return "time" if code == 1 else None
