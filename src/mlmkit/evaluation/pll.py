"""Pseudo-log-likelihood (PLL) scoring of texts with a masked language model.

Salazar, Liang, Nguyen and Kirchhoff, "Masked Language Model Scoring" (ACL 2020): a
sequence's PLL is the sum, over its ordinary tokens, of the log-probability the model
gives each token when that token alone is replaced by the mask token. Pseudo-perplexity
is ``exp(-PLL / N)`` over the N scored tokens of a corpus (or of one text).

A text of N ordinary tokens needs N masked copies. The copies of several texts are
packed into shared forward passes of ``batch_size`` rows, and only the logits at the
masked position of each row are projected onto the vocabulary, so a batch costs one
encoder pass plus ``batch_size`` vocabulary rows instead of ``batch_size x length``.

Example::

    results = pseudo_log_likelihood(model, tokenizer, ["The cat sat.", "Cat the sat."])
    print(results[0].pll, results[0].pseudo_perplexity)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from mlmkit.modeling.sparse_head import split_mlm_head


@dataclass
class PLLResult:
    """The pseudo-log-likelihood of one token sequence."""

    pll: float
    """Sum of the natural-log probabilities of the scored tokens, each masked on its own."""
    num_tokens: int
    """How many tokens were scored (special tokens are not)."""
    token_ids: list[int] = field(default_factory=list)
    """The scored tokens' ids, in order."""
    token_log_probs: list[float] = field(default_factory=list)
    """Each scored token's log-probability, in the same order."""
    text: str | None = None
    """The text the ids came from, when scored from text."""

    @property
    def pseudo_perplexity(self) -> float:
        """``exp(-PLL / N)``; ``nan`` when no token was scored."""
        if self.num_tokens == 0:
            return float("nan")
        return math.exp(min(-self.pll / self.num_tokens, 700.0))


def _masked_copies(sequences: Sequence[Sequence[int]], scored: Sequence[Sequence[bool]]):
    """Yield ``(sequence index, position)`` for every token to score, text by text."""
    for index, (ids, keep) in enumerate(zip(sequences, scored, strict=True)):
        if len(ids) != len(keep):
            raise ValueError("each sequence needs one scored flag per token")
        for position, flag in enumerate(keep):
            if flag:
                yield index, position


def _mlm_parts(model: torch.nn.Module):
    """``(encoder_forward, head)`` when the MLM head can be split off, else ``None``."""
    return split_mlm_head(model)


@torch.no_grad()
def pll_of_ids(
    model: torch.nn.Module,
    sequences: Sequence[Sequence[int]],
    mask_token_id: int,
    scored: Sequence[Sequence[bool]],
    *,
    pad_token_id: int = 0,
    batch_size: int = 64,
    device: torch.device | str | None = None,
) -> list[PLLResult]:
    """PLL of token-id sequences (special tokens already in place).

    Args:
        model: a masked-LM (``AutoModelForMaskedLM``-style: returns ``logits``).
        sequences: token ids of each sequence, special tokens included.
        mask_token_id: the tokenizer's mask id.
        scored: per sequence, one flag per token: True where the token is scored.
        pad_token_id: id used to pad rows of different lengths (attention is masked there).
        batch_size: masked copies per forward pass.
        device: where to run; default the model's device.

    Returns:
        One :class:`PLLResult` per sequence, in input order.
    """
    device = torch.device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    parts = _mlm_parts(model)
    results = [PLLResult(pll=0.0, num_tokens=0) for _ in sequences]
    jobs = list(_masked_copies(sequences, scored))
    for start in range(0, len(jobs), batch_size):
        chunk = jobs[start:start + batch_size]
        width = max(len(sequences[i]) for i, _ in chunk)
        input_ids = torch.full((len(chunk), width), pad_token_id, dtype=torch.long)
        attention = torch.zeros((len(chunk), width), dtype=torch.long)
        targets = torch.empty(len(chunk), dtype=torch.long)
        for row, (index, position) in enumerate(chunk):
            ids = sequences[index]
            input_ids[row, :len(ids)] = torch.as_tensor(ids, dtype=torch.long)
            attention[row, :len(ids)] = 1
            targets[row] = ids[position]
            input_ids[row, position] = mask_token_id
        positions = torch.as_tensor([p for _, p in chunk])
        rows = torch.arange(len(chunk))
        input_ids, attention = input_ids.to(device), attention.to(device)
        if parts is not None:
            encoder, head = parts
            hidden = encoder(input_ids=input_ids, attention_mask=attention)[0]
            logits = head(hidden[rows.to(device), positions.to(device)])
        else:
            logits = model(input_ids=input_ids, attention_mask=attention).logits[rows.to(device), positions.to(device)]
        log_probs = torch.log_softmax(logits.float(), dim=-1).gather(1, targets.to(device)[:, None])[:, 0].cpu()
        for row, (index, _) in enumerate(chunk):
            value = float(log_probs[row])
            result = results[index]
            result.pll += value
            result.num_tokens += 1
            result.token_ids.append(int(targets[row]))
            result.token_log_probs.append(value)
    if was_training:
        model.train()
    return results


def pseudo_log_likelihood(
    model: torch.nn.Module,
    tokenizer: Any,
    texts: Sequence[str],
    *,
    batch_size: int = 64,
    max_length: int | None = None,
    device: torch.device | str | None = None,
) -> list[PLLResult]:
    """PLL of each text: every ordinary token masked in turn, special tokens kept and not scored.

    Args:
        model: a masked-LM.
        tokenizer: its tokenizer (must have a mask token).
        texts: the texts to score.
        batch_size: masked copies per forward pass (copies of several texts share a pass).
        max_length: truncate each text to this many tokens (default: the model's position limit).
        device: where to run; default the model's device.
    """
    if max_length is None:
        limit = getattr(getattr(model, "config", None), "max_position_embeddings", None)
        max_length = min(int(limit), 512) if limit else 512
    encoded = tokenizer(list(texts), truncation=True, max_length=max_length, return_special_tokens_mask=True)
    sequences = encoded["input_ids"]
    scored = [[not special for special in mask] for mask in encoded["special_tokens_mask"]]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    results = pll_of_ids(model, sequences, tokenizer.mask_token_id, scored, pad_token_id=pad,
                         batch_size=batch_size, device=device)
    for text, result in zip(texts, results, strict=True):
        result.text = text
    return results


def corpus_pseudo_perplexity(results: Sequence[PLLResult]) -> float:
    """``exp(-sum PLL / sum N)`` over several sequences (Salazar et al.'s corpus-level PPPL)."""
    tokens = sum(r.num_tokens for r in results)
    if tokens == 0:
        return float("nan")
    return math.exp(min(-sum(r.pll for r in results) / tokens, 700.0))
