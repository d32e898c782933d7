"""Vectorized helpers for strategies that predict whole units (words, spans, n-grams).

A *unit* is a set of positions of one row that are predicted together and share one
corruption decision. Units are described by a ``(B, L)`` long tensor of unit ids:
positions of the same unit hold the same id, an id lies in ``[0, L)`` (by convention
the unit's first position, which is what :func:`~mlmkit.masking.base.run_unit_ids`
gives), and -1 marks positions that belong to no unit (special and padding tokens).

:func:`pick_units` is the shared budget rule: visit the units of each row in random
order (uniform, or weighted without replacement) and take them while the running
token count stays within the row's token budget. Everything is a handful of sorts,
gathers and cumulative sums over ``(B, L)`` tensors, so time is ``O(B L log L)`` and
memory ``O(B L)``, whatever the number of units.
"""

from __future__ import annotations

import torch

from mlmkit.masking.base import Selection, run_unit_ids


def candidate_mask(batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Positions that may be predicted: every real token that is not special (``(B, L)`` bool)."""
    return ~batch["special_tokens_mask"]


def word_unit_ids(batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Unit ids of whole words: the first position of each word, -1 on special and padding tokens.

    Words come from the batch's ``word_ids`` (the fast tokenizer's word index, made
    unique per document when packing), so this works for WordPiece, byte-level BPE
    and Unigram alike.
    """
    return run_unit_ids(batch["word_ids"].masked_fill(batch["special_tokens_mask"], -1))


def token_budget(candidates: torch.Tensor, ratio: float) -> torch.Tensor:
    """Per-row token budget ``ratio * n_candidates`` as a float ``(B,)`` tensor."""
    return candidates.sum(dim=1).double() * float(ratio)


def pick_units(
    unit_ids: torch.Tensor,
    budget: torch.Tensor,
    generator: torch.Generator,
    weights: torch.Tensor | None = None,
    fill_rounds: int = 0,
) -> torch.Tensor:
    """Choose whole units in random order until each row's token budget is met.

    Units are ranked by a random key: uniform when ``weights`` is None, otherwise the
    exponential race ``-log(U) / w`` of Efraimidis and Spirakis (2006), which orders
    units as sampling without replacement with probability proportional to ``w``
    would. Units are then taken in that order while the running token count stays
    within the budget; the next unit, which straddles the budget, is taken with
    probability ``left / size`` (one uniform draw per row), so the expected number of
    predicted tokens equals the budget exactly and a row never overshoots by more than
    one unit. Which units are chosen does not depend on their size (except for the
    straddler), so a strategy's unit-length distribution survives the budget; the price
    is that a row whose first unit is larger than its whole budget may get no
    prediction at all (probability ``1 - budget / size``), which matters only when
    units are long compared with the budget (long spans in short blocks).

    Args:
        unit_ids: ``(B, L)`` long unit ids in ``[0, L)``, -1 where nothing may be predicted.
        budget: ``(B,)`` float number of tokens to predict per row (e.g. :func:`token_budget`).
        generator: Source of randomness.
        weights: Optional ``(B, L)`` float; ``weights[b, j]`` is the weight of the unit
            whose id is ``j``. Units of weight <= 0 are never chosen.
        fill_rounds: Extra rounds that, after the first prefix, also take later units that
            still fit in what is left (as a greedy "skip what does not fit" would). Rows
            land closer to their budget, at the cost of favouring short units; 0 keeps
            the unit-length distribution intact.

    Returns:
        ``(B, L)`` bool, True at every position of every chosen unit.
    """
    valid = unit_ids >= 0
    safe_ids = unit_ids.clamp(min=0)
    sizes = torch.zeros_like(unit_ids).scatter_add_(1, safe_ids, valid.long())
    if weights is None:
        keys = torch.rand(unit_ids.shape, generator=generator)
    else:
        sizes = sizes.masked_fill_(weights <= 0, 0)
        keys = torch.rand(unit_ids.shape, generator=generator).neg_().log1p_().neg_()  # -log(1 - U) ~ Exp(1)
        keys = keys.div_(weights.to(torch.float32).clamp(min=torch.finfo(torch.float32).tiny))
    keys = keys.masked_fill_(sizes == 0, float("inf"))  # positions that are no unit's id sort last
    budget = budget.double()
    length = unit_ids.shape[1]
    # Units have at least one token, so the fitting prefix holds at most floor(budget) units and
    # the straddler is next: the smallest floor(budget) + 1 keys suffice, a partial sort (topk),
    # much cheaper than sorting the whole row when the ratio is small.
    needed = int(budget.max().item()) + 1 if budget.numel() else 1
    if fill_rounds == 0 and 2 * needed < length:
        order = keys.topk(needed, dim=1, largest=False, sorted=True).indices
    else:
        order = keys.argsort(dim=1)
    # from here on tensors are (B, needed): small
    sorted_sizes = sizes.gather(1, order)
    is_unit = sorted_sizes > 0
    # the longest prefix of the order that fits in the budget
    take = is_unit & (sorted_sizes.cumsum(dim=1) <= budget.unsqueeze(1))
    remaining = budget - (sorted_sizes * take).sum(dim=1)
    for _ in range(fill_rounds):
        # take, in order, the units that still fit, while the running count stays within what is left
        fits = ~take & is_unit & (sorted_sizes <= remaining.unsqueeze(1))
        new = fits & ((sorted_sizes * fits).cumsum(dim=1) <= remaining.unsqueeze(1))
        take |= new
        remaining = remaining - (sorted_sizes * new).sum(dim=1)
    # the next unit in order straddles what is left: take it with probability left / size (unbiased)
    untaken = ~take & is_unit
    straddler = untaken & (untaken.cumsum(dim=1) == 1)
    straddler_size = (sorted_sizes * straddler).sum(dim=1)
    dither = torch.rand(remaining.shape, generator=generator, dtype=torch.float64)
    take |= straddler & (dither * straddler_size < remaining).unsqueeze(1)
    chosen = torch.zeros_like(valid).scatter_(1, order, take)
    return chosen.gather(1, safe_ids).logical_and_(valid)


def unit_selection(unit_ids: torch.Tensor, predicted: torch.Tensor) -> Selection:
    """A :class:`Selection` whose corruption is decided once per chosen unit."""
    return Selection(predicted=predicted, units=unit_ids.masked_fill(~predicted, -1))


def select_units(
    unit_ids: torch.Tensor,
    candidates: torch.Tensor,
    ratio: float,
    generator: torch.Generator,
    weights: torch.Tensor | None = None,
    fill_rounds: int = 0,
) -> Selection:
    """Pick whole units until ``ratio`` of each row's candidate tokens are predicted.

    The one-call form of :func:`token_budget` + :func:`pick_units` + :func:`unit_selection`.
    """
    predicted = pick_units(unit_ids, token_budget(candidates, ratio), generator, weights, fill_rounds)
    return unit_selection(unit_ids, predicted)
