"""content_word per language: function words are spaCy's stop words of the language, over segmented words."""

from __future__ import annotations

import json
import string

import pytest
from language_data import TEXTS, read_lines, trained
from typer.testing import CliRunner

from mlmkit.cli.app import app
from mlmkit.errors import UserError
from mlmkit.masking.content_word import ENGLISH_FUNCTION_WORDS, function_words_for
from mlmkit.masking.language import spacy_stop_words
from mlmkit.masking.registry import build_strategy

#: words of each test text that must come out as function / content words
KNOWN = {
    "fr": ({"le", "la", "de", "et", "nous", "avec"}, {"marché", "pommes", "fontaine", "bateau"}),
    "de": ({"der", "die", "und", "mit", "wir", "nicht"}, {"Wochenmarkt", "Brot", "Brunnen", "Insel"}),
    "zh": ({"的", "了", "在", "我们"}, {"市场", "面包", "咖啡", "火车"}),
}


def key(word: str) -> str:
    """How words are matched: lower case, surrounding punctuation removed (French "qu'" is "qu")."""
    return word.lower().replace("\u2019", "'").strip(string.punctuation + " ")


def stop_keys(code: str) -> set[str]:
    return {key(w) for w in spacy_stop_words(code)}


def labelled_words(code: str, tokenizer) -> list[tuple[str, int]]:
    """(word text, label) for every word of the ``code`` test text, as content_word labels it at preparation."""
    strategy = build_strategy({"name": "content_word", "language": code})
    strategy.bind(tokenizer)
    out = []
    for text in read_lines(code):
        encodings = tokenizer([text], return_offsets_mapping=True)
        features = strategy.token_features([text], encodings)
        words = features.get("word_ids", [[-1 if w is None else w for w in encodings.word_ids(0)]])[0]
        spans: dict[int, list] = {}
        for word, label, (start, end) in zip(words, features["content_word"][0], encodings["offset_mapping"][0],
                                             strict=True):
            if word >= 0:
                span = spans.setdefault(word, [start, end, label])
                span[1] = max(span[1], end)
                assert span[2] == label  # one label per word
        out.extend((text[start:end], label) for start, end, label in spans.values())
    return out


@pytest.mark.slow
@pytest.mark.parametrize("code", ["fr", "de", "zh"])
def test_function_words_are_the_languages_stop_words(code):
    tokenizer = trained(code)
    stops = stop_keys(code)
    labelled = labelled_words(code, tokenizer)
    letters = [(word, label) for word, label in labelled if any(c.isalnum() for c in word)]
    # every word with a letter is a function word exactly when spaCy lists it as a stop word
    for word, label in letters:
        assert label == int(key(word) not in stops), word
    function_share = sum(label == 0 for _, label in letters) / len(letters)
    assert function_share == sum(key(w) in stops for w, _ in letters) / len(letters)
    function, content = KNOWN[code]
    seen = {word.lower(): label for word, label in labelled}
    assert {w: seen[w] for w in function} == dict.fromkeys(function, 0)
    assert {w.lower(): seen[w.lower()] for w in content} == dict.fromkeys(map(str.lower, content), 1)
    # punctuation counts as function
    assert all(label == 0 for word, label in labelled if not any(c.isalnum() for c in word))


def test_english_keeps_the_built_in_list_and_a_user_file_still_wins(tmp_path):
    assert function_words_for("en") is ENGLISH_FUNCTION_WORDS
    assert build_strategy({"name": "content_word"}).function_words is ENGLISH_FUNCTION_WORDS
    words = tmp_path / "mots.txt"
    words.write_text("le  # article\nla\n", encoding="utf-8")
    strategy = build_strategy({"name": "content_word", "language": "fr", "function_words": str(words)})
    assert strategy.function_words == frozenset({"le", "la"})


def test_a_language_without_stop_words_is_a_user_error():
    with pytest.raises(UserError, match="masking.function_words=PATH"):
        build_strategy({"name": "content_word", "language": "qq"})


@pytest.mark.parametrize("code", ["fr", "zh"])
def test_preview_stats_report_the_function_share_of_the_language(code, tmp_path):
    tokenizer = trained(code)
    tokenizer.save_pretrained(tmp_path / "tok")
    result = CliRunner().invoke(app, ["masking", "preview", "--corpus", str(TEXTS[code]), "--stats", "--json",
                                      "--strategy", "content_word", f"masking.language={code}",
                                      "--model", str(tmp_path / "tok")])
    assert result.exit_code == 0, result.output
    stats = json.loads(result.stdout)
    # expected: the share of ordinary tokens that belong to a function word (stop word or punctuation)
    stops = stop_keys(code)
    strategy = build_strategy({"name": "content_word", "language": code})
    strategy.bind(tokenizer)
    tokens = function = 0
    for text in read_lines(code):
        encodings = tokenizer([text], return_offsets_mapping=True)
        words = strategy.word_ids([text], encodings)[0]
        spans: dict[int, list] = {}
        for word, (start, end) in zip(words, encodings["offset_mapping"][0], strict=True):
            if word >= 0:
                spans.setdefault(word, [start, end])[1] = end
        for word in words:
            if word >= 0:
                text_of = text[spans[word][0]:spans[word][1]]
                tokens += 1
                function += (not any(c.isalnum() for c in text_of)) or key(text_of) in stops
    assert stats["language"] == code and stats["maskable_tokens"] == tokens
    assert stats["function_share_corpus"] == round(function / tokens, 4)
