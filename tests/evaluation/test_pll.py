"""PLL against a naive loop that masks one token per forward pass."""

from __future__ import annotations

import math

import pytest
import torch

from conftest import build_tiny_bert
from mlmkit.evaluation.pll import corpus_pseudo_perplexity, pll_of_ids, pseudo_log_likelihood

TEXTS = ["the cat likes the morning train.", "a dog waits for rainy afternoons today.",
         "internationalization", "self-driving cars admires unbelievably tasty pancakes !"]


def naive_pll(model, tokenizer, text):
    ids = tokenizer(text)["input_ids"]
    special = tokenizer.get_special_tokens_mask(ids, already_has_special_tokens=True)
    total, values = 0.0, []
    model.eval()
    with torch.no_grad():
        for position, is_special in enumerate(special):
            if is_special:
                continue
            masked = list(ids)
            masked[position] = tokenizer.mask_token_id
            logits = model(input_ids=torch.tensor([masked])).logits[0, position]
            value = torch.log_softmax(logits.double(), dim=-1)[ids[position]].item()
            values.append(value)
            total += value
    return total, values


@pytest.mark.parametrize("batch_size", [1, 5, 64])
def test_pll_equals_one_mask_at_a_time(any_tokenizer, batch_size):
    model = build_tiny_bert(any_tokenizer, seed=3)
    results = pseudo_log_likelihood(model, any_tokenizer, TEXTS, batch_size=batch_size)
    for text, result in zip(TEXTS, results, strict=True):
        total, values = naive_pll(model, any_tokenizer, text)
        assert result.text == text
        assert result.num_tokens == len(values)
        assert result.pll == pytest.approx(total, abs=1e-5)
        assert result.token_log_probs == pytest.approx(values, abs=1e-5)
        assert result.pseudo_perplexity == pytest.approx(math.exp(-total / len(values)), rel=1e-5)


def test_pll_without_a_separable_head_matches(wordpiece_tokenizer, monkeypatch):
    model = build_tiny_bert(wordpiece_tokenizer, seed=1)
    split = pseudo_log_likelihood(model, wordpiece_tokenizer, TEXTS[:2])
    monkeypatch.setattr("mlmkit.evaluation.pll._mlm_parts", lambda model: None)
    full = pseudo_log_likelihood(model, wordpiece_tokenizer, TEXTS[:2])
    for a, b in zip(split, full, strict=True):
        assert a.pll == pytest.approx(b.pll, abs=1e-5)


def test_scored_flags_and_corpus_pppl(wordpiece_tokenizer):
    model = build_tiny_bert(wordpiece_tokenizer, seed=2)
    ids = wordpiece_tokenizer(TEXTS[0])["input_ids"]
    flags = [False] * len(ids)
    flags[2] = True
    [one] = pll_of_ids(model, [ids], wordpiece_tokenizer.mask_token_id, [flags])
    assert one.num_tokens == 1 and one.token_ids == [ids[2]]
    [none] = pll_of_ids(model, [ids], wordpiece_tokenizer.mask_token_id, [[False] * len(ids)])
    assert none.num_tokens == 0 and math.isnan(none.pseudo_perplexity)
    results = pseudo_log_likelihood(model, wordpiece_tokenizer, TEXTS)
    expected = math.exp(-sum(r.pll for r in results) / sum(r.num_tokens for r in results))
    assert corpus_pseudo_perplexity(results) == pytest.approx(expected, rel=1e-9)
    model.train()
    pseudo_log_likelihood(model, wordpiece_tokenizer, TEXTS[:1])
    assert model.training
