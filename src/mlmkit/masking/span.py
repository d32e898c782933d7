"""SpanBERT's span masking (Joshi et al., TACL 2020)."""

from __future__ import annotations

import math

import torch

from mlmkit.masking.base import Selection, WordMaskingStrategy
from mlmkit.masking.units import candidate_mask, token_budget, unit_selection, word_unit_ids


def sample_span_lengths(
    shape: tuple[int, ...], p: float, min_span: int, max_span: int | torch.Tensor, generator: torch.Generator
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
        max_span: Longest span: an int, or a long tensor of ``shape`` with one bound per draw
            (each >= ``min_span``), which draws from the distribution conditioned on that bound.
        generator: Source of randomness.

    Returns:
        A long tensor of lengths in ``[min_span, max_span]``.
    """
    n = torch.as_tensor(max_span, dtype=torch.float64) - (min_span - 1)
    if p >= 1.0 or bool((n <= 1).all()):
        return torch.full(shape, min_span, dtype=torch.long)
    q = 1.0 - p
    u = torch.rand(shape, generator=generator, dtype=torch.float64)
    # inverse CDF of the geometric truncated to {1..n}: F(k) = (1 - q^k) / (1 - q^n)
    k = u.mul_(torch.pow(q, n).sub_(1.0)).log1p_().div_(math.log(q)).ceil_()
    return torch.minimum(k.clamp_(min=1), n.expand(shape)).long().add_(min_span - 1)


def truncated_geometric_mean(p: float, min_span: int, max_span: int) -> float:
    """Mean of the distribution :func:`sample_span_lengths` draws from."""
    ks = range(min_span, max_span + 1)
    weights = [(1 - p) ** (k - min_span) for k in ks]
    return sum(k * w for k, w in zip(ks, weights, strict=True)) / sum(weights)


class SpanMasking(WordMaskingStrategy):
    """Mask contiguous spans of whole words with geometric lengths, until ``ratio`` of the tokens are predicted.

    As in SpanBERT, span lengths are counted in words and drawn from a geometric
    distribution clipped to ``[min_span, max_span]`` (p = 0.2, at most 10 words: mean 3.8
    words), spans start at word boundaries, and the mask / random / keep decision is made
    once per span.

    How spans are placed (a span is never cut, so masked spans keep the drawn lengths):

    * Each span's length is drawn first, then its start, uniformly among the words where
      the whole span fits: inside one packed document, on words no earlier span took.
      When no place fits the drawn length SpanBERT draws again; drawing from the
      distribution restricted to the row's longest free stretch is the same in one draw
      (it matters only in rows crowded by earlier spans or made of very short documents).
    * The budget is ``ratio`` x the row's words (``ratio`` x its tokens, converted at the
      row's tokens per word). SpanBERT cuts the last span at its budget, which shortens
      spans; here, before each span is drawn, the budget decides whether to draw one more:
      with ``left`` words of budget left, with probability ``left / E[max(X, left)]`` (``X``
      the length of the span about to be drawn). The decision never sees the span it
      admits, so it favours neither short nor long spans, the span drawn is kept whole,
      and the expected number of predicted words is exactly the budget. A row overshoots
      by less than one span; in tokens the realized ratio is ``ratio`` up to how much
      longer or shorter the masked words are than the row's average word.
    * Every row with a maskable word gets at least one span (when ``ratio > 0``). The
      first span is drawn from lengths up to the row's budget (at least ``min_span``),
      and the budget of the later ones is lowered so that the expected total stays the
      budget. So spans are shorter than the paper's only in rows whose whole budget is
      under ``max_span`` words (one tweet per row, at 0.15 about 3 words), where SpanBERT
      would cut the span and the previous version of this strategy left 19% of rows
      with no prediction.

    Spans are placed in rounds, one span per row per round, each a few ``(batch, words)``
    tensor operations; a 512-token row at ratio 0.15 needs about 15 rounds.

    Args:
        geometric_p: Parameter p of the geometric span-length distribution, in (0, 1].
        min_span: Shortest span, in words.
        max_span: Longest span, in words (lengths above are excluded and the rest renormalised).
        language: ISO 639 code of the corpus or ``auto``; scripts without spaces get segmented
            words (see :class:`~mlmkit.masking.base.WordMaskingStrategy`).
        segmenter: Word segmenter (``auto``, ``tokenizer``, ``jieba``, ``spacy`` or ``module:function``).
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
        lengths = torch.arange(self.min_span, self.max_span + 1, dtype=torch.float64)
        probs = torch.pow(1.0 - self.geometric_p, lengths - self.min_span)
        self._lengths, self._probs = lengths, probs / probs.sum()

    def length_probabilities(self, bound: torch.Tensor) -> torch.Tensor:
        """``(B, K)`` probabilities of the lengths ``min_span..max_span`` for draws capped at ``bound`` (``(B,)``)."""
        probs = self._probs * (self._lengths.unsqueeze(0) <= bound.unsqueeze(1))
        return probs / probs.sum(dim=1, keepdim=True).clamp(min=1e-300)

    def admission_probability(self, left: torch.Tensor, bound: torch.Tensor) -> torch.Tensor:
        """Probability of drawing one more span with ``left`` words of budget: ``left / E[max(X, left)]``.

        ``X`` is the length in words of the span that would be drawn (capped at ``bound``, the
        longest free stretch). With this rule the expected number of words still to come is
        exactly ``left`` for every ``left > 0`` (whatever span is drawn, it is kept whole).
        """
        left = left.clamp(min=0.0)
        expected = (torch.maximum(self._lengths.unsqueeze(0), left.unsqueeze(1)) * self.length_probabilities(bound))
        return (left / expected.sum(dim=1).clamp(min=1e-12)).clamp_(max=1.0)

    def first_span_bound(self, budget: torch.Tensor) -> torch.Tensor:
        """Longest first span of a row with ``budget`` words: ``max_span``, or the budget where it is smaller."""
        return budget.floor().clamp(min=self.min_span, max=self.max_span).long()

    def budget_after_first(self, budget: torch.Tensor, bound: torch.Tensor) -> torch.Tensor:
        """The budget ``y`` that spans after the first are drawn against, in words: ``E[max(X1, y)] = budget``.

        The first span ``X1`` (lengths up to ``bound``) is always drawn, and the rule of
        :meth:`admission_probability` then brings the expected total to ``E[max(X1, y)]``;
        solving for ``y`` keeps it at ``budget``. Where ``budget`` is below ``E[X1]`` (a row
        smaller than a span of ``min_span`` words) no ``y`` does, and ``y`` is 0.
        """
        lengths = self._lengths
        probs = self.length_probabilities(bound)
        # E[max(X1, y)] is piecewise linear in y, with slope P(X1 <= k) between span lengths k and k + 1
        at_lengths = probs @ torch.maximum(lengths.unsqueeze(0), lengths.unsqueeze(1))  # [b, j] = E[max(X1, k_j)]
        segment = torch.searchsorted(at_lengths, budget.unsqueeze(1), right=True).sub_(1).clamp_(0, len(lengths) - 1)
        slope = probs.cumsum(dim=1).gather(1, segment).squeeze(1).clamp(min=1e-12)
        segment = segment.squeeze(1)
        y = lengths[segment] + (budget - at_lengths.gather(1, segment.unsqueeze(1)).squeeze(1)) / slope
        y = torch.where(budget >= bound.double(), budget, y)
        return torch.where(budget <= at_lengths[:, 0], 0.0, y)

    def select(self, batch: dict[str, torch.Tensor], ratio: float, generator: torch.Generator) -> Selection:
        words = word_unit_ids(batch)  # first position of each token's word, -1 on special and padding tokens
        candidates = candidate_mask(batch)
        batch_size, length = words.shape
        valid = words >= 0
        positions = torch.arange(length)
        word_start = valid & (words == positions)
        n_words = word_start.sum(dim=1)
        n_cols = int(n_words.max()) if n_words.numel() else 0
        if n_cols == 0:
            return unit_selection(words, torch.zeros_like(valid))
        # word-level view of each row: rank r = r-th word; a dump column n_cols takes the other positions
        rank = (word_start.cumsum(dim=1) - 1).masked_fill_(~valid, n_cols)
        first_token = torch.zeros((batch_size, n_cols + 1), dtype=torch.long)
        first_token.scatter_(1, torch.where(word_start, rank, n_cols), positions.repeat(batch_size, 1))
        first_token = first_token[:, :n_cols]
        # a word right after a special token starts a document: spans stay within one packed document
        after_special = torch.nn.functional.pad(~valid[:, :-1], (1, 0), value=True)
        new_document = after_special.gather(1, first_token)
        in_row = torch.arange(n_cols).unsqueeze(0) < n_words.unsqueeze(1)
        # the token budget in words, at the row's tokens per word; the first span, always drawn, fits in it
        tokens_budget = token_budget(candidates, ratio)
        budget = tokens_budget * n_words / valid.sum(dim=1).clamp(min=1)
        bound = self.first_span_bound(budget)
        budget = self.budget_after_first(budget, bound)
        span_head = torch.full((batch_size, n_cols), -1, dtype=torch.long)  # first token of each word's span
        predicted = torch.zeros(batch_size, dtype=torch.float64)
        active = (n_words > 0) & (tokens_budget > 0)  # at least one span for every row with a word
        column = torch.arange(n_cols)
        boundary = torch.arange(n_cols + 1).expand(batch_size, n_cols + 1)
        # run[r]: how many free words of one document follow from word r on (0 once taken); computed once,
        # then updated where each new span cuts a run short
        free = in_row
        blocked = torch.nn.functional.pad(~free | new_document, (0, 1), value=True)
        next_blocked = torch.where(blocked, boundary, n_cols).flip(1).cummin(dim=1).values.flip(1)
        run = torch.where(free, next_blocked[:, 1:] - column, 0)
        longest = run.max(dim=1).values
        while True:
            active &= longest >= self.min_span
            if not bool(active.any()):
                break
            span = sample_span_lengths((batch_size,), self.geometric_p, self.min_span,
                                       torch.minimum(longest, bound).clamp_(min=self.min_span), generator)
            bound = torch.full_like(bound, self.max_span)
            keys = torch.rand((batch_size, n_cols), generator=generator).masked_fill_(run < span.unsqueeze(1), -1.0)
            start = keys.argmax(dim=1).unsqueeze(1)
            end = start + span.unsqueeze(1)
            after_start = column >= start
            chosen = active.unsqueeze(1) & after_start & (column < end)
            # free words before the span whose run reached into it now stop at its start
            cut = active.unsqueeze(1) & ~after_start & (column + run > start)
            run = torch.where(cut, start - column, run).masked_fill_(chosen, 0)
            span_head = torch.where(chosen, first_token.gather(1, start), span_head)
            predicted += torch.where(active, span, 0)
            longest = run.max(dim=1).values
            admit = self.admission_probability(budget - predicted, longest.clamp(min=self.min_span, max=self.max_span))
            active &= torch.rand(batch_size, generator=generator, dtype=torch.float64) < admit
        # back to tokens
        token_rank = rank.clamp(max=n_cols - 1)
        units = span_head.gather(1, token_rank).masked_fill_(~valid, -1)
        return unit_selection(units, units >= 0)
