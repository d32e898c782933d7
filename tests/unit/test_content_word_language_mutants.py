"""Content-word labels and language detection checked value by value: slow-tokenizer paths, unknown tokens,
word lists, the strategy's errors and weights, and ``auto``'s sample limit, kana rule and error messages."""

from __future__ import annotations

import importlib.util
import re

import pytest
import torch

from conftest import train_tokenizer
from mlmkit.errors import UserError
from mlmkit.masking import language as language_module
from mlmkit.masking.content_word import (
    CONTENT_FEATURE,
    ENGLISH_FUNCTION_WORDS,
    ContentWordMasking,
    content_word_feature,
    function_words_for,
    is_content_word,
    load_word_list,
)
from mlmkit.masking.language import (
    detect_language,
    normalize_language,
    script_counts,
    script_of,
    spacy_stop_words,
    stop_word_share,
)


# ---------------------------------------------------------------------------------------------- content words
def test_slow_tokenizer_path_labels_each_token_from_its_string(wordpiece_tokenizer, corpus):
    """Encodings without offsets or word ids (a slow tokenizer): every ordinary token is a word of its own."""
    ids = wordpiece_tokenizer("the cat likes a dog .")["input_ids"]
    labels = content_word_feature(["the cat likes a dog ."], {"input_ids": [ids]}, ENGLISH_FUNCTION_WORDS,
                                  tokenizer=wordpiece_tokenizer)
    assert labels == [[-1, 0, 1, 1, 0, 1, 0, -1]]
    # byte-level BPE marks a leading space with "\u0120"; the marker is not part of the word
    bpe = train_tokenizer("bpe", corpus, vocab_size=500)
    ids = bpe("the weather")["input_ids"]
    tokens = bpe.convert_ids_to_tokens(ids)
    labels = content_word_feature(["the weather"], {"input_ids": [ids]}, ENGLISH_FUNCTION_WORDS, tokenizer=bpe)
    assert tokens == ["[CLS]", "\u0120the", "\u0120weather", "[SEP]"] and labels == [[-1, 0, 1, -1]]
    # without a tokenizer the ids stand for the tokens: digits, so content words
    assert content_word_feature(["x"], {"input_ids": [[5, 6]]}, ENGLISH_FUNCTION_WORDS) == [[1, 1]]


def test_given_words_without_offsets_join_their_pieces(wordpiece_tokenizer):
    """Word ids from a segmenter but no offsets: a word is its pieces joined, ``##`` markers dropped."""
    text = "themselves and cats"
    encoded = wordpiece_tokenizer(text)
    words = [[-1 if w is None else w for w in encoded.word_ids()]]
    assert len(wordpiece_tokenizer.tokenize("themselves")) > 3
    labels = content_word_feature([text], {"input_ids": [encoded["input_ids"]]}, ENGLISH_FUNCTION_WORDS,
                                  tokenizer=wordpiece_tokenizer, word_ids=words)
    expected = [-1] + [0 if w in (0, 1) else 1 for w in encoded.word_ids()[1:-1]] + [-1]
    assert labels == [expected] and 1 in expected


def test_words_are_read_from_the_text_not_from_unknown_tokens(wordpiece_tokenizer):
    """The curly apostrophe is no token of this vocabulary ([UNK]); the text says it is punctuation."""
    text = "it\u2019s the cat"
    encoded = wordpiece_tokenizer([text], return_offsets_mapping=True)
    assert wordpiece_tokenizer.unk_token_id in encoded["input_ids"][0]
    assert content_word_feature([text], encoded, ENGLISH_FUNCTION_WORDS, tokenizer=wordpiece_tokenizer) == [
        [-1, 0, 0, 0, 0, 0, 1, -1]]  # [CLS] i ##t ' s the cat [SEP]
    assert content_word_feature([text], encoded, ENGLISH_FUNCTION_WORDS, punctuation_is_function=False,
                                tokenizer=wordpiece_tokenizer) == [[-1, 0, 0, 1, 0, 0, 1, -1]]


def test_word_matching_ignores_case_quotes_and_curly_apostrophes():
    assert not is_content_word("It\u2019s", ENGLISH_FUNCTION_WORDS)
    assert not is_content_word('"The"', ENGLISH_FUNCTION_WORDS)
    assert is_content_word("Cat,", ENGLISH_FUNCTION_WORDS)
    assert not is_content_word("--", ENGLISH_FUNCTION_WORDS)
    assert is_content_word("--", ENGLISH_FUNCTION_WORDS, punctuation_is_function=False)


def test_word_lists_from_files_and_lists(tmp_path):
    path = tmp_path / "words.txt"
    path.write_text("Foo  # a comment # with a hash\n\n'bar'\n# only a comment\nbaz\n", encoding="utf-8")
    assert load_word_list(str(path)) == frozenset({"foo", "bar", "baz"})
    assert load_word_list(["The", "  A ", "!!"]) == frozenset({"the", "a"})
    assert load_word_list(None) is ENGLISH_FUNCTION_WORDS
    missing = str(tmp_path / "none.txt")
    with pytest.raises(ValueError, match="^" + re.escape(f"function-word list {missing!r} is not a file (give a "
                                                         "path, or a list of words)") + "$"):
        load_word_list(missing)


def test_function_words_of_other_languages_come_from_spacy():
    french = function_words_for("fr")
    assert {"le", "la", "et", "qu'il"} <= french or {"le", "la", "et"} <= french
    assert all(w == w.lower() and w == w.strip() for w in french)
    with pytest.raises(UserError, match="^no function-word list for masking.language=zz: content_word takes it "
                                        "from spaCy's stop words"):
        function_words_for("zz")


def test_constructor_checks_the_weights():
    message = "^masking.content_weight must be > 0 and masking.function_weight >= 0$"
    for kwargs in ({"content_weight": 0.0}, {"function_weight": -0.1}):
        with pytest.raises(ValueError, match=message):
            ContentWordMasking(**kwargs)
    strategy = ContentWordMasking(function_weight=0.0)
    assert (strategy.content_weight, strategy.function_weight) == (1.0, 0.0)
    assert ContentWordMasking().function_weight == 0.25


def test_the_function_word_list_follows_the_settings():
    assert ContentWordMasking(function_words=["Cat"]).function_word_set == frozenset({"cat"})
    assert ContentWordMasking(language="fr").function_word_set == function_words_for("fr")
    assert ContentWordMasking(language="en").function_word_set is ENGLISH_FUNCTION_WORDS
    given = ContentWordMasking(language="auto", function_words=["chat"])
    assert given.function_words == frozenset({"chat"})
    auto = ContentWordMasking(language="auto")
    assert auto.function_words is None
    assert auto.detect_language(["le chat et le chien sont dans la maison avec les enfants"]) == "fr"
    assert auto.function_word_set == function_words_for("fr")
    assert given.detect_language(["le chat et le chien sont dans la maison"]) == "fr"
    assert given.function_word_set == frozenset({"chat"})


def test_token_features_of_a_language_with_spaces(wordpiece_tokenizer, corpus):
    """English keeps the tokenizer's words: the strategy adds its labels and nothing else."""
    strategy = ContentWordMasking(language="en")
    strategy.bind(wordpiece_tokenizer)
    encoded = wordpiece_tokenizer(corpus[:3], return_offsets_mapping=True)
    features = strategy.token_features(corpus[:3], encoded)
    assert set(features) == {CONTENT_FEATURE}
    assert features[CONTENT_FEATURE] == content_word_feature(corpus[:3], encoded, ENGLISH_FUNCTION_WORDS,
                                                             tokenizer=wordpiece_tokenizer)
    # punctuation as content: the setting reaches the labels
    keep = ContentWordMasking(language="en", punctuation_is_function=False)
    keep.bind(wordpiece_tokenizer)
    labels = keep.token_features(corpus[:3], encoded)[CONTENT_FEATURE]
    assert labels == content_word_feature(corpus[:3], encoded, ENGLISH_FUNCTION_WORDS, punctuation_is_function=False)
    assert labels != features[CONTENT_FEATURE]


def test_token_features_with_auto_language_carry_the_words(wordpiece_tokenizer, corpus):
    """``auto`` may segment, so the words travel with the labels (here the tokenizer's own: English)."""
    strategy = ContentWordMasking(language="auto")
    strategy.bind(wordpiece_tokenizer)
    encoded = wordpiece_tokenizer(corpus[:3], return_offsets_mapping=True)
    features = strategy.token_features(corpus[:3], encoded)
    words = [[-1 if w is None else w for w in encoded.word_ids(i)] for i in range(3)]
    assert set(features) == {CONTENT_FEATURE, "word_ids"} and features["word_ids"] == words
    assert features[CONTENT_FEATURE] == content_word_feature(corpus[:3], encoded, ENGLISH_FUNCTION_WORDS,
                                                             tokenizer=wordpiece_tokenizer)
    assert strategy.resolved_language == "en"


def test_zero_function_weight_predicts_only_content_words():
    strategy = ContentWordMasking(function_weight=0.0)
    labels = torch.tensor([[-1, 0, 1, 1, 0, 1, -1], [-1, 1, 0, 0, 1, 0, -1]])
    batch = {"input_ids": torch.arange(14).view(2, 7), CONTENT_FEATURE: labels,
             "special_tokens_mask": labels < 0, "word_ids": torch.tensor([[-1, 0, 1, 2, 3, 4, -1]] * 2)}
    predicted = strategy.select(batch, 0.6, torch.Generator().manual_seed(0)).predicted
    assert not predicted[labels != 1].any() and predicted.any()
    # the draw comes from the generator passed in, not from torch's global one
    rows = torch.Generator().manual_seed(3)
    labels = torch.randint(0, 2, (16, 12), generator=rows)
    labels[:, 0] = labels[:, -1] = -1
    batch = {"input_ids": torch.zeros_like(labels), CONTENT_FEATURE: labels, "special_tokens_mask": labels < 0,
             "word_ids": torch.arange(12).expand(16, 12).masked_fill(labels < 0, -1)}
    draws = []
    for global_seed in (1, 2):
        torch.manual_seed(global_seed)
        draws.append(ContentWordMasking().select(batch, 0.3, torch.Generator().manual_seed(0)).predicted)
    assert torch.equal(draws[0], draws[1])
    message = ("the batch has no 'content_word' feature: prepare the data with this strategy (its token_features "
               "run once at tokenization)")
    with pytest.raises(KeyError, match=re.escape(message)):
        strategy.select({k: v for k, v in batch.items() if k != CONTENT_FEATURE}, 0.6, torch.Generator())


# ---------------------------------------------------------------------------------------------- language
def test_detection_reads_at_most_max_chars():
    text = "\u03b1\u03b2\u03b3\u03b4\u03b5 " * 6 + "\u0434\u043e\u043c " * 300  # Greek, then much Cyrillic
    assert detect_language([text], max_chars=30) == "el"
    assert detect_language([text]) != "el"
    assert script_counts([text], max_chars=30) == {"greek": 25}
    assert script_counts(["ab", "cd", "ef"], max_chars=3) == {"latin": 3}


def test_a_little_kana_makes_han_text_japanese():
    han = "\u6f22" * 100
    assert detect_language([han + "\u306e" * 6]) == "ja"  # 6% kana
    assert detect_language([han + "\u306e" * 4]) == "zh"  # 4% kana
    assert detect_language([han]) == "zh"
    assert detect_language([han + "\u306e" * 5]) == "ja"  # exactly 5%
    assert detect_language(["\u6f22\u5b57"]) == "zh"  # a short text without kana


def test_detection_errors_say_what_to_set(monkeypatch):
    with pytest.raises(UserError, match="^masking.language=auto found no letters in the corpus sample; set "
                                        "masking.language$"):
        detect_language(["123 !!", "42"])
    with pytest.raises(UserError, match="^" + re.escape(
            "masking.language=auto cannot tell the language of this corpus (most letters are in a script it does "
            "not know); set masking.language") + "$"):
        detect_language(["\u13a0\u13a1\u13a2 \u13a3\u13a4"])  # Cherokee
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "spacy" else real(name, *a))
    with pytest.raises(UserError, match="^" + re.escape(
            "masking.language=auto reads spaCy's stop-word lists to tell cyrillic-script languages apart: "
            "`pip install spacy`, or set masking.language") + "$"):
        detect_language(["\u0434\u043e\u043c \u0438 \u043a\u043e\u0442"])
    assert detect_language(["\u03b1\u03b2\u03b3"]) == "el"  # one candidate: no stop words needed


def test_language_codes_and_scripts():
    assert normalize_language(None) == "en"
    assert normalize_language(" Auto ") == "auto"
    assert normalize_language("pt_BR") == "pt" and normalize_language("zh-Hant-TW") == "zh"
    with pytest.raises(UserError, match="^masking.language must be an ISO 639 language code such as 'en', 'fr', "
                                        "'zh' or 'auto', got 'english'$"):
        normalize_language("english")
    assert [script_of(c) for c in "a\u00df1 \u0416\u05d0\u3042\u4e00\u13a0\u024f\u0041"] == [
        "latin", "latin", None, None, "cyrillic", "hebrew", "kana", "han", "other", "latin", "latin"]


def test_stop_word_shares():
    assert spacy_stop_words("zz") is None
    assert spacy_stop_words("fr") == frozenset(w.lower() for w in spacy_stop_words("fr"))
    assert stop_word_share(["le", "chat", "et"], "fr") == pytest.approx(2 / 3)
    assert detect_language(["le chat et le chien", "sont dans la maison avec les enfants"]) == "fr"
    assert stop_word_share([], "fr") == 0.0 and stop_word_share(["le"], "zz") == 0.0
    # nothing any candidate knows: the likeliest language of the script wins
    assert detect_language(["xqzt vbnm"]) == language_module.SCRIPT_LANGUAGES["latin"][0]


def test_rebuilt_words_lose_only_the_space_markers():
    """Without offsets a word is rebuilt from its token strings: "Ġ" / "▁" markers and "##" go, letters stay."""
    from mlmkit.masking.content_word import content_word_feature

    encodings = {"input_ids": [["Xor", "\u0120or", "\u2581or", "##or", "Xylophone"]]}
    labels = content_word_feature(["unused"], encodings, frozenset({"or"}))
    assert labels == [[1, 0, 0, 0, 1]]  # "Xor" and "Xylophone" keep their X: content words
