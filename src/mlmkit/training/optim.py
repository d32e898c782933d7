"""Optimizer, LR schedule and precision choices shared by pre-training and fine-tuning."""

from __future__ import annotations

from typing import Any

import torch
from transformers import get_scheduler

from mlmkit.errors import UserError

PRECISIONS = ("auto", "no", "bf16", "fp16")


def resolve_mixed_precision(requested: str) -> str:
    """Turn ``train.mixed_precision`` into an Accelerate setting valid on this machine."""
    # YAML reads a bare `no` (as in train.mixed_precision=no) as the boolean false
    requested = "no" if str(requested).lower() in ("false", "no", "fp32", "none") else str(requested).lower()
    if requested not in PRECISIONS:
        raise UserError(f"train.mixed_precision must be one of {', '.join(PRECISIONS)}, got {requested!r}")
    cuda = torch.cuda.is_available()
    if requested == "auto":
        return "bf16" if cuda and torch.cuda.is_bf16_supported() else "no"
    if requested == "fp16" and not cuda:
        raise UserError("train.mixed_precision=fp16 needs a CUDA GPU; use 'no' or 'bf16' on CPU")
    return requested


def build_optimizer(model: torch.nn.Module, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """AdamW with no decay on biases and norm weights, using the fused kernel where torch has one.

    The fused kernel updates each tensor in one pass; on CPU it is several times faster
    than the foreach implementation (which materialises every intermediate), and for a
    small encoder the optimizer step is a sizeable share of the training step. The model
    usually still sits on the CPU here (Accelerate moves it later), so the choice is made
    by device type rather than by where the weights are now.
    """
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (no_decay if param.ndim < 2 or "norm" in name.lower() else decay).append(param)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    fusable = all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in decay + no_decay)
    return torch.optim.AdamW(groups, lr=lr, fused=True if fusable else None, foreach=None if fusable else True)


def build_lr_scheduler(name: str, optimizer: torch.optim.Optimizer, total_steps: int, warmup_ratio: float,
                       num_processes: int = 1) -> Any:
    """A transformers LR schedule with linear warmup.

    Accelerate steps a prepared scheduler once per process per optimizer step, so the
    step counts are scaled by the number of processes (as in ``run_mlm_no_trainer.py``).
    """
    warmup = int(round(total_steps * warmup_ratio))
    try:
        return get_scheduler(name, optimizer, num_warmup_steps=warmup * num_processes,
                             num_training_steps=total_steps * num_processes)
    except ValueError as exc:
        raise UserError(f"train.lr_scheduler: {exc}") from exc


def rescale_lr_scheduler(scheduler: Any, step: int, num_processes: int) -> None:
    """Set a restored LR scheduler to optimizer step ``step`` of a run with ``num_processes`` processes.

    :func:`build_lr_scheduler` counts ``num_processes`` scheduler steps per optimizer step, so a
    checkpoint written by N processes holds N x ``step``; resumed by another number of processes,
    the schedule would otherwise jump ahead (or fall behind) by that factor.
    """
    inner = getattr(scheduler, "scheduler", scheduler)  # Accelerate's wrapper around the torch scheduler
    inner.last_epoch = step * num_processes
