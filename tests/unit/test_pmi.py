"""PMI-Masking: PMI_n values, the level-wise counter, longest-match units, build-vocab, errors."""

import itertools
import json
import math
import random
from collections import Counter

import datasets
import pytest
import torch
from typer.testing import CliRunner

from mlmkit.cli.app import app
from mlmkit.data.packing import pack_blocks, tokenize_corpus
from mlmkit.errors import UserError
from mlmkit.masking.collator import MaskingCollator
from mlmkit.masking.pmi import PmiMasking, segment_units
from mlmkit.masking.pmi_vocab import (
    PmiVocabulary,
    best_segmentation_logp,
    build_pmi_vocabulary,
    count_frequent_ngrams,
    length_quotas,
)
from mlmkit.masking.registry import build_strategy

HAND_CORPUS = ["New York is big", "new york city is big", "I love New York City", "big city"]


def hand_p(count, total):
    return math.log(count / total)


def test_pmi_values_match_hand_computation(wordpiece_tokenizer):
    # words: new 3, york 3, is 2, big 3, city 3, i 1, love 1 -> 16 unigram positions, 12 bigram, 8 trigram
    vocab = build_pmi_vocabulary(HAND_CORPUS, wordpiece_tokenizer, max_n=3, min_count=1, size=100)
    entries = {" ".join(words): (score, count) for n in vocab.ngrams for words, score, count in vocab.ngrams[n]}
    p_new = p_york = p_city = hand_p(3, 16)
    assert entries["new york"][1] == 3
    assert entries["new york"][0] == pytest.approx(hand_p(3, 12) - p_new - p_york)
    assert entries["york city"][0] == pytest.approx(hand_p(2, 12) - p_york - p_city)
    assert entries["is big"][0] == pytest.approx(hand_p(2, 12) - hand_p(2, 16) - hand_p(3, 16))
    # trigram: log p(new york city) minus the best of its three segmentations
    best = max(p_new + p_york + p_city, hand_p(3, 12) + p_city, p_new + hand_p(2, 12))
    assert entries["new york city"] == (pytest.approx(hand_p(2, 8) - best), 2)
    # n-grams seen once are not candidates; ranking is by PMI_n, then count
    assert "love new" not in entries and "york is" not in entries
    assert [" ".join(w) for w, _, _ in vocab.ngrams[2]] == ["new york", "is big", "york city"]
    assert (vocab.documents, vocab.words, vocab.lowercase) == (4, 16, True)


def test_min_pmi_drops_non_collocations(wordpiece_tokenizer):
    corpus = ["a b", "b a", "a b", "b a", "a a", "b b"]
    # words a, b: 6/12 each; bigrams ab, ba: 2/6 each (PMI log 4/3), aa, bb: 1/6 each (PMI log 2/3 < 0)
    vocab = build_pmi_vocabulary(corpus, wordpiece_tokenizer, max_n=2, min_count=0, size=10)
    assert [(w, round(s, 6)) for w, s, _ in vocab.ngrams[2]] == [(("a", "b"), round(math.log(4 / 3), 6)),
                                                                 (("b", "a"), round(math.log(4 / 3), 6))]
    vocab = build_pmi_vocabulary(corpus, wordpiece_tokenizer, max_n=2, min_count=0, size=10, min_pmi=-1.0)
    assert len(vocab.ngrams[2]) == 4
    vocab = build_pmi_vocabulary(corpus, wordpiece_tokenizer, max_n=2, min_count=0, size=10, min_pmi=0.5)
    assert vocab.ngrams[2] == []


def test_level_wise_counter_matches_brute_force():
    rng = random.Random(3)
    documents = [[rng.randrange(6) for _ in range(rng.randrange(0, 30))] for _ in range(60)]
    counts, totals = count_frequent_ngrams(documents, max_n=4, min_count=3)
    brute = Counter(tuple(doc[i:i + n]) for doc in documents for n in range(1, 5) for i in range(len(doc) - n + 1))
    assert counts == {gram: c for gram, c in brute.items() if c > 3}  # the paper: more than min_count
    assert totals[1:] == [sum(max(0, len(d) - n + 1) for d in documents) for n in range(1, 5)]


def test_best_segmentation_enumerates_every_split():
    rng = random.Random(0)
    table = {(i, j): -rng.uniform(0.5, 5.0) for i in range(5) for j in range(i + 1, 6)}
    for n in range(2, 6):
        expected = -math.inf
        for cuts in itertools.product([False, True], repeat=n - 1):
            if not any(cuts):
                continue  # the n-gram itself
            bounds = [0] + [k + 1 for k, cut in enumerate(cuts) if cut] + [n]
            expected = max(expected, sum(table[a, b] for a, b in zip(bounds, bounds[1:], strict=False)))
        assert best_segmentation_logp(lambda i, j: table[i, j], n) == pytest.approx(expected)


def test_length_quotas_follow_the_paper():
    assert length_quotas(800_000, 5) == {2: 400_000, 3: 200_000, 4: 100_000, 5: 100_000}
    assert length_quotas(100, 3) == {2: 50, 3: 50}
    assert length_quotas(10, 2) == {2: 10}


def test_segmentation_prefers_coverage_then_fewer_units():
    ngrams = {2: {("new", "york"), ("york", "city"), ("is", "big")}, 3: {("new", "york", "city")}}
    words = ["i", "love", "new", "york", "city", "and", "york", "city", "is", "big"]
    assert segment_units(words, ngrams, 3) == [0, 1, 2, 2, 2, 5, 6, 6, 8, 8]
    assert segment_units(["new", "york"], ngrams, 3) == [0, 0]
    assert segment_units([], ngrams, 3) == []
    # greedy left to right would take "a b" and leave "c d e" split; covering all five words needs "a" + "b c d e"
    ngrams = {2: {("a", "b")}, 4: {("b", "c", "d", "e")}}
    assert segment_units(["a", "b", "c", "d", "e"], ngrams, 4) == [0, 1, 1, 1, 1]
    # equal coverage: fewer units win ("x y z" over "x y" + ...)
    ngrams = {2: {("x", "y")}, 3: {("x", "y", "z")}}
    assert segment_units(["x", "y", "z"], ngrams, 3) == [0, 0, 0]


def test_overlapping_entries_are_chosen_uniformly():
    ngrams = {3: {("by", "the", "way"), ("the", "way", "out")}}
    words = ["by", "the", "way", "out"]
    draws = 4000
    rng = random.Random(1)
    outcomes = Counter(tuple(segment_units(words, ngrams, 3, rng)) for _ in range(draws))
    assert set(outcomes) == {(0, 0, 0, 3), (0, 1, 1, 1)}
    assert abs(outcomes[0, 0, 0, 3] / draws - 0.5) < 4 * math.sqrt(0.25 / draws)  # 4 standard errors
    assert segment_units(words, ngrams, 3) == segment_units(words, ngrams, 3)  # seeded by the document


def brute_force_segmentations(words, ngrams, max_n):
    """Every segmentation of ``words`` into vocabulary n-grams and single words (as lists of lengths)."""
    if not words:
        return [[]]
    out = []
    for n in range(1, min(max_n, len(words)) + 1):
        if n == 1 or tuple(words[:n]) in ngrams.get(n, set()):
            out.extend([n, *rest] for rest in brute_force_segmentations(words[n:], ngrams, max_n))
    return out


def test_segmentation_is_optimal_against_brute_force():
    rng = random.Random(7)
    alphabet = ["a", "b", "c"]
    for _ in range(150):
        words = [rng.choice(alphabet) for _ in range(rng.randrange(0, 11))]
        ngrams = {n: {tuple(rng.choice(alphabet) for _ in range(n)) for _ in range(3)} for n in (2, 3, 4)}
        units = segment_units(words, ngrams, 4)
        lengths = [sum(1 for u in units if u == head) for head in sorted(set(units))]
        score = (sum(n for n in lengths if n > 1), -len(lengths))
        best = max(((sum(n for n in seg if n > 1), -len(seg)) for seg in brute_force_segmentations(words, ngrams, 4)),
                   default=(0, 0))
        assert score == best, (words, ngrams, units)


@pytest.fixture()
def toy_vocab_file(tmp_path, corpus, any_tokenizer):
    vocab = build_pmi_vocabulary(corpus, any_tokenizer, max_n=4, min_count=5, size=400, word_splitter="test")
    return vocab.save(tmp_path / "vocab.json"), vocab


def test_units_follow_vocabulary_and_are_never_split(toy_vocab_file, corpus, any_tokenizer):
    path, vocab = toy_vocab_file
    strategy = build_strategy({"name": "pmi", "vocab": str(path), "ratio": 0.3})
    collator = MaskingCollator(any_tokenizer, strategy, seed=0)
    data = datasets.Dataset.from_dict({"text": corpus[:60]})
    blocks = pack_blocks(tokenize_corpus(data, any_tokenizer, strategy), 48, strategy.group_features)
    batch = collator.pad([blocks[i] for i in range(len(blocks))])
    units, words = batch["unit_ids"], batch["word_ids"]
    special = batch["special_tokens_mask"]
    assert bool(((units < 0) == special).all())
    # an n-gram unit joins several words; every word lies inside one unit
    multi = 0
    for row in range(units.shape[0]):
        for unit in units[row][units[row] >= 0].unique():
            inside = units[row] == unit
            positions = inside.nonzero().flatten()
            assert int(positions[-1] - positions[0]) + 1 == len(positions), "units are contiguous"
            multi += int(words[row][inside].unique().numel() > 1)
        for word in words[row][words[row] >= 0].unique():
            assert units[row][words[row] == word].unique().numel() == 1
    assert multi > 20
    predicted_total, candidates_total = 0, 0
    mask_id = any_tokenizer.mask_token_id
    for step in range(30):
        out = collator.mask(batch, step)
        predicted = out["labels"] != -100
        masked = out["input_ids"] == mask_id
        for row in range(units.shape[0]):
            for unit in units[row][units[row] >= 0].unique():
                inside = units[row] == unit
                assert predicted[row][inside].all() or not predicted[row][inside].any(), "a unit is never split"
                assert masked[row][inside].all() or not masked[row][inside].any(), "one decision per unit"
        assert bool((out["labels"][predicted] == batch["input_ids"][predicted]).all())
        assert not bool(predicted[special].any())
        predicted_total += int(predicted.sum())
        candidates_total += int((~special).sum())
    assert predicted_total / candidates_total == pytest.approx(0.3, abs=0.03)


def test_vocabulary_ngrams_become_units(tmp_path, wordpiece_tokenizer):
    vocab = PmiVocabulary(ngrams={2: [(("morning", "train"), 5.0, 10)], 3: [(("the", "old", "car"), 4.0, 10)]},
                          max_n=3)
    path = vocab.save(tmp_path / "v.json")
    strategy = PmiMasking(vocab=str(path))
    strategy.bind(wordpiece_tokenizer)
    text = "The old car waits for the MORNING train."
    encodings = wordpiece_tokenizer([text], return_offsets_mapping=True)
    units = strategy.token_features([text], encodings)["unit_ids"][0]
    words = encodings.word_ids(0)
    by_word = {}
    for word, unit in zip(words, units, strict=True):
        if word is not None:
            by_word.setdefault(word, set()).add(unit)
    # words: the old car waits for the morning train .
    assert [by_word[w] for w in range(9)] == [{0}, {0}, {0}, {3}, {4}, {5}, {6}, {6}, {8}]
    assert units[0] == -1 and units[-1] == -1


def test_build_vocab_cli_writes_a_valid_file(tmp_path, tiny_model_dir, corpus_file):
    out = tmp_path / "sub" / "pmi.json"
    result = CliRunner().invoke(app, ["masking", "build-vocab", str(corpus_file), "-o", str(out), "--model",
                                      str(tiny_model_dir), "--min-count", "5", "--size", "40", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    data = json.loads(out.read_text())
    assert data["format"] == "mlmkit-pmi-vocab" and data["version"] == 1 and data["max_n"] == 5
    assert data["word_splitter"] == str(tiny_model_dir) and data["corpora"] == [str(corpus_file)]
    assert data["documents"] == 200
    quotas = length_quotas(40, 5)
    for n, entries in data["ngrams"].items():
        assert len(entries) <= quotas[int(n)]
        assert all(len(words) == int(n) and count >= 5 and score > 0 for words, score, count in entries)
        scores = [score for _, score, _ in entries]
        assert scores == sorted(scores, reverse=True)
    assert sum(summary["entries"].values()) == sum(len(e) for e in data["ngrams"].values()) > 0
    loaded = PmiVocabulary.load(out)
    assert len(loaded) == sum(summary["entries"].values())
    assert PmiMasking(vocab=str(out)).max_n >= 2


def test_missing_or_bad_vocabulary_is_a_user_error(tmp_path):
    missing = tmp_path / "nope.json"
    with pytest.raises(UserError, match="mlmkit masking build-vocab") as info:
        build_strategy({"name": "pmi", "vocab": str(missing)})
    assert str(missing) in str(info.value)
    with pytest.raises(UserError, match="masking.vocab"):
        build_strategy({"name": "pmi"})
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "something-else"}')
    with pytest.raises(UserError, match="not a PMI vocabulary"):
        build_strategy({"name": "pmi", "vocab": str(bad)})
    bad.write_text("{not json")
    with pytest.raises(UserError, match="cannot read"):
        build_strategy({"name": "pmi", "vocab": str(bad)})


def test_missing_vocab_from_the_cli_is_one_line(tmp_path, tiny_model_dir, corpus_file):
    result = CliRunner().invoke(app, ["pretrain", f"model.name_or_path={tiny_model_dir}",
                                      f"data.source={corpus_file}", "masking.name=pmi",
                                      f"masking.vocab={tmp_path / 'v.json'}", f"output.dir={tmp_path / 'run'}"])
    assert result.exit_code == 2
    assert "build-vocab" in result.output and "Traceback" not in result.output


def test_select_without_unit_ids_is_an_error(tmp_path, wordpiece_tokenizer):
    path = PmiVocabulary(ngrams={2: []}).save(tmp_path / "v.json")
    strategy = PmiMasking(vocab=str(path))
    strategy.bind(wordpiece_tokenizer)
    ids = torch.tensor([[2, 10, 11, 3]])
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids),
             "special_tokens_mask": torch.tensor([[True, False, False, True]]),
             "word_ids": torch.tensor([[-1, 0, 1, -1]])}
    with pytest.raises(ValueError, match="unit_ids"):
        strategy(batch)
