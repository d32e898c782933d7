"""``MaskingCollator``: Hugging Face's MLM collator with a pluggable strategy and ratio schedule.

Padding and masking are two separate calls so the training loop can pad in dataloader
workers and mask in the main process with the exact optimizer step; ``__call__``
does both, so the collator also drops into a Hugging Face ``Trainer`` unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from transformers import DataCollatorForLanguageModeling

from mlmkit.masking.base import IGNORE_INDEX, MaskingStrategy
from mlmkit.masking.schedules import ConstantSchedule, RatioSchedule

#: per-token features padded with -1 (everything but input_ids / attention_mask)
FEATURE_PAD = -1


def step_seed(seed: int, step: int, micro_step: int = 0, rank: int = 0) -> int:
    """A seed that depends only on (seed, step, micro step, process rank)."""
    return (seed * 1_000_003 + step * 10_007 + micro_step * 101 + rank) % (2**63 - 1)


def predicts_nothing(batch: Mapping[str, torch.Tensor]) -> bool:
    """True when a masked batch has no position to predict (every label is ignored).

    Possible at the end of a decaying ratio schedule or with very short rows; a training
    loop counts and skips such a batch instead of reporting a loss over zero tokens.
    """
    return not bool((batch["labels"] != IGNORE_INDEX).any())


def step_generator(seed: int, step: int, micro_step: int = 0, rank: int = 0) -> torch.Generator:
    """A generator whose stream depends only on (seed, step, micro step, process rank)."""
    return torch.Generator().manual_seed(step_seed(seed, step, micro_step, rank))


class MaskingCollator(DataCollatorForLanguageModeling):
    """Pads examples and masks them with a :class:`MaskingStrategy`.

    Args:
        tokenizer: A tokenizer with a mask token.
        strategy: The masking strategy (bound to ``tokenizer`` here).
        schedule: Ratio schedule; constant at ``strategy.ratio`` when omitted.
        seed: Base seed; each call's masks come from ``(seed, step, micro_step, rank)``.
        pad_to_multiple_of: Round padded length up to this multiple (8 suits tensor cores).
        rank: Process index, so data-parallel workers draw different masks.
    """

    def __init__(
        self,
        tokenizer: Any,
        strategy: MaskingStrategy,
        schedule: RatioSchedule | None = None,
        seed: int = 0,
        pad_to_multiple_of: int | None = 8,
        rank: int = 0,
    ) -> None:
        super().__init__(
            tokenizer=tokenizer,
            mlm=True,
            mlm_probability=strategy.ratio,
            mask_replace_prob=strategy.mask_replace_prob,
            random_replace_prob=strategy.random_replace_prob,
            pad_to_multiple_of=pad_to_multiple_of,
            seed=seed,
        )
        strategy.bind(tokenizer)
        self.strategy = strategy
        self.schedule = schedule or ConstantSchedule(strategy.ratio, 1)
        self.base_seed = int(seed)
        self.rank = int(rank)
        self.calls = 0  # used only when called without an explicit step (plain HF use)
        self._special_ids = torch.tensor(sorted(set(tokenizer.all_special_ids)), dtype=torch.long)

    # ------------------------------------------------------------------ padding
    def pad(self, examples: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        """Right-pad a list of examples into tensors, with ``special_tokens_mask`` and ``word_ids``."""
        if not examples:
            raise ValueError("cannot collate an empty list of examples")
        lengths = [len(e["input_ids"]) for e in examples]
        width = max(lengths)
        if self.pad_to_multiple_of:
            width = -(-width // self.pad_to_multiple_of) * self.pad_to_multiple_of
        pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        input_ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
        attention = torch.zeros((len(examples), width), dtype=torch.long)
        feature_names = [k for k in examples[0] if k not in ("input_ids", "attention_mask", "special_tokens_mask")]
        features = {k: torch.full((len(examples), width), FEATURE_PAD, dtype=torch.long) for k in feature_names}
        for row, (example, n) in enumerate(zip(examples, lengths, strict=True)):
            input_ids[row, :n] = torch.as_tensor(example["input_ids"], dtype=torch.long)
            attention[row, :n] = 1
            for k in feature_names:
                features[k][row, :n] = torch.as_tensor(example[k], dtype=torch.long)
        special = torch.isin(input_ids, self._special_ids) | (attention == 0)
        batch = {"input_ids": input_ids, "attention_mask": attention, "special_tokens_mask": special}
        if "word_ids" not in features:
            features["word_ids"] = self._word_ids_from_tokens(input_ids, special)
        batch.update(features)
        return batch

    @staticmethod
    def _word_ids_from_tokens(input_ids: torch.Tensor, special: torch.Tensor) -> torch.Tensor:
        # Without word ids from the tokenizer, every ordinary token is its own word.
        positions = torch.arange(input_ids.shape[1]).expand_as(input_ids)
        return torch.where(special, torch.full_like(positions, -1), positions)

    # ------------------------------------------------------------------ masking
    def mask(self, batch: dict[str, torch.Tensor], step: int, micro_step: int = 0) -> dict[str, torch.Tensor]:
        """Mask a padded batch for optimizer step ``step``; returns model inputs with ``labels``.

        Extra features (word ids, POS ids, ...) are dropped from the result so it can be
        passed to a model as ``model(**batch)``.
        """
        ratio = self.schedule(step)
        generator = step_generator(self.base_seed, step, micro_step, self.rank)
        input_ids, labels = self.strategy(batch, ratio, generator)
        return {"input_ids": input_ids, "attention_mask": batch["attention_mask"], "labels": labels}

    def torch_call(self, examples: list[Any]) -> dict[str, Any]:
        """Hugging Face entry point: pad and mask, advancing an internal call counter."""
        if not isinstance(examples[0], Mapping):
            examples = [{"input_ids": e} for e in examples]
        batch = self.mask(self.pad(examples), self.calls)
        self.calls += 1
        return batch
