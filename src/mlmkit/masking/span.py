"""SpanBERT's span masking (Joshi et al., TACL 2020)."""

from __future__ import annotations

import math

import torch

from mlmkit.masking.base import MaskingStrategy, Selection
from mlmkit.masking.units import candidate_mask, select_units, word_unit_ids


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
    u = torch.rand(shape, generator=generator)
    # inverse CDF of the geometric truncated to {1..n}: F(k) = (1 - q^k) / (1 - q^n)
    k = u.mul_(-(1.0 - q**n)).log1p_().div_(math.log(q)).ceil_()
    return k.clamp_(1, n).long().add_(min_span - 1)


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
    are tiled by consecutive spans of sampled lengths (a cumulative sum, a scatter and a
    running maximum), and spans are taken in random order while the token budget
    lasts, so chosen spans never overlap. A span never crosses a special token, so it
    stays inside one packed document. Chosen spans average a little under the
    distribution's mean (about 3.7 words in 512-token blocks): the span that straddles a
    row's budget is kept with probability ``left / size``, which favours short ones (the
    price of an exact expected ratio; SpanBERT cuts that last span at the budget instead).
    In short blocks a row whose first span exceeds its whole budget may get no span.

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
        self.mean_span = truncated_geometric_mean(self.geometric_p, self.min_span, self.max_span)

    def span_unit_ids(self, batch: dict[str, torch.Tensor], generator: torch.Generator) -> torch.Tensor:
        """Tile each row's words with spans; returns unit ids (first position of each span, -1 elsewhere)."""
        words = word_unit_ids(batch)
        invalid = words < 0
        positions = torch.arange(words.shape[1])
        word_start = words == positions  # a word's unit id is its first position
        ranks = word_start.cumsum(dim=1) - 1  # ordinal of each token's word in its row
        n_words = int(ranks[:, -1].max()) + 1 if ranks.numel() else 0
        if n_words <= 0:
            return words
        # Enough spans to cover the longest row almost surely (mean length x 1.3 + 16 spare draws);
        # in the rare row they do not cover, draw the worst-case number (one span per shortest length).
        batch_size = words.shape[0]
        n_spans = min(int(n_words / self.mean_span * 1.3) + 16, -(-n_words // self.min_span))
        lengths = sample_span_lengths((batch_size, n_spans), self.geometric_p, self.min_span, self.max_span,
                                      generator)
        ends = lengths.cumsum(dim=1)
        if bool((ends[:, -1] < n_words).any()):
            lengths = sample_span_lengths((batch_size, -(-n_words // self.min_span)), self.geometric_p,
                                          self.min_span, self.max_span, generator)
            ends = lengths.cumsum(dim=1)
        # word ranks at which a span starts: 0 and every running end (ends past the row fall off the table)
        starts_at_rank = torch.zeros((batch_size, n_words + 1), dtype=torch.bool)
        starts_at_rank[:, 0] = True
        starts_at_rank.scatter_(1, ends.clamp_(max=n_words), True)
        span_start = word_start & starts_at_rank.gather(1, ranks.clamp_(min=0))
        # the first word after a special token also starts a span: spans stay within one packed document
        after_special = torch.nn.functional.pad(invalid[:, :-1], (1, 0), value=True) & ~invalid
        first = ((span_start | after_special) * positions).cummax(dim=1).values
        return first.masked_fill_(invalid, -1)

    def select(self, batch: dict[str, torch.Tensor], ratio: float, generator: torch.Generator) -> Selection:
        return select_units(self.span_unit_ids(batch, generator), candidate_mask(batch), ratio, generator)
