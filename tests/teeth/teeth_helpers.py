"""Shared pieces of the tests in tests/teeth: a dropout-free tiny model, run configs, and capture of the
batches a real pre-training run masked (recorded by wrapping the loop's collator)."""

from __future__ import annotations

import math
from pathlib import Path

import torch

from mlmkit.config import PretrainConfig, load_config
from mlmkit.masking.base import IGNORE_INDEX

#: a deviation of this many standard deviations (or its Hoeffding equivalent) happens with probability < 1e-6
Z = 5.0


def save_tiny_model(path: Path, tokenizer, dropout: float = 0.0, seed: int = 0) -> Path:
    """Save a 2-layer, 32-wide BERT MLM (dropout off by default, so runs compare exactly) with ``tokenizer``."""
    from conftest import build_tiny_bert

    build_tiny_bert(tokenizer, seed=seed, dropout=dropout).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def run_overrides(model_dir, corpus_file, out, *extra: str) -> list[str]:
    """Overrides of a short tiny run: 32-token blocks, batch 8, logging every step, no checkpoints."""
    return [f"model.name_or_path={model_dir}", f"data.source={corpus_file}", "data.max_seq_length=32",
            "data.eval_fraction=0.2", "train.max_steps=4", "train.batch_size=8", "train.lr=3e-3",
            "train.log_every=1", f"output.dir={out}", *extra]


def run_config(model_dir, corpus_file, out, *extra: str) -> PretrainConfig:
    """The resolved config of :func:`run_overrides`."""
    return load_config(PretrainConfig, None, run_overrides(model_dir, corpus_file, out, *extra))


def record_masked_batches(monkeypatch) -> list[dict]:
    """Make the pre-training loop build a collator that records every batch it masks.

    Each record holds the step, micro step and rank, the padded batch (with its per-token
    features) and the masked ``input_ids`` and ``labels`` the model was given.
    """
    from mlmkit.masking.collator import MaskingCollator
    from mlmkit.training import pretrain as pretrain_module

    seen: list[dict] = []

    class RecordingCollator(MaskingCollator):
        def mask(self, batch, step, micro_step=0):
            out = super().mask(batch, step, micro_step)
            seen.append({"step": step, "micro_step": micro_step, "rank": self.rank, "strategy": self.strategy.name,
                         "padded": {k: v.clone() for k, v in batch.items()},
                         "input_ids": out["input_ids"].clone(), "labels": out["labels"].clone()})
            return out

    monkeypatch.setattr(pretrain_module, "MaskingCollator", RecordingCollator)
    return seen


def predicted(record: dict) -> torch.Tensor:
    """``(B, L)`` bool: the positions the model was asked to predict."""
    return record["labels"] != IGNORE_INDEX


def candidates(record: dict) -> torch.Tensor:
    """``(B, L)`` bool: real, non-special tokens."""
    return ~record["padded"]["special_tokens_mask"]


def wordpiece_words(tokenizer, row_ids: torch.Tensor, special: torch.Tensor) -> list[list[int]]:
    """Positions of each word of a row, read from the WordPiece ``##`` prefix (independent of ``word_ids``)."""
    tokens = tokenizer.convert_ids_to_tokens(row_ids.tolist())
    words: list[list[int]] = []
    previous_special = True
    for position, token in enumerate(tokens):
        if bool(special[position]):
            previous_special = True
            continue
        if token.startswith("##") and not previous_special:
            words[-1].append(position)
        else:
            words.append([position])
        previous_special = False
    return words


def word_text(tokenizer, row_ids: torch.Tensor, positions: list[int]) -> str:
    """The text of one word from its pieces."""
    pieces = tokenizer.convert_ids_to_tokens([int(row_ids[p]) for p in positions])
    return "".join(p[2:] if p.startswith("##") else p for p in pieces)


def hoeffding_bound(n: int, value_range: float, delta: float = 1e-6) -> float:
    """Largest deviation of a sum of ``n`` independent terms of the given range from its mean, w.p. ``1 - delta``."""
    return value_range * math.sqrt(n * math.log(2.0 / delta) / 2.0)


def binomial_band(n: int, p: float) -> float:
    """``Z`` standard deviations of a Binomial(n, p) count."""
    return Z * math.sqrt(n * p * (1.0 - p))
