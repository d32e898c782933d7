"""pos_weighted against the released PTW code (Yang, Zhang and Zhao, ACL 2023; mutonix/better_masking).

The weights are checked against the formula of ``data_utils.py`` (``BertDataCollator``)
written out independently here, on a fixed per-class loss profile; masking is checked on
tagged tweets packed as in training.
"""

from __future__ import annotations

import math
import statistics

import pytest
import torch
from fidelity_data import layout_rows, load_minilm_tokenizer, load_tweets, masked_batches, per_unit

from mlmkit.masking.pos_weighted import POS_INDEX, RELEASED_CLASSES, UPOS_TAGS, PosWeightedMasking
from mlmkit.masking.units import word_unit_ids

#: a fixed per-class loss profile (nats): content classes hard, function classes easy
LOSS_PROFILE = {"ADJ": 5.1, "ADP": 1.9, "ADV": 4.2, "AUX": 1.7, "CCONJ": 1.4, "DET": 1.2, "INTJ": 4.6, "NOUN": 5.8,
                "NUM": 4.9, "PART": 1.6, "PRON": 2.0, "PROPN": 6.3, "PUNCT": 1.5, "SCONJ": 2.4, "SYM": 3.9,
                "VERB": 4.7, "X": 6.0}
FORMER = {"sampling": "proportional", "temperature": 1.0, "statistics": "seen"}


def released_weight(tag: str) -> float:
    """``sigmoid((score - mean) / std * 2)`` with torch's default (unbiased) std over the 17 classes."""
    scores = list(LOSS_PROFILE.values())
    z = (LOSS_PROFILE[tag] - statistics.fmean(scores)) / statistics.stdev(scores)
    return 1.0 / (1.0 + math.exp(-2.0 * z))


def loaded(**options) -> PosWeightedMasking:
    strategy = PosWeightedMasking(**options)
    strategy.load_state_dict({"classes": {t: {"loss": v, "updates": 100} for t, v in LOSS_PROFILE.items()}})
    return strategy


def test_weights_equal_the_released_formula():
    assert len(LOSS_PROFILE) == RELEASED_CLASSES == 17
    weights = loaded().class_weights()
    for tag in LOSS_PROFILE:
        assert weights[POS_INDEX[tag]].item() == pytest.approx(released_weight(tag), abs=1e-12)
    former = loaded(**FORMER).class_weights()
    # on this profile: NOUN / DET 0.926 / 0.077 released, 0.786 / 0.217 with the former options
    assert weights[POS_INDEX["NOUN"]].item() == pytest.approx(0.926, abs=1e-3)
    assert weights[POS_INDEX["DET"]].item() == pytest.approx(0.077, abs=1e-3)
    assert former[POS_INDEX["NOUN"]].item() == pytest.approx(0.786, abs=1e-3)
    assert former[POS_INDEX["DET"]].item() == pytest.approx(0.217, abs=1e-3)


def test_masking_tagged_tweets_follows_the_weights():
    tweets, minilm_tokenizer = load_tweets(), load_minilm_tokenizer()
    strategy = loaded()
    strategy.bind(minilm_tokenizer)
    rows = layout_rows(tweets[:600], minilm_tokenizer, strategy, "packed")
    weights = strategy.class_weights()
    predicted_words = torch.zeros(len(UPOS_TAGS))
    corpus_words = torch.zeros(len(UPOS_TAGS))
    predicted = maskable = 0
    for batch, selection, _ in masked_batches(rows, minilm_tokenizer, strategy, seeds=2):
        words = word_unit_ids(batch)
        lo, hi = per_unit(selection.predicted, words, words >= 0)
        assert torch.equal(lo, hi)  # whole words
        starts = (words == torch.arange(words.shape[1])) & (words >= 0)
        pos = batch["pos_ids"]
        corpus_words += torch.bincount(pos[starts], minlength=len(UPOS_TAGS))
        predicted_words += torch.bincount(pos[starts & selection.predicted], minlength=len(UPOS_TAGS))
        predicted += int(selection.predicted.sum())
        maskable += int((~batch["special_tokens_mask"]).sum())
    # the budget max(1, round(0.15 x tokens)) is met: whole words rarely leave more than one token unfilled
    assert predicted / maskable == pytest.approx(0.15, abs=0.01)
    # a class's share among predicted words over its share in the corpus grows with its weight
    lift = predicted_words / predicted_words.sum() / (corpus_words / corpus_words.sum())
    noun, det = POS_INDEX["NOUN"], POS_INDEX["DET"]
    assert weights[noun] > weights[det] and lift[noun] > 2 * lift[det]
