"""Token-weighted masking checked value by value: the table builder against a naive re-computation of its
documented recipe, the build-weights command's summary and file, the weight files, and the strategy's errors.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import random
import re
from collections import Counter

import numpy as np
import pytest
import torch
from safetensors import safe_open
from transformers import PreTrainedTokenizerFast

from conftest import train_tokenizer
from mlmkit.errors import UserError
from mlmkit.masking import token_weighted
from mlmkit.masking.token_weighted import (
    TokenWeightedMasking,
    build_token_weights,
    build_token_weights_from_texts,
    build_weights_file,
    load_token_weights,
    save_token_weights,
)

#: vocabulary of the hand-made corpus: 0-2 special, 3-18 ordinary (Zipf-like), 19 seen exactly 20 times, 20 once
VOCAB = 21
TWENTY_TIMES, ONCE = VOCAB - 2, VOCAB - 1
BUILD_HINT = "`mlmkit masking build-weights CORPUS --model MODEL -o FILE`"


def tie_free_corpus() -> list[list[int]]:
    """Documents of ids 3..18 cut into windows of 8; no window of exactly two tokens (its two tokens would tie).

    Token 19 occurs exactly 20 times (the summary's threshold); token 20 occurs once, in a window with others, so
    its pairs are too rare to count and it holds the largest pair keys; the last document ends in a one-token
    window. The seed is one for which :func:`reference_rates` finds no tie at any window's budget edge.
    """
    rng = random.Random(2)
    ids = list(range(3, TWENTY_TIMES))
    zipf = [1 / (i - 1) ** 0.7 for i in ids]
    docs = []
    while len(docs) < 60:
        n = rng.randint(5, 30)
        if n % 8 not in (1, 2):
            docs.append(rng.choices(ids, zipf, k=n))
    for d in rng.sample(range(len(docs)), 20):
        docs[d].insert(rng.randrange(len(docs[d])), TWENTY_TIMES)
    last = rng.choices(ids, zipf, k=16)
    last[10] = ONCE
    docs.append(last + [3])
    return docs


def reference_rates(docs, vocab, specials, ratio, window, min_pair_count, prior_strength):
    """The docstring's recipe, one window and one pair at a time with dicts and Counters.

    Returns ``(rates, stats, ties)``; ``ties`` counts windows where tokens of equal relevance straddle the budget
    (there the random tie-break decides, and this reference cannot say which token wins).
    """
    windows = [ids[s:s + window] for ids in docs for s in range(0, len(ids), window)]
    n = len(windows)
    df = Counter(t for w in windows for t in set(w))
    pairs = Counter((x, y) for w in windows for x in set(w) for y in set(w) if x != y)
    pmi = {(x, y): math.log(c / n) - math.log(df[x] / n) - math.log(df[y] / n)
           for (x, y), c in pairs.items() if c >= min_pair_count}
    marked, count, ties = Counter(), Counter(), 0
    for w in windows:
        relevance = {x: sum(pmi.get((x, y), 0.0) for y in set(w) if y != x) for x in set(w)}
        order = sorted(w, key=lambda t: -relevance[t])
        budget = math.floor(len(w) * ratio + 0.5)
        if 0 < budget < len(w):
            edge = relevance[order[budget - 1]]
            tied = {t for t in w if abs(relevance[t] - edge) < 1e-9}
            ties += len(tied) > 1 and abs(relevance[order[budget]] - edge) < 1e-9
        marked.update(order[:budget])
        count.update(w)
    rates = np.array([(marked[t] + prior_strength * ratio) / (count[t] + prior_strength) for t in range(vocab)])
    rates[[s for s in specials if 0 <= s < vocab]] = 0.0
    frequent = sorted((t for t in range(vocab) if count[t] >= 20), key=lambda t: -rates[t])
    stats = {"windows": n, "tokens": sum(count.values()), "distinct_tokens": len(count), "pairs": len(pmi),
             "ratio": ratio, "window": window, "min_pair_count": min_pair_count, "prior_strength": prior_strength,
             "most_weighted_ids": frequent[:10], "least_weighted_ids": frequent[::-1][:10]}
    return rates, stats, ties


# ---------------------------------------------------------------------------------------------- building
@pytest.mark.parametrize("chunk", [2000, 7])
def test_built_table_equals_the_documented_recipe(monkeypatch, chunk):
    """Same rates and statistics as the naive recipe, whether the windows go through in one chunk or many."""
    monkeypatch.setattr(token_weighted, "BUILD_CHUNK", chunk)
    docs = tie_free_corpus()
    specials = [0, 1, 2, VOCAB, -1]  # ids outside the vocabulary are ignored
    expected, expected_stats, ties = reference_rates(docs, VOCAB, specials, 0.25, 8, 2, 10.0)
    assert ties == 0
    rates, stats = build_token_weights(docs, VOCAB, specials, ratio=0.25, window=8, min_pair_count=2,
                                       prior_strength=10.0)
    assert rates.dtype == np.float32 and rates.shape == (VOCAB,)
    np.testing.assert_allclose(rates, expected, rtol=0, atol=1e-6)
    # the summary's order is well defined: no two frequent tokens share a rate
    frequent_rates = sorted(expected[t] for t in expected_stats["most_weighted_ids"])
    assert min(np.diff(frequent_rates)) > 1e-6
    assert stats == expected_stats
    # the corpus exercises what it was built for
    assert TWENTY_TIMES in stats["most_weighted_ids"] + stats["least_weighted_ids"]
    assert stats["distinct_tokens"] == VOCAB - 3 and stats["windows"] > 100


def test_stricter_pair_threshold_changes_the_table():
    """Pairs seen exactly ``min_pair_count`` times count; raising the threshold drops them."""
    docs = tie_free_corpus()
    for threshold in (3, 5):  # four pairs are seen exactly 3 times
        expected, expected_stats, ties = reference_rates(docs, VOCAB, [0, 1, 2], 0.25, 8, threshold, 10.0)
        assert ties == 0
        rates, stats = build_token_weights(docs, VOCAB, [0, 1, 2], ratio=0.25, window=8, min_pair_count=threshold)
        assert stats["pairs"] == expected_stats["pairs"]
        np.testing.assert_allclose(rates, expected, rtol=0, atol=1e-6)
    assert reference_rates(docs, VOCAB, [], 0.25, 8, 3, 10.0)[1]["pairs"] > \
        reference_rates(docs, VOCAB, [], 0.25, 8, 4, 10.0)[1]["pairs"]


def test_progress_counts_both_passes(monkeypatch):
    monkeypatch.setattr(token_weighted, "BUILD_CHUNK", 50)
    calls = []
    _, stats = build_token_weights(tie_free_corpus(), VOCAB, window=8, progress=lambda *a: calls.append(a))
    chunks = math.ceil(stats["windows"] / 50)
    assert chunks == 3
    assert calls == [(done, 2 * chunks) for done in range(1, 2 * chunks + 1)]


def tied_corpus() -> list[list[int]]:
    """Documents ``a b a b``: both tokens of a window are equally relevant, so the seed decides which is marked."""
    rng = random.Random(0)
    return [rng.sample(range(3, 11), 2) * 2 for _ in range(300)]


def test_defaults_and_seeded_tie_breaking():
    docs = tied_corpus()
    rates, stats = build_token_weights(docs, 11)
    assert {k: stats[k] for k in ("ratio", "window", "min_pair_count", "prior_strength")} == {
        "ratio": 0.15, "window": 64, "min_pair_count": 2, "prior_strength": 10.0}
    again, _ = build_token_weights(docs, 11, seed=0)
    np.testing.assert_array_equal(rates, again)
    other, _ = build_token_weights(docs, 11, seed=1)
    assert not np.array_equal(rates, other)


def test_a_corpus_without_tokens_is_a_user_error():
    for docs in ([], [[], []]):
        with pytest.raises(UserError, match="^the corpus has no tokens to build masking weights from$"):
            build_token_weights(docs, VOCAB)


@pytest.fixture
def fresh_tokenizer(corpus):
    """A tokenizer of its own: transformers warns about a too long text once per tokenizer object."""
    return train_tokenizer("wordpiece", corpus)


@pytest.fixture
def transformers_log(caplog, monkeypatch):
    """transformers' warnings, which its logger keeps to itself unless told to propagate."""
    monkeypatch.setattr(logging.getLogger("transformers"), "propagate", True)
    caplog.set_level(logging.WARNING)
    return caplog


def test_texts_are_counted_whole_without_special_tokens_or_warnings(fresh_tokenizer, corpus, transformers_log):
    long_text = " ".join(corpus[:40])  # far beyond the tokenizer's 128 positions
    texts = [long_text] + corpus[40:60]
    rates, stats = build_token_weights_from_texts(texts, fresh_tokenizer, batch_size=7, ratio=0.3, window=16)
    assert not [r for r in transformers_log.records if "sequence length" in r.getMessage()]
    encoded = fresh_tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"]
    assert len(encoded[0]) > 2 * fresh_tokenizer.model_max_length
    expected, expected_stats = build_token_weights(encoded, len(fresh_tokenizer), fresh_tokenizer.all_special_ids,
                                                   ratio=0.3, window=16)
    np.testing.assert_array_equal(rates, expected)
    assert stats == expected_stats
    assert stats["tokens"] == sum(map(len, encoded)) and stats["ratio"] == 0.3 and stats["window"] == 16


# ---------------------------------------------------------------------------------------------- build-weights
def write_csv(path, header, rows):
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def maskless_tokenizer_dir(tokenizer, path):
    """The same vocabulary saved without a mask token (a weights table needs token ids, not a mask)."""
    plain = PreTrainedTokenizerFast(tokenizer_object=tokenizer.backend_tokenizer, unk_token="[UNK]",
                                    pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]")
    assert plain.mask_token is None
    plain.save_pretrained(path)
    return plain


@pytest.mark.parametrize("suffix", [".json", ".safetensors"])
def test_build_weights_file_summary_and_file(tmp_path, wordpiece_tokenizer, corpus, suffix):
    model = tmp_path / "tok"
    tokenizer = maskless_tokenizer_dir(wordpiece_tokenizer, model)
    data = write_csv(tmp_path / "docs.csv", ["id", "body"], [[i, t] for i, t in enumerate(corpus)])
    output = tmp_path / "out" / f"weights{suffix}"
    summary = build_weights_file(str(data), output, model=str(model), text_column="body", max_documents=150,
                                 ratio=0.2)
    expected, stats = build_token_weights_from_texts(corpus[:150], tokenizer, ratio=0.2)
    loaded, meta = load_token_weights(output)
    np.testing.assert_allclose(loaded.numpy(), expected, atol=1e-6)

    listed = {f"{key}_ids" for key in ("most_weighted", "least_weighted")}
    file_meta = {"tokenizer": str(model), "corpus": str(data), "documents": 150,
                 **{k: v for k, v in stats.items() if k not in listed}}
    assert {k: meta[k] for k in file_meta} == file_meta
    assert meta["format"] == "mlmkit-token-weights" and meta["vocab_size"] == len(tokenizer)
    assert summary["output"] == str(output)
    assert set(summary) == set(file_meta) | {"output", "most_weighted", "least_weighted"}
    assert {k: summary[k] for k in file_meta} == file_meta
    for key in ("most_weighted", "least_weighted"):
        ids = stats[f"{key}_ids"]
        assert summary[key] == [{"token": tokenizer.convert_ids_to_tokens(i),
                                 "weight": round(float(expected[i]), 4)} for i in ids]
    assert len(summary["most_weighted"]) == 10
    # the weights shown are rounded to 4 places, which is not the same as 5 places here
    assert any(round(float(expected[i]), 5) != round(float(expected[i]), 4) for i in stats["most_weighted_ids"])


def test_build_weights_file_defaults(tmp_path, corpus):
    """Default model: the embedded one; default text column: ``text`` (other columns are left alone)."""
    data = write_csv(tmp_path / "docs.csv", ["label", "text"], [["x", t] for t in corpus[:30]])
    summary = build_weights_file(str(data), tmp_path / "w.json", window=16)
    assert summary["tokenizer"] == "embedded" and summary["documents"] == 30 and summary["window"] == 16
    assert load_token_weights(tmp_path / "w.json")[1]["vocab_size"] > 30000  # the embedded WordPiece vocabulary


def test_build_weights_file_refuses_other_formats_first(tmp_path, corpus_file):
    with pytest.raises(UserError, match=r"^masking weights go to a \.json or \.safetensors file, not 'w\.pkl'$"):
        build_weights_file(str(corpus_file), tmp_path / "w.pkl", model=str(tmp_path / "no-such-model"))
    assert not (tmp_path / "w.pkl").exists()


# ---------------------------------------------------------------------------------------------- files
def test_saved_files_round_values_and_record_the_format(tmp_path):
    weights = np.array([0.123456789, 0.5, 2.0], dtype=np.float64)
    path = save_token_weights(tmp_path / "a" / "b" / "w.json", weights, {"note": "x"})
    payload = json.loads(path.read_text(encoding="utf-8"))
    assert payload["weights"] == [0.123457, 0.5, 2.0]
    assert {k: payload[k] for k in ("format", "version", "vocab_size", "note")} == {
        "format": "mlmkit-token-weights", "version": 1, "vocab_size": 3, "note": "x"}

    path = save_token_weights(tmp_path / "c" / "d" / "w.safetensors", weights, {"note": "x"})
    with safe_open(str(path), framework="pt") as handle:
        assert handle.get_tensor("weights").dtype == torch.float32
    loaded, meta = load_token_weights(path)
    assert meta["version"] == 1 and meta["note"] == "x"
    assert loaded.dtype == torch.float32


def test_hand_written_integer_table_loads_as_float(tmp_path):
    path = tmp_path / "ints.json"
    path.write_text(json.dumps({"weights": [0, 1, 5]}), encoding="utf-8")
    weights, meta = load_token_weights(path)
    assert weights.dtype == torch.float32 and weights.tolist() == [0.0, 1.0, 5.0]
    assert meta == {}


def test_load_errors_name_the_file(tmp_path):
    missing = tmp_path / "none.json"
    with pytest.raises(UserError, match="^" + re.escape(f"masking weights file {str(missing)!r} not found "
                                                        f"(build one with {BUILD_HINT})") + "$"):
        load_token_weights(missing)
    text = tmp_path / "w.txt"
    text.write_text("1 2 3")
    with pytest.raises(UserError, match="^masking weights must be a .json or .safetensors file, not 'w.txt'$"):
        load_token_weights(text)
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(UserError, match="^" + re.escape(f"cannot read masking weights {str(broken)!r}: ")):
        load_token_weights(broken)
    cases = {"matrix.json": {"weights": [[1.0, 2.0], [3.0, 4.0]]},
             "foreign.json": {"format": "someone-elses-table", "weights": [1.0, 2.0]}}
    for name, payload in cases.items():
        (tmp_path / name).write_text(json.dumps(payload))
        with pytest.raises(UserError, match="^" + re.escape(f"{str(tmp_path / name)!r} is not an mlmkit "
                                                            "token-weights table") + "$"):
            load_token_weights(tmp_path / name)
    negative = tmp_path / "neg.json"
    negative.write_text(json.dumps({"weights": [1.0, -1.0]}))
    with pytest.raises(UserError, match="^" + re.escape(f"masking weights in {str(negative)!r} must be finite")):
        load_token_weights(negative)


# ---------------------------------------------------------------------------------------------- strategy
def table_file(tmp_path, weights, name="t.json"):
    path = tmp_path / name
    path.write_text(json.dumps({"weights": [float(w) for w in weights]}), encoding="utf-8")
    return str(path)


def encode(tokenizer, texts, add_special_tokens=True):
    enc = tokenizer(texts, padding=True, return_special_tokens_mask=True, return_tensors="pt",
                    add_special_tokens=add_special_tokens)
    word_ids = [[-1 if w is None else w for w in enc.word_ids(i)] for i in range(len(texts))]
    return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"],
            "special_tokens_mask": enc["special_tokens_mask"].bool(), "word_ids": torch.tensor(word_ids)}


def test_constructor_errors_and_defaults(tmp_path):
    with pytest.raises(ValueError, match="^" + re.escape("token_weighted needs masking.weights_file=FILE; build one "
                                                         f"with {BUILD_HINT}") + "$"):
        TokenWeightedMasking()
    path = table_file(tmp_path, [1.0] * 4)
    for bad in (-0.5, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="^masking.min_weight must be >= 0$"):
            TokenWeightedMasking(weights_file=path, min_weight=bad)
    assert TokenWeightedMasking(weights_file=path).whole_words is False


def test_too_small_table_names_both_sizes(tmp_path, wordpiece_tokenizer):
    strategy = TokenWeightedMasking(weights_file=table_file(tmp_path, [1.0] * 5))
    with pytest.raises(UserError, match=f"cover 5 token ids but the tokenizer has {len(wordpiece_tokenizer)};"):
        strategy.bind(wordpiece_tokenizer)


def test_min_weight_lifts_zero_weight_tokens(tmp_path, wordpiece_tokenizer, corpus):
    vocab = wordpiece_tokenizer.get_vocab()
    weights = np.ones(len(wordpiece_tokenizer))
    weights[vocab["the"]] = 0.0
    path = table_file(tmp_path, weights)
    batch = encode(wordpiece_tokenizer, corpus[:64])
    is_the = batch["input_ids"] == vocab["the"]
    predicted = {}
    for floor in (0.0, 1.0):
        strategy = TokenWeightedMasking(weights_file=path, min_weight=floor)
        strategy.bind(wordpiece_tokenizer)
        predicted[floor] = strategy.select(batch, 0.3, torch.Generator().manual_seed(0)).predicted
    assert not predicted[0.0][is_the].any()
    # with the floor, 'the' weighs 1 against 2 for the others: picked, but less often than they are
    others = ~batch["special_tokens_mask"] & batch["attention_mask"].bool() & ~is_the
    the_rate = predicted[1.0][is_the].double().mean().item()
    assert 0.05 < the_rate < predicted[1.0][others].double().mean().item()


def test_only_weighted_tokens_are_predicted_at_the_edges_of_the_vocabulary(tmp_path, wordpiece_tokenizer):
    """The last token id of the vocabulary gets its own weight (the table is indexed right up to its end)."""
    last = len(wordpiece_tokenizer) - 1
    word = wordpiece_tokenizer.convert_ids_to_tokens(last)
    weights = np.zeros(len(wordpiece_tokenizer))
    weights[last] = 1.0
    strategy = TokenWeightedMasking(weights_file=table_file(tmp_path, weights))
    strategy.bind(wordpiece_tokenizer)
    batch = encode(wordpiece_tokenizer, [f"the cat likes the {word} car today .", f"{word} a dog hates the weather ."])
    predicted = strategy.select(batch, 0.2, torch.Generator().manual_seed(0)).predicted
    assert torch.equal(predicted, batch["input_ids"] == last)


def test_token_id_zero_can_be_an_ordinary_token(tmp_path):
    """Byte-level vocabularies put an ordinary token at id 0; it is weighted like any other."""
    vocab = {"the": 0, "cat": 1, "dog": 2, "sat": 3, "[PAD]": 4, "[UNK]": 5, "[CLS]": 6, "[SEP]": 7, "[MASK]": 8}
    tokenizer = tokenizer_from_vocab(vocab)
    weights = np.zeros(len(vocab))
    weights[0] = 1.0
    strategy = TokenWeightedMasking(weights_file=table_file(tmp_path, weights))
    strategy.bind(tokenizer)
    batch = encode(tokenizer, ["the cat sat", "dog sat the cat the", "cat dog the"])
    predicted = strategy.select(batch, 0.5, torch.Generator().manual_seed(0)).predicted
    assert torch.equal(predicted, batch["input_ids"] == 0)


def tokenizer_from_vocab(vocab):
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])])
    return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]", pad_token="[PAD]",
                                   cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")


@pytest.mark.parametrize("specials", [True, False], ids=["cls-first", "word-first"])
def test_whole_words_weigh_as_their_heaviest_piece(tmp_path, wordpiece_tokenizer, specials):
    """Only the words holding a weighted piece are predicted, whole; also the word at position 0 of a packed
    block that starts inside a document (no [CLS] in front)."""
    pieces = wordpiece_tokenizer.tokenize("internationalization")
    assert len(pieces) > 2
    vocab = wordpiece_tokenizer.get_vocab()
    weights = np.zeros(len(wordpiece_tokenizer))
    weights[vocab[pieces[1]]] = 1.0  # a middle piece: the whole word must follow it
    strategy = TokenWeightedMasking(weights_file=table_file(tmp_path, weights), whole_words=True)
    strategy.bind(wordpiece_tokenizer)
    batch = encode(wordpiece_tokenizer, ["internationalization admires the old car every day .",
                                         "the cat talks about internationalization , surprisingly ."], specials)
    assert (batch["input_ids"][0, 0] == wordpiece_tokenizer.cls_token_id) == specials
    predicted = strategy.select(batch, 0.5, torch.Generator().manual_seed(0)).predicted
    word = torch.tensor([[w == 0 for w in batch["word_ids"][0].tolist()],
                         [w == 4 for w in batch["word_ids"][1].tolist()]])
    assert torch.equal(predicted, word & ~batch["special_tokens_mask"])
