"""PMI vocabulary building as a Python call: defaults, options, the summary, the file and the progress bars."""

import io
import json
import logging
import re

import pytest
import torch
from rich.console import Console

from mlmkit.errors import UserError
from mlmkit.masking.base import run_unit_ids
from mlmkit.masking.pmi import PmiMasking
from mlmkit.masking.pmi_vocab import (
    PmiVocabulary,
    build_pmi_vocabulary,
    build_vocab_file,
    document_words,
    read_corpus_words,
)
from mlmkit.masking.units import select_units

#: 12 copies of each: every n-gram inside a document occurs 12 times, more than the default min_count of 10
DOCUMENTS = ["we moved to new york city last year", "the big dog ran far away", "she said new york is big"] * 12


@pytest.fixture(scope="module")
def corpus_jsonl(tmp_path_factory):
    path = tmp_path_factory.mktemp("pmi-corpus") / "corpus.jsonl"
    rows = [{"id": i, "text": text, "body": text} for i, text in enumerate(DOCUMENTS)]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_build_vocab_file_defaults(tmp_path, corpus_jsonl, capsys, monkeypatch):
    def detect(texts):
        raise AssertionError("a language given is not detected")

    monkeypatch.setattr("mlmkit.masking.pmi_vocab.detect_language", detect)
    out = tmp_path / "vocab.json"
    summary = build_vocab_file([str(corpus_jsonl)], out)
    data = json.loads(out.read_text())
    assert (data["max_n"], data["min_count"], data["size"], data["min_pmi"]) == (5, 10, 800_000, 0.0)
    assert data["word_splitter"] == "embedded" and data["lowercase"] is True
    assert (data["language"], data["segmenter"], data["corpora"]) == ("en", "tokenizer", [str(corpus_jsonl)])
    assert summary["documents"] == data["documents"] == 36 and summary["words"] == 12 * (8 + 6 + 6)
    assert (summary["language"], summary["segmenter"], summary["output"]) == ("en", "tokenizer", str(out))
    assert summary["entries"] == {n: len(data["ngrams"][str(n)]) for n in range(2, 6)}
    assert summary["entries"][5] > 0  # "we moved to new york" and the other 5-grams of the 8-word document
    for n in range(2, 6):
        first_words, first_score, first_count = data["ngrams"][str(n)][0]
        assert summary["top"][n][0] == {"ngram": " ".join(first_words), "pmi": round(first_score, 3),
                                        "count": first_count}
    assert ["new", "york"] in [words for words, _, _ in data["ngrams"]["2"]]
    # the progress bars go to stderr, nothing to stdout
    captured = capsys.readouterr()
    assert captured.out == "" and "reading words" in captured.err and "counting n-grams" in captured.err


def test_build_vocab_file_options_reach_the_vocabulary(tmp_path, corpus_jsonl):
    out = tmp_path / "vocab.json"
    stream = io.StringIO()
    summary = build_vocab_file([str(corpus_jsonl)], out, max_n=3, min_count=11, size=40, min_pmi=1.0,
                               text_column="body", max_documents=24, language="zh", segmenter="tokenizer",
                               console=Console(file=stream, width=100))
    data = json.loads(out.read_text())
    assert (data["max_n"], data["min_count"], data["size"], data["min_pmi"]) == (3, 11, 40, 1.0)
    assert summary["documents"] == data["documents"] == 24 and summary["words"] == 8 * (8 + 6 + 6)
    assert (summary["language"], summary["segmenter"]) == ("zh", "tokenizer")
    assert (data["language"], data["segmenter"]) == ("zh", "tokenizer")
    # 8 copies of each document: only "new york" (in two of them) is seen more than 11 times
    assert summary["entries"] == {2: 1, 3: 0} and data["ngrams"]["2"][0][0] == ["new", "york"]
    # the progress: a description, a bar, done / total and the time taken, for each stage
    lines = stream.getvalue().splitlines()
    assert any(re.fullmatch(r"reading words\s+━+\s+24/24\s+0:00:\d\d\s*", line) for line in lines), lines
    assert any(re.fullmatch(r"counting n-grams\s+━+\s+3/3\s+0:00:\d\d\s*", line) for line in lines), lines


def test_build_vocab_file_min_pmi_and_language_detection(tmp_path, monkeypatch):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(DOCUMENTS * 6) + "\n")  # 216 documents
    seen = []

    def detect(texts):  # stands in for the language detector: records what it was shown
        seen.append(list(texts))
        return "de"

    monkeypatch.setattr("mlmkit.masking.pmi_vocab.detect_language", detect)
    out = tmp_path / "vocab.json"
    summary = build_vocab_file([str(corpus)], out, min_count=5, min_pmi=1.5, language="auto", segmenter="spacy",
                               console=Console(file=io.StringIO()))
    assert seen == [(DOCUMENTS * 6)[:200]]  # detected from the first 200 documents
    data = json.loads(out.read_text())
    assert summary["language"] == data["language"] == "de" and data["documents"] == 216
    assert summary["segmenter"] == data["segmenter"] == "spacy"  # spaCy's German word rules
    scores = [score for entries in data["ngrams"].values() for _, score, _ in entries]
    assert scores and min(scores) > 1.5


def test_build_vocab_file_takes_a_tokenizer_without_a_mask_token(tmp_path, corpus_jsonl, wordpiece_tokenizer):
    model = tmp_path / "no-mask"
    tokenizer = wordpiece_tokenizer.__class__(tokenizer_object=wordpiece_tokenizer.backend_tokenizer,
                                              unk_token="[UNK]")
    tokenizer.save_pretrained(model)
    summary = build_vocab_file([str(corpus_jsonl)], tmp_path / "vocab.json", model=str(model), min_count=5,
                               console=Console(file=io.StringIO()))
    assert summary["documents"] == 36 and sum(summary["entries"].values()) > 0
    with pytest.raises(UserError, match="at least 2"):
        build_vocab_file([str(corpus_jsonl)], tmp_path / "other.json", model=str(model), max_n=1,
                         console=Console(file=io.StringIO()))


# ---------------------------------------------------------------------------- the vocabulary file
def test_vocabulary_file_round_trips_every_field(tmp_path):
    vocabulary = PmiVocabulary(ngrams={2: [(("new", "york"), 3.5, 12)], 3: []}, max_n=3, min_count=4, min_pmi=0.25,
                               size=77, word_splitter="my-model", lowercase=False, documents=9, words=81,
                               meta={"language": "en"})
    path = vocabulary.save(tmp_path / "a" / "b" / "vocab.json")  # missing parents are made
    loaded = PmiVocabulary.load(path)
    assert loaded == vocabulary


def test_vocabulary_file_defaults_and_version_error(tmp_path):
    path = tmp_path / "vocab.json"
    path.write_text(json.dumps({"format": "mlmkit-pmi-vocab", "version": 1, "ngrams": {}}))
    loaded = PmiVocabulary.load(path)
    assert (loaded.max_n, loaded.min_count, loaded.min_pmi, loaded.size) == (2, 0, 0.0, 0)
    assert (loaded.word_splitter, loaded.lowercase, loaded.documents, loaded.words, loaded.meta) == ("", True, 0, 0, {})
    path.write_text(json.dumps({"format": "mlmkit-pmi-vocab", "version": 7, "ngrams": {}}))
    with pytest.raises(UserError) as info:
        PmiVocabulary.load(path)
    assert str(info.value) == f"{path} has PMI vocabulary version 7; this mlmkit reads version 1"


def test_corpus_words_need_a_fast_tokenizer_and_aligned_offsets():
    with pytest.raises(UserError) as info:
        read_corpus_words(["some text"], object())
    assert str(info.value) == "building a PMI vocabulary needs a fast tokenizer (one with a tokenizer.json)"
    with pytest.raises(ValueError):
        document_words("ab cd", [0, 1], [(0, 2)], str)


def test_built_vocabulary_records_its_settings_and_ranks_ties_by_count(wordpiece_tokenizer):
    # "aa bb" once with "bb" alone once, "cc dd" twice: both pairs have PMI log((1/3) / (1/7 x 2/7)) = log(49/6)
    texts = ["aa bb", "bb", "cc dd", "cc dd"]
    vocabulary = build_pmi_vocabulary(texts, wordpiece_tokenizer, max_n=3, min_count=0, size=100)
    assert vocabulary.max_n == 3 and vocabulary.lowercase is True and vocabulary.documents == 4
    assert vocabulary.words == 7
    entries = vocabulary.ngrams[2]
    assert [words for words, _, _ in entries] == [("cc", "dd"), ("aa", "bb")]
    assert entries[0][1] == entries[1][1] and [count for _, _, count in entries] == [2, 1]
    assert build_pmi_vocabulary(texts, cased_tokenizer(), max_n=2, min_count=0).lowercase is False


# ---------------------------------------------------------------------------- the strategy
def cased_tokenizer():
    """A word-level fast tokenizer without a normaliser: it keeps case."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel({"[UNK]": 0, "[MASK]": 1}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", mask_token="[MASK]")


def vocab_file(path, lowercase=True, bigram=("new", "york"), **meta):
    return PmiVocabulary(ngrams={2: [(bigram, 3.0, 12)]}, word_splitter="some-model", lowercase=lowercase,
                         meta=meta).save(path)


def test_bind_warns_when_the_vocabulary_was_built_differently(tmp_path, wordpiece_tokenizer, caplog):
    lower, cased = vocab_file(tmp_path / "lower.json"), vocab_file(tmp_path / "cased.json", lowercase=False)
    jieba_built = vocab_file(tmp_path / "zh.json", segmenter="jieba")
    caplog.set_level(logging.WARNING, logger="mlmkit.masking.pmi")
    PmiMasking(vocab=str(lower)).bind(cased_tokenizer())
    PmiMasking(vocab=str(cased)).bind(wordpiece_tokenizer)
    PmiMasking(vocab=str(jieba_built)).bind(wordpiece_tokenizer)
    assert caplog.messages == [
        f"the PMI vocabulary {lower} was built with a tokenizer that lowercases, but this one keeps case; "
        "few n-grams may match",
        f"the PMI vocabulary {cased} was built with a tokenizer that keeps case, but this one lowercases; "
        "few n-grams may match",
        f"the PMI vocabulary {jieba_built} was built with words from the jieba segmenter, but masking cuts words "
        "with tokenizer (masking.language=en); few n-grams may match: build it with --language en",
    ]
    caplog.clear()
    PmiMasking(vocab=str(lower)).bind(wordpiece_tokenizer)  # both lowercase
    PmiMasking(vocab=str(jieba_built), language="auto").bind(wordpiece_tokenizer)  # words known once detected
    assert caplog.messages == []


def test_segmented_languages_carry_their_word_ids(tmp_path):
    import jieba

    from mlmkit.modeling.loading import load_tokenizer

    tokenizer = load_tokenizer("embedded")
    text = "我们喜欢学习中文"
    assert jieba.lcut(text) == ["我们", "喜欢", "学习", "中文"]
    vocab = vocab_file(tmp_path / "zh.json", bigram=("我们", "喜欢"), segmenter="jieba")
    strategy = PmiMasking(vocab=str(vocab), language="zh")
    strategy.bind(tokenizer)
    encodings = tokenizer([text], return_offsets_mapping=True)
    features = strategy.token_features([text], encodings)
    assert features["word_ids"] == [[-1, 0, 0, 1, 1, 2, 2, 3, 3, -1]]  # one id per jieba word, per character
    assert features["unit_ids"] == [[-1, 0, 0, 0, 0, 2, 2, 3, 3, -1]]  # the vocabulary bigram is one unit


def test_units_without_offsets_are_whole_words_and_binding_comes_first(tmp_path, wordpiece_tokenizer):
    strategy = PmiMasking(vocab=str(vocab_file(tmp_path / "v.json", bigram=("morning", "train"))))
    text = "the morning train waits"
    encodings = wordpiece_tokenizer([text, "a train"])  # no offsets (as from a slow tokenizer): words only
    with pytest.raises(RuntimeError) as info:
        strategy.token_features([text, "a train"], encodings)
    assert str(info.value) == "call bind(tokenizer) before token_features: words are spelled by its normaliser"
    strategy.bind(wordpiece_tokenizer)
    words = encodings.word_ids(0)
    assert strategy.token_features([text, "a train"], encodings) == {
        "unit_ids": [[-1 if w is None else w for w in encodings.word_ids(i)] for i in range(2)]}
    with_offsets = wordpiece_tokenizer([text], return_offsets_mapping=True)
    units = strategy.token_features([text], with_offsets)["unit_ids"][0]
    assert units == [-1 if w is None else {2: 1}.get(w, w) for w in words]  # "morning train" is one unit


def test_select_picks_whole_units_of_candidate_tokens(tmp_path, wordpiece_tokenizer):
    strategy = PmiMasking(vocab=str(vocab_file(tmp_path / "v.json")))
    strategy.bind(wordpiece_tokenizer)
    special = torch.tensor([[True] + [False] * 10 + [True]] * 3)
    unit_ids = torch.tensor([[-1, 0, 0, 0, 1, 2, 2, 3, 4, 4, 5, -1]] * 3)
    batch = {"input_ids": torch.full(special.shape, 9), "special_tokens_mask": special, "unit_ids": unit_ids}
    for seed in range(4):
        got = strategy.select(batch, 0.4, torch.Generator().manual_seed(seed))
        units = run_unit_ids(unit_ids.masked_fill(special, -1))
        expected = select_units(units, ~special, 0.4, torch.Generator().manual_seed(seed))
        assert torch.equal(got.predicted, expected.predicted) and torch.equal(got.units, expected.units)
    with pytest.raises(ValueError) as info:
        strategy.select({k: v for k, v in batch.items() if k != "unit_ids"}, 0.4, torch.Generator())
    assert str(info.value) == ("the pmi strategy needs the 'unit_ids' feature computed by token_features when the "
                               "corpus is tokenized (mlmkit.data.packing.tokenize_corpus with this strategy)")
