"""``mlmkit pretrain``: the Accelerate MLM loop.

One flat function in the spirit of ``run_mlm_no_trainer.py``: build data, model and
masking, ``prepare``, loop with accumulation / clipping / schedule, evaluate on a
fixed-mask held-out split before and after, and save a standard model directory.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from rich.console import Console

from mlmkit.config.loading import config_to_yaml
from mlmkit.config.schema import PretrainConfig
from mlmkit.data.packing import pack_blocks, split_eval, tokenize_corpus
from mlmkit.data.sources import load_text_corpus
from mlmkit.errors import UserError
from mlmkit.masking.collator import MaskingCollator
from mlmkit.masking.registry import build_strategy
from mlmkit.masking.schedules import build_schedule
from mlmkit.modeling.loading import load_mlm_model
from mlmkit.modeling.sparse_head import SparseMLM
from mlmkit.training.mlm_eval import evaluate_mlm, fixed_eval_batches
from mlmkit.training.optim import build_lr_scheduler, build_optimizer, resolve_mixed_precision
from mlmkit.training.progress import training_progress
from mlmkit.training.run_dir import MetricsLog, prepare_output_dir, save_pretrained_atomic, write_text_atomic


@dataclass
class PretrainResult:
    """What a pre-training run produced."""

    output_dir: str
    steps: int
    train_seconds: float
    tokens_per_second: float
    before: dict[str, float]
    after: dict[str, float]
    final_loss: float
    data: dict[str, int] = field(default_factory=dict)


def build_pretrain_data(cfg: PretrainConfig, tokenizer: Any, strategy: Any):
    """Load, tokenize, pack and split the corpus; returns ``(train_blocks, eval_blocks, stats)``."""
    texts = load_text_corpus(cfg.data.source, cfg.data.text_column, cfg.data.split, cfg.data.config_name,
                             cfg.data.max_documents)
    tokenized = tokenize_corpus(texts, tokenizer, strategy, num_proc=cfg.data.num_proc)
    blocks = pack_blocks(tokenized, cfg.data.max_seq_length, strategy.group_features, num_proc=cfg.data.num_proc)
    train_blocks, eval_blocks = split_eval(blocks, cfg.data.eval_fraction, cfg.data.eval_max_blocks, cfg.train.seed)
    stats = {"documents": len(texts), "blocks": len(blocks), "train_blocks": len(train_blocks),
             "eval_blocks": len(eval_blocks)}
    return train_blocks, eval_blocks, stats


def pretrain(cfg: PretrainConfig, console: Console | None = None) -> PretrainResult:
    """Run MLM pre-training as configured and return the before/after metrics."""
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from torch.utils.data import DataLoader

    console = console or Console(stderr=True)
    tcfg = cfg.train
    if tcfg.max_steps <= 0:
        raise UserError("train.max_steps must be positive for pre-training")
    accelerator = Accelerator(gradient_accumulation_steps=tcfg.grad_accum,
                              mixed_precision=resolve_mixed_precision(tcfg.mixed_precision))
    main = accelerator.is_main_process
    set_seed(tcfg.seed)

    out = prepare_output_dir(cfg.output.dir, cfg.output.overwrite) if main else Path(cfg.output.dir)
    accelerator.wait_for_everyone()
    if main:
        write_text_atomic(out / "config.yaml", config_to_yaml(cfg))
    metrics = MetricsLog(out / "metrics.jsonl", enabled=main)

    model, tokenizer, fresh = load_mlm_model(cfg.model)
    if fresh and main:
        console.print(f"[dim]{len(fresh)} weight tensor(s) not in the checkpoint start fresh "
                      f"(e.g. {fresh[0]})[/]" if len(fresh) > 1 or "scratch" not in fresh[0] else
                      "[dim]weights initialised from scratch[/]")
    strategy = build_strategy(cfg.masking)
    schedule = build_schedule(cfg.masking.get("schedule"), strategy.ratio, tcfg.max_steps)
    collator = MaskingCollator(tokenizer, strategy, schedule, seed=tcfg.seed, rank=accelerator.process_index)

    with accelerator.main_process_first():
        train_blocks, eval_blocks, data_stats = build_pretrain_data(cfg, tokenizer, strategy)
    if main:
        console.print(f"data: {data_stats['documents']:,} documents -> {data_stats['blocks']:,} blocks of "
                      f"{cfg.data.max_seq_length} tokens ({data_stats['eval_blocks']:,} held out)")

    loader = DataLoader(
        train_blocks, batch_size=tcfg.batch_size, shuffle=True, collate_fn=collator.pad,
        num_workers=tcfg.num_workers, persistent_workers=tcfg.num_workers > 0,
        generator=torch.Generator().manual_seed(tcfg.seed), drop_last=False,
    )
    wrapped = SparseMLM(model, sparse=cfg.model.sparse_head)
    if tcfg.compile:
        wrapped = torch.compile(wrapped)
    optimizer = build_optimizer(wrapped, tcfg.lr, tcfg.weight_decay)
    scheduler = build_lr_scheduler(tcfg.lr_scheduler, optimizer, tcfg.max_steps, tcfg.warmup_ratio,
                                   accelerator.num_processes)
    wrapped, optimizer, loader, scheduler = accelerator.prepare(wrapped, optimizer, loader, scheduler)
    eval_batches = fixed_eval_batches(eval_blocks, tokenizer, tcfg.eval_batch_size)

    before = evaluate_mlm(wrapped, eval_batches, accelerator)
    metrics.write(step=0, split="eval", **before)
    if main:
        console.print(f"before training: masked accuracy {before['masked_accuracy']:.3f}, "
                      f"perplexity {before['perplexity']:,.1f}")

    step, micro, tokens, loss_value = 0, 0, 0, float("nan")
    wants_feedback = strategy.wants_feedback
    wrapped.train()
    start = time.perf_counter()
    window_tokens, window_start, window_loss = 0, start, []
    with training_progress(console, enabled=main) as progress:
        task = progress.add_task("pretrain", total=tcfg.max_steps, stats="")
        while step < tcfg.max_steps:
            for padded in loader:
                with accelerator.accumulate(wrapped):
                    batch = collator.mask(padded, step, micro % tcfg.grad_accum)
                    batch = {k: v.to(accelerator.device, non_blocking=True) for k, v in batch.items()}
                    fwd = wrapped(**batch)
                    accelerator.backward(fwd["loss"])
                    if wants_feedback:
                        token_losses = torch.zeros(fwd["predicted"].shape, device=fwd["token_loss"].device)
                        token_losses[fwd["predicted"]] = fwd["token_loss"].detach().float()
                        strategy.observe(padded, token_losses.cpu())
                    if accelerator.sync_gradients and tcfg.max_grad_norm > 0:
                        accelerator.clip_grad_norm_(wrapped.parameters(), tcfg.max_grad_norm)
                    optimizer.step()
                    scheduler.step()
                    optimizer.zero_grad(set_to_none=True)
                micro += 1
                n_tokens = int(batch["attention_mask"].sum()) * accelerator.num_processes
                tokens += n_tokens
                window_tokens += n_tokens
                window_loss.append(fwd["loss"].detach())
                if not accelerator.sync_gradients:
                    continue
                step += 1
                if step % tcfg.log_every == 0 or step == tcfg.max_steps or step == 1:
                    loss_value = accelerator.reduce(torch.stack(window_loss).mean(), reduction="mean").item()
                    now = time.perf_counter()
                    rate = window_tokens / max(now - window_start, 1e-9)
                    lr = scheduler.get_last_lr()[0]
                    metrics.write(step=step, split="train", loss=loss_value, lr=lr, mask_ratio=schedule(step - 1),
                                  tokens_per_s=round(rate, 1), **strategy.log_values())
                    progress.update(task, stats=f"loss {loss_value:.3f}  lr {lr:.2e}  {rate:,.0f} tok/s")
                    window_tokens, window_start, window_loss = 0, now, []
                progress.update(task, completed=step)
                if tcfg.eval_every and step % tcfg.eval_every == 0 and step < tcfg.max_steps:
                    metrics.write(step=step, split="eval", **evaluate_mlm(wrapped, eval_batches, accelerator))
                if step >= tcfg.max_steps:
                    break
    train_seconds = time.perf_counter() - start
    after = evaluate_mlm(wrapped, eval_batches, accelerator)
    metrics.write(step=step, split="eval", **after)

    accelerator.wait_for_everyone()
    if main:
        save_pretrained_atomic(out, accelerator.unwrap_model(wrapped).model, tokenizer)
        if strategy.state_dict():
            write_text_atomic(out / "masking_state.json", json.dumps(strategy.state_dict()))
    accelerator.end_training()
    return PretrainResult(
        output_dir=str(out), steps=step, train_seconds=train_seconds,
        tokens_per_second=tokens / max(train_seconds, 1e-9), before=before, after=after,
        final_loss=loss_value if not math.isnan(loss_value) else float("nan"), data=data_stats,
    )
