"""Span masking's length rules and whole-unit picking, checked against their formulas and a plain reference loop."""

import itertools

import pytest
import torch

from mlmkit.masking.span import SpanMasking, sample_span_lengths, truncated_geometric_mean
from mlmkit.masking.units import pick_units, select_units, token_budget, unit_selection, word_unit_ids


def span_batch(word_ids):
    """A batch from per-token word ids (-1: a special token)."""
    words = torch.tensor(word_ids)
    return {"input_ids": torch.full(words.shape, 7), "special_tokens_mask": words < 0, "word_ids": words}


def truncated_pmf(p, min_span, max_span, bound):
    weights = [(1 - p) ** (k - min_span) if k <= bound else 0.0 for k in range(min_span, max_span + 1)]
    return [w / sum(weights) for w in weights]


def inverse_cdf(u, p, min_span, bound):
    """The smallest length whose truncated CDF reaches ``u``."""
    total = 0.0
    for length, q in zip(range(min_span, bound + 1), truncated_pmf(p, min_span, bound, bound), strict=True):
        total += q
        if u <= total + 1e-12:
            return length
    return bound


@pytest.mark.parametrize(("p", "min_span", "max_span"), [(0.2, 1, 10), (0.5, 3, 4), (0.7, 2, 5), (0.4, 1, 2)])
def test_span_lengths_invert_the_truncated_cdf(p, min_span, max_span):
    got = sample_span_lengths((3000,), p, min_span, max_span, torch.Generator().manual_seed(5))
    uniforms = torch.rand((3000,), generator=torch.Generator().manual_seed(5), dtype=torch.float64).tolist()
    assert got.dtype == torch.long
    assert got.tolist() == [inverse_cdf(u, p, min_span, max_span) for u in uniforms]
    # one bound per draw: each draw from the distribution conditioned on its bound
    bounds = torch.randint(min_span, max_span + 1, (3000,), generator=torch.Generator().manual_seed(6))
    got = sample_span_lengths((3000,), p, min_span, bounds, torch.Generator().manual_seed(5))
    assert got.tolist() == [inverse_cdf(u, p, min_span, int(b)) for u, b in zip(uniforms, bounds, strict=True)]


def test_span_length_mean_and_defaults():
    assert truncated_geometric_mean(0.5, 2, 4) == pytest.approx((2 * 4 + 3 * 2 + 4 * 1) / 7)
    assert truncated_geometric_mean(0.2, 1, 10) == pytest.approx(sum(k * 0.8 ** (k - 1) for k in range(1, 11))
                                                                 / sum(0.8 ** (k - 1) for k in range(1, 11)))
    s = SpanMasking()
    assert (s.geometric_p, s.min_span, s.max_span) == (0.2, 1, 10)
    assert s.mean_span == pytest.approx(truncated_geometric_mean(0.2, 1, 10))


def test_length_probabilities_are_the_geometric_truncated_at_each_bound():
    s = SpanMasking(geometric_p=0.3, min_span=2, max_span=6)
    bounds = torch.tensor([2, 4, 6, 50])
    probs = s.length_probabilities(bounds)
    assert probs.shape == (4, 5)  # lengths 2..6
    for row, bound in zip(probs.tolist(), bounds.tolist(), strict=True):
        assert row == pytest.approx(truncated_pmf(0.3, 2, 6, bound))


def test_admission_probability_is_left_over_expected_max():
    s = SpanMasking(geometric_p=0.2, min_span=1, max_span=10)
    left = torch.tensor([0.0, 0.5, 2.0, 3.5, 12.0, -1.0], dtype=torch.float64)
    bound = torch.tensor([10, 10, 3, 10, 10, 10])
    got = s.admission_probability(left, bound)
    for i in range(len(left)):
        pmf = truncated_pmf(0.2, 1, 10, int(bound[i]))
        lft = max(float(left[i]), 0.0)
        expected_max = sum(q * max(k, lft) for q, k in zip(pmf, range(1, 11), strict=True))
        assert got[i].item() == pytest.approx(min(1.0, lft / expected_max))
    assert got[0] == 0 and got[-1] == 0 and got[4] == 1.0


def test_first_span_bound_is_the_budget_clipped_to_the_span_range():
    s = SpanMasking(min_span=2, max_span=5)
    bound = s.first_span_bound(torch.tensor([0.3, 2.9, 4.2, 17.0], dtype=torch.float64))
    assert bound.tolist() == [2, 2, 4, 5] and bound.dtype == torch.long


@pytest.mark.parametrize(("p", "min_span", "max_span"), [(0.2, 1, 10), (0.5, 2, 4)])
def test_budget_after_first_keeps_the_expected_total_at_the_budget(p, min_span, max_span):
    s = SpanMasking(geometric_p=p, min_span=min_span, max_span=max_span)
    budgets = torch.tensor([0.4, 1.0, 1.7, 2.5, 3.0, 4.2, 6.3, 9.9, 15.0, 40.0], dtype=torch.float64)
    bound = s.first_span_bound(budgets)
    y = s.budget_after_first(budgets, bound)
    for budget, cap, after in zip(budgets.tolist(), bound.tolist(), y.tolist(), strict=True):
        pmf = truncated_pmf(p, min_span, max_span, cap)
        expected_first = sum(q * k for q, k in zip(pmf, range(min_span, max_span + 1), strict=True))
        if budget <= min_span:  # below the shortest span: nothing after the first
            assert after == 0.0
            continue
        assert after >= 0.0
        total = sum(q * max(k, after) for q, k in zip(pmf, range(min_span, max_span + 1), strict=True))
        assert total == pytest.approx(max(budget, expected_first))


@pytest.mark.parametrize(("p", "min_span", "max_span"), [(0.2, 1, 10), (0.5, 2, 4)])
def test_budget_after_first_solves_its_equation_for_any_bound(p, min_span, max_span):
    # bounds above the budget: the first span may overshoot it, and later spans get less (E[max(X1, y)] = budget)
    s = SpanMasking(geometric_p=p, min_span=min_span, max_span=max_span)
    budgets = torch.linspace(0.5, max_span + 2.0, 23, dtype=torch.float64)
    for cap in range(min_span, max_span + 1):
        y = s.budget_after_first(budgets, torch.full((len(budgets),), cap))
        pmf = truncated_pmf(p, min_span, max_span, cap)
        lengths = range(min_span, max_span + 1)
        expected_first = sum(q * k for q, k in zip(pmf, lengths, strict=True))
        for budget, after in zip(budgets.tolist(), y.tolist(), strict=True):
            if budget <= expected_first:
                assert after == 0.0
            elif budget >= cap:
                assert after == budget
            else:
                assert sum(q * max(k, after) for q, k in zip(pmf, lengths, strict=True)) == pytest.approx(budget)


def test_span_parameters_are_checked():
    for kwargs, message in [
        ({"min_span": 0, "max_span": 5}, "masking needs 1 <= min_span <= max_span, got min_span=0, max_span=5"),
        ({"min_span": 4, "max_span": 3}, "masking needs 1 <= min_span <= max_span, got min_span=4, max_span=3"),
        ({"geometric_p": 0.0}, "masking.geometric_p must be in (0, 1], got 0.0"),
        ({"geometric_p": 1.5}, "masking.geometric_p must be in (0, 1], got 1.5"),
    ]:
        with pytest.raises(ValueError) as info:
            SpanMasking(**kwargs)
        assert str(info.value) == message
    assert SpanMasking(geometric_p=1.0, min_span=3, max_span=3).mean_span == 3.0


@pytest.mark.parametrize("p", [0.2, 1.0])
def test_ratio_one_predicts_every_word_and_nothing_else(p):
    # rows of different lengths, two documents in one row, a row with no special token in front
    # documents split by one special token, and a word on the last position
    batch = span_batch([[-1, 0, 0, 1, 2, 3, -1, -1, 4, 5, 5, 6, -1],
                        [0, 1, 2, 2, 3, -1, -1, -1, -1, -1, -1, -1, -1],
                        [-1, 0, 1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1],
                        [-1, 0, 1, 2, -1, 3, 4, 5, -1, 6, 7, 8, 9]])
    words = batch["word_ids"]
    for seed in range(10):
        selection = SpanMasking(geometric_p=p).select(batch, 1.0, torch.Generator().manual_seed(seed))
        assert torch.equal(selection.predicted, words >= 0)
        # spans are runs of whole words inside one document: a unit's positions share a document
        units = selection.units
        assert torch.equal(units >= 0, words >= 0)
        if p == 1.0:  # spans of one word each: every word is its own unit
            assert torch.equal(units, word_unit_ids(batch))
        for row in range(len(words)):
            for head in units[row].unique().tolist():
                if head >= 0:
                    where = (units[row] == head).nonzero().flatten()
                    assert not (words[row, where[0]:where[-1] + 1] < 0).any()


def test_words_outside_every_span_have_unit_minus_one():
    batch = span_batch([[-1, *range(30), -1]] * 4)
    for seed in range(5):
        selection = SpanMasking().select(batch, 0.3, torch.Generator().manual_seed(seed))
        # 9 words of budget per row: a row overshoots by less than one span (at most 10 words)
        assert selection.predicted.any(dim=1).all() and (selection.predicted.sum(dim=1) < 9 + 10).all()
        assert torch.equal(selection.predicted, selection.units >= 0)
        assert (selection.units[~selection.predicted] == -1).all()


def test_every_row_with_a_word_gets_a_span_unless_the_ratio_is_zero():
    # one word; three words (a budget of 0.45 tokens at 0.15); no word at all
    batch = span_batch([[-1, 0, -1, -1, -1], [-1, 0, 1, 2, -1], [-1, -1, -1, -1, -1]])
    for seed in range(10):
        selection = SpanMasking().select(batch, 0.15, torch.Generator().manual_seed(seed))
        assert selection.predicted.any(dim=1).tolist() == [True, True, False]
        assert not SpanMasking().select(batch, 0.0, torch.Generator().manual_seed(seed)).predicted.any()


def test_span_masking_depends_only_on_its_generator():
    batch = span_batch([[-1, *range(40), -1]] * 3)
    with torch.random.fork_rng():  # the global generator is restored afterwards
        torch.manual_seed(1)
        first = SpanMasking().select(batch, 0.3, torch.Generator().manual_seed(11))
        torch.manual_seed(2)  # the global generator must not matter
        second = SpanMasking().select(batch, 0.3, torch.Generator().manual_seed(11))
    assert torch.equal(first.predicted, second.predicted) and torch.equal(first.units, second.units)


def test_span_masking_of_batches_without_words():
    s = SpanMasking()
    empty = s.select(span_batch([[-1, -1, -1], [-1, -1, -1]]), 0.5, torch.Generator().manual_seed(0))
    assert not empty.predicted.any() and (empty.units == -1).all()
    no_rows = {"input_ids": torch.zeros((0, 4), dtype=torch.long), "word_ids": torch.zeros((0, 4), dtype=torch.long),
               "special_tokens_mask": torch.zeros((0, 4), dtype=torch.bool)}
    assert s.select(no_rows, 0.5, torch.Generator()).predicted.shape == (0, 4)


# ---------------------------------------------------------------------------- pick_units
def reference_pick(unit_ids, budget, generator, weights=None, fill_rounds=0):
    """The documented rule as a loop: keys, prefix within the budget, fill rounds, then the straddler."""
    rows, length = unit_ids.shape
    uniform = torch.rand(unit_ids.shape, generator=generator)
    dither = torch.rand(rows, generator=generator, dtype=torch.float64)
    chosen = torch.zeros_like(unit_ids, dtype=torch.bool)
    for b in range(rows):
        sizes = {j: int((unit_ids[b] == j).sum()) for j in range(length)}
        keys = {}
        for j, size in sizes.items():
            if size == 0:
                continue
            if weights is None:
                keys[j] = float(uniform[b, j])
            elif float(weights[b, j]) > 0:
                keys[j] = float(-torch.log1p(-uniform[b, j]) / weights[b, j].float())
        order = sorted(keys, key=keys.get)
        left, taken, i = float(budget[b]), set(), 0
        while i < len(order) and sizes[order[i]] <= left:
            taken.add(order[i])
            left -= sizes[order[i]]
            i += 1
        for _ in range(fill_rounds):  # in order, the untaken units that fit, while their running sum fits
            running = 0
            for j in order:
                if j in taken or sizes[j] > left:
                    continue
                running += sizes[j]
                if running > left:
                    break
                taken.add(j)
            left = float(budget[b]) - sum(sizes[j] for j in taken)
        rest = [j for j in order if j not in taken]
        if rest and float(dither[b]) * sizes[rest[0]] < left:
            taken.add(rest[0])
        for j in taken:
            chosen[b] |= unit_ids[b] == j
    return chosen


def random_units(rows, length, seed):
    """Rows of units of 1 to 4 positions, some padding at the end, odd rows without a special position in front."""
    g = torch.Generator().manual_seed(seed)
    out = torch.full((rows, length), -1)
    for b in range(rows):
        end = length - 1 - int(torch.randint(0, length // 3, (1,), generator=g))
        at = 1 - b % 2
        while at < end:
            size = min(int(torch.randint(1, 5, (1,), generator=g)), end - at)
            out[b, at:at + size] = at
            at += size
    return out


@pytest.mark.parametrize(("weighted", "fill_rounds"), list(itertools.product([False, True], [0, 1, 3])))
def test_pick_units_follows_the_reference_loop(weighted, fill_rounds):
    for seed in range(6):
        units = random_units(5, 40, seed)
        budget = token_budget(units >= 0, [0.1, 0.15, 0.5, 0.9][seed % 4])
        weights = None
        if weighted:
            weights = torch.rand(units.shape, generator=torch.Generator().manual_seed(100 + seed))
            weights[:, ::5] = 0.0  # some units never chosen
        got = pick_units(units, budget, torch.Generator().manual_seed(seed), weights, fill_rounds)
        expected = reference_pick(units, budget, torch.Generator().manual_seed(seed), weights, fill_rounds)
        assert torch.equal(got, expected), (seed, weighted, fill_rounds)


def test_pick_units_of_an_empty_batch():
    assert pick_units(torch.zeros((0, 6), dtype=torch.long), torch.zeros(0), torch.Generator()).shape == (0, 6)


def test_select_units_decides_corruption_per_chosen_unit():
    units = random_units(4, 30, 7)
    candidates = units >= 0
    selection = select_units(units, candidates, 0.3, torch.Generator().manual_seed(3), fill_rounds=2)
    predicted = pick_units(units, token_budget(candidates, 0.3), torch.Generator().manual_seed(3), None, 2)
    assert torch.equal(selection.predicted, predicted)
    assert torch.equal(selection.units, units.masked_fill(~predicted, -1))
    assert torch.equal(unit_selection(units, predicted).units, selection.units)
    assert token_budget(candidates, 0.3).tolist() == pytest.approx((candidates.sum(1) * 0.3).tolist())
    assert token_budget(candidates, 0.3).dtype == torch.float64
    default = select_units(units, candidates, 0.3, torch.Generator().manual_seed(3))  # no fill rounds
    assert torch.equal(default.predicted, pick_units(units, token_budget(candidates, 0.3),
                                                     torch.Generator().manual_seed(3)))
    assert not torch.equal(default.predicted, selection.predicted)
    weights = torch.rand(units.shape, generator=torch.Generator().manual_seed(4))
    weighted = select_units(units, candidates, 0.3, torch.Generator().manual_seed(3), weights=weights)
    assert torch.equal(weighted.predicted, pick_units(units, token_budget(candidates, 0.3),
                                                      torch.Generator().manual_seed(3), weights))
    assert not torch.equal(weighted.predicted, default.predicted)


def test_word_unit_ids_are_first_positions_of_words():
    batch = span_batch([[-1, 0, 0, 1, 2, 2, 2, -1, 3, -1], [5, 5, 6, -1, -1, -1, -1, -1, -1, -1]])
    assert word_unit_ids(batch).tolist() == [[-1, 1, 1, 3, 4, 4, 4, -1, 8, -1], [0, 0, 2, -1, -1, -1, -1, -1, -1, -1]]
