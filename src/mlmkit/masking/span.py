"""SpanBERT's span masking (Joshi et al., TACL 2020)."""

from __future__ import annotations

import math

import torch

from mlmkit.masking.base import MaskingStrategy, Selection, run_unit_ids
from mlmkit.masking.units import candidate_mask, select_units, word_ranks, word_unit_ids


def sample_span_lengths(
    shape: tuple[int, ...], p: float, min_span: int, max_span: int, generator: torch.Generator
) -> torch.Tensor:
    """Draw span lengths from a geometric distribution clipped to ``[min_span, max_span]``.

    ``P(length = k)`` is proportional to ``p (1 - p)^(k - min_span)`` for ``min_span <= k <= max_span``
    (the geometric distribution renormalised over the allowed range, as in SpanBERT,
    whose p = 0.2 clipped to [1, 10] has mean 3.8). Sampled by inverting the
    truncated distribution's CDF, one uniform per draw.

    Args:
        shape: Shape of the returned tensor.
        p: Success probability of the geometric distribution, in (0, 1].
        min_span: Shortest span.
        max_span: Longest span.
        generator: Source of randomness.

    Returns:
        A long tensor of lengths in ``[min_span, max_span]``.
    """
    n = max_span - min_span + 1
    if p >= 1.0 or n == 1:
        return torch.full(shape, min_span, dtype=torch.long)
    q = 1.0 - p
    u = torch.rand(shape, generator=generator, dtype=torch.float64)
    # inverse CDF of the geometric truncated to {1..n}: F(k) = (1 - q^k) / (1 - q^n)
    k = torch.ceil(torch.log1p(-u * (1.0 - q**n)) / math.log(q))
    return k.clamp(1, n).long() + (min_span - 1)


def truncated_geometric_mean(p: float, min_span: int, max_span: int) -> float:
    """Mean of the distribution :func:`sample_span_lengths` draws from."""
    ks = range(min_span, max_span + 1)
    weights = [(1 - p) ** (k - min_span) for k in ks]
    return sum(k * w for k, w in zip(ks, weights, strict=True)) / sum(weights)


class SpanMasking(MaskingStrategy):
    """Mask contiguous spans of whole words with geometric lengths, until ``ratio`` of the tokens are predicted.

    As in SpanBERT, span lengths are counted in words and drawn from a geometric
    distribution clipped to ``[min_span, max_span]`` (p = 0.2, at most 10 words: mean 3.8
    words), spans start at word boundaries, the budget is counted in tokens, and the
    mask / random / keep decision is made once per span. Vectorized: each row's words
    are tiled by consecutive spans of sampled lengths (one cumulative sum and one
    ``searchsorted``), and spans are taken in random order while the token budget
    lasts, so chosen spans never overlap. A span never crosses a special token, so it
    stays inside one packed document.

    Args:
        geometric_p: Parameter p of the geometric span-length distribution, in (0, 1].
        min_span: Shortest span, in words.
        max_span: Longest span, in words (lengths above are excluded and the rest renormalised).
    """

    name = "span"
    description = "Contiguous whole-word spans, geometric(0.2) lengths clipped to [1, 10]; 80/10/10 per span."
    paper = "Joshi et al., SpanBERT, TACL 2020"

    def __init__(self, geometric_p: float = 0.2, min_span: int = 1, max_span: int = 10, **kwargs) -> None:
        super().__init__(**kwargs)
        if not 0.0 < float(geometric_p) <= 1.0:
            raise ValueError(f"masking.geometric_p must be in (0, 1], got {geometric_p}")
        if int(min_span) < 1 or int(max_span) < int(min_span):
            raise ValueError(f"masking needs 1 <= min_span <= max_span, got min_span={min_span}, max_span={max_span}")
        self.geometric_p = float(geometric_p)
        self.min_span = int(min_span)
        self.max_span = int(max_span)

    def span_unit_ids(self, batch: dict[str, torch.Tensor], generator: torch.Generator) -> torch.Tensor:
        """Tile each row's words with spans; returns unit ids (first position of each span, -1 elsewhere)."""
        ranks = word_ranks(word_unit_ids(batch))
        n_words = int(ranks.max()) + 1 if ranks.numel() else 0
        if n_words <= 0:
            return torch.full_like(ranks, -1)
        # at most one span per word is ever needed to cover a row
        n_spans = -(-n_words // self.min_span)
        lengths = sample_span_lengths((ranks.shape[0], n_spans), self.geometric_p, self.min_span, self.max_span,
                                      generator)
        ends = lengths.cumsum(dim=1)
        span_of_word = torch.searchsorted(ends, ranks.clamp(min=0), right=True)
        span_ids = torch.where(ranks >= 0, span_of_word, torch.full_like(span_of_word, -1))
        # runs of equal span index, broken by special tokens: a span stays within one document
        return run_unit_ids(span_ids)

    def select(self, batch: dict[str, torch.Tensor], ratio: float, generator: torch.Generator) -> Selection:
        return select_units(self.span_unit_ids(batch, generator), candidate_mask(batch), ratio, generator)
