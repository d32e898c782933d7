"""Held-out MLM evaluation with fixed masks.

Whatever the training strategy, the held-out blocks are masked once, with a fixed
seed, by BERT's 15% random-token masking (80% mask / 10% random / 10% keep), so
masked-token accuracy and perplexity are comparable across strategies and over
training (training loss is not: it depends on the masking rate and unit).
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

import torch

from mlmkit.io.outputs import write_text_atomic
from mlmkit.masking.collator import MaskingCollator
from mlmkit.masking.random_token import RandomMasking

EVAL_SEED = 20190
EVAL_RATIO = 0.15


def fixed_eval_batches(eval_dataset, tokenizer, batch_size: int) -> list[dict[str, torch.Tensor]]:
    """Pad and mask the held-out blocks once; the same tensors are reused at every evaluation."""
    collator = MaskingCollator(tokenizer, RandomMasking(ratio=EVAL_RATIO), seed=EVAL_SEED)
    batches = []
    columns = ["input_ids"]
    rows = eval_dataset.select_columns(columns)
    for index, start in enumerate(range(0, len(rows), batch_size)):
        examples = [rows[i] for i in range(start, min(start + batch_size, len(rows)))]
        batches.append(collator.mask(collator.pad(examples), step=index))
    return batches


@torch.no_grad()
def evaluate_mlm(
    model: torch.nn.Module, batches: list[dict[str, torch.Tensor]], accelerator: Any = None
) -> dict[str, float]:
    """Masked-token accuracy, mean loss and perplexity of a :class:`SparseMLM` on fixed batches.

    With several processes each evaluates its share of batches and the sums are reduced.
    """
    if accelerator is not None:
        # the bare module: a DDP wrapper would sync buffers on every forward, and ranks run
        # different numbers of evaluation batches
        model = accelerator.unwrap_model(model)
    was_training = model.training
    model.eval()
    device = accelerator.device if accelerator is not None else next(model.parameters()).device
    rank = accelerator.process_index if accelerator is not None else 0
    world = accelerator.num_processes if accelerator is not None else 1
    totals = torch.zeros(3, dtype=torch.float64, device=device)  # loss sum, correct, count
    for batch in batches[rank::world]:
        batch = {k: v.to(device) for k, v in batch.items()}
        out = model(**batch)
        totals[0] += out["token_loss"].double().sum()
        totals[1] += (out["logits"].argmax(dim=-1) == out["targets"]).sum()
        totals[2] += out["targets"].numel()
    if accelerator is not None and world > 1:
        totals = accelerator.reduce(totals, reduction="sum")
    if was_training:
        model.train()
    count = max(totals[2].item(), 1.0)
    loss = totals[0].item() / count
    return {
        "masked_accuracy": totals[1].item() / count,
        "eval_loss": loss,
        "perplexity": math.exp(min(loss, 700.0)),
        "eval_tokens": int(totals[2].item()),
    }


def most_frequent_token_baseline(batches: list[dict[str, torch.Tensor]]) -> dict[str, float]:
    """Masked accuracy of always predicting the held-out targets' most frequent token.

    The strongest constant predictor on these batches: a freshly initialised model
    should beat it, or it has learned nothing beyond token frequencies.

    Returns:
        ``most_frequent_accuracy`` and the ``most_frequent_token`` id.
    """
    targets = torch.cat([b["labels"][b["labels"] != -100].flatten() for b in batches]) if batches else None
    if targets is None or targets.numel() == 0:
        return {"most_frequent_accuracy": 0.0, "most_frequent_token": -1}
    counts = torch.bincount(targets)
    token = int(counts.argmax())
    return {"most_frequent_accuracy": counts[token].item() / targets.numel(), "most_frequent_token": token}


# ------------------------------------------------------------------ evaluations remembered between runs
#: where a prepared corpus keeps the evaluations made on its held-out blocks
EVALUATIONS_DIR = "evaluations"


def evaluation_key(model: torch.nn.Module, batches: list[dict[str, torch.Tensor]], settings: dict[str, Any]) -> str:
    """A digest of everything an evaluation's result depends on.

    The model's configuration and every weight (bytes, dtype, shape), the evaluation batches
    (inputs, masks, labels) and ``settings`` (device, precision, library versions, fast paths).
    Two runs with the same key compute the same numbers, so the second can reuse the first's.
    """
    digest = hashlib.blake2b(digest_size=20)
    digest.update(json.dumps(settings, sort_keys=True, default=str).encode())
    config = getattr(model, "config", None)
    if config is not None:
        digest.update(config.to_json_string(use_diff=False).encode())
    tensors = [*model.state_dict().items(), *((f"batch{i}.{k}", v) for i, b in enumerate(batches)
                                              for k, v in sorted(b.items()))]
    for name, tensor in tensors:
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


def read_remembered(path: Path | None) -> dict[str, float] | None:
    """The metrics stored at ``path`` by :func:`remember`; None when absent or unreadable (then evaluate again)."""
    if path is None or not path.is_file():
        return None
    try:
        metrics = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return metrics if isinstance(metrics, dict) and "masked_accuracy" in metrics else None


def remember(path: Path | None, metrics: dict[str, float]) -> None:
    """Store ``metrics`` at ``path`` (atomically; nothing when ``path`` is None)."""
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, json.dumps(metrics, indent=2) + "\n")
