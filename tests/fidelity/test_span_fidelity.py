"""span against SpanBERT (Joshi et al., TACL 2020): geometric(0.2) span lengths clipped to 10 words, 15% budget.

Measured on real text; every tolerance is a number of standard errors of the statistic
over the draws made here (4, so a correct strategy fails about once in 16,000 runs).
"""

from __future__ import annotations

import math

import pytest
import torch
from fidelity_data import layout_rows, load_minilm_tokenizer, load_tweets, masked_batches, per_unit
from scipy import stats

from mlmkit.masking.preview import corruption_kinds, unit_lengths
from mlmkit.masking.span import SpanMasking
from mlmkit.masking.units import word_unit_ids

Z = 4.0


def clipped_geometric(p: float = 0.2, longest: int = 10) -> list[float]:
    """SpanBERT's span-length distribution over 1..longest words."""
    weights = [p * (1 - p) ** (k - 1) for k in range(1, longest + 1)]
    return [w / sum(weights) for w in weights]


def measure(tweets, tokenizer, layout: str, n_texts: int, seeds: int):
    strategy = SpanMasking()
    strategy.bind(tokenizer)
    rows = layout_rows(tweets[:n_texts], tokenizer, strategy, layout)
    out = {"span_words": [], "row_word_ratio": [], "predicted": 0, "maskable": 0, "empty_rows": 0, "rows": 0,
           "kinds": torch.zeros(4, dtype=torch.long), "split_words": 0, "mixed_units": 0, "crossing": 0}
    for batch, selection, corrupted in masked_batches(rows, tokenizer, strategy, seeds=seeds):
        predicted, maskable = selection.predicted, ~batch["special_tokens_mask"]
        _, words = unit_lengths(selection, batch["word_ids"])
        out["span_words"].append(words)
        words_ids = word_unit_ids(batch)
        starts = (words_ids == torch.arange(words_ids.shape[1])) & maskable
        out["row_word_ratio"].append((predicted & starts).sum(1) / starts.sum(1).clamp(min=1))
        out["predicted"] += int(predicted.sum())
        out["maskable"] += int(maskable.sum())
        out["empty_rows"] += int((maskable.any(1) & ~predicted.any(1)).sum())
        out["rows"] += int(maskable.any(1).sum())
        # whole words: a word is predicted whole or not at all
        lo, hi = per_unit(predicted, words_ids, words_ids >= 0)
        out["split_words"] += int((lo != hi).sum())
        # one corruption per span, counted once per span
        kinds = corruption_kinds(batch["input_ids"], corrupted, predicted, strategy.mask_token_id)
        lo, hi = per_unit(kinds, selection.units, predicted)
        out["mixed_units"] += int((lo != hi).sum())
        out["kinds"] += torch.bincount(lo, minlength=4)
        # a span never crosses a special token: its positions are contiguous, one document
        document = torch.cumsum(batch["special_tokens_mask"].long(), dim=1)
        lo, hi = per_unit(document, selection.units, predicted)
        out["crossing"] += int((lo != hi).sum())
    out["span_words"] = torch.cat(out["span_words"]).double()
    out["row_word_ratio"] = torch.cat(out["row_word_ratio"]).double()
    return out


@pytest.fixture(scope="module")
def long_documents():
    tweets, minilm_tokenizer = load_tweets(), load_minilm_tokenizer()
    return measure(tweets, minilm_tokenizer, "long", 4000, seeds=3)


@pytest.fixture(scope="module")
def packed_tweets():
    tweets, minilm_tokenizer = load_tweets(), load_minilm_tokenizer()
    return measure(tweets, minilm_tokenizer, "packed", 3000, seeds=1)


@pytest.fixture(scope="module")
def single_tweets():
    tweets, minilm_tokenizer = load_tweets(), load_minilm_tokenizer()
    return measure(tweets, minilm_tokenizer, "single", 1000, seeds=1)


def test_span_lengths_are_the_clipped_geometric_on_long_documents(long_documents):
    lengths = long_documents["span_words"]
    n = len(lengths)
    assert n > 5000
    probs = clipped_geometric()
    mean = sum((k + 1) * p for k, p in enumerate(probs))
    sd = math.sqrt(sum((k + 1 - mean) ** 2 * p for k, p in enumerate(probs)))
    assert mean == pytest.approx(3.797, abs=1e-3)  # SpanBERT: "mean 3.8"
    assert abs(lengths.mean().item() - mean) < min(Z * sd / math.sqrt(n), 0.15)
    observed = torch.bincount(lengths.long(), minlength=11)[1:11]
    assert int(observed.sum()) == n  # nothing outside 1..10
    # chi-square against the clipped geometric (expected counts are all above 5 here)
    assert stats.chisquare(observed.numpy(), [p * n for p in probs]).pvalue > 1e-4


def test_span_lengths_survive_packing_of_short_documents(packed_tweets):
    lengths = packed_tweets["span_words"]
    probs = clipped_geometric()
    mean = sum((k + 1) * p for k, p in enumerate(probs))
    sd = math.sqrt(sum((k + 1 - mean) ** 2 * p for k, p in enumerate(probs)))
    assert abs(lengths.mean().item() - mean) < min(Z * sd / math.sqrt(len(lengths)), 0.15)


@pytest.mark.parametrize("layout", ["long_documents", "packed_tweets", "single_tweets"])
def test_every_row_is_masked_by_whole_spans(layout, request):
    measured = request.getfixturevalue(layout)
    assert measured["empty_rows"] == 0  # every row with an ordinary token gets a prediction
    assert measured["split_words"] == 0 and measured["mixed_units"] == 0 and measured["crossing"] == 0


@pytest.mark.parametrize("layout", ["long_documents", "packed_tweets"])
def test_realized_ratio_is_the_budget(layout, request):
    measured = request.getfixturevalue(layout)
    # exact in expectation in words: the per-row share of predicted words averages 0.15
    per_row = measured["row_word_ratio"]
    standard_error = per_row.std().item() / math.sqrt(len(per_row))
    assert abs(per_row.mean().item() - 0.15) < Z * standard_error
    # in tokens it drifts by how much longer or shorter masked words are than average (documented)
    assert measured["predicted"] / measured["maskable"] == pytest.approx(0.15, abs=0.01)


def test_corruption_is_80_10_10_per_span(long_documents):
    counts = long_documents["kinds"][1:].numpy()  # mask, random, kept: one per span
    n = counts.sum()
    assert stats.chisquare(counts, [0.8 * n, 0.1 * n, 0.1 * n]).pvalue > 1e-4
