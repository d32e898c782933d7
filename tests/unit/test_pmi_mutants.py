"""PMI vocabulary building as a Python call: defaults, options, the summary, the file and the progress bars."""

import io
import json
import re

import pytest
from rich.console import Console

from mlmkit.errors import UserError
from mlmkit.masking.pmi_vocab import build_vocab_file

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
