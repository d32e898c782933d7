"""masking.language: code validation and ``auto`` detection from a sample of the corpus."""

from __future__ import annotations

import pytest
from language_data import read_lines, trained

from mlmkit.errors import UserError
from mlmkit.masking.language import detect_language, normalize_language, script_of
from mlmkit.masking.registry import build_strategy

# short samples written for these tests, one per script family that detection tells apart
SAMPLES = {
    "en": ["The children walked to the river after school and they watched the boats for an hour."],
    "es": ["Los niños caminaron hasta el río después de la escuela y miraron los barcos durante una hora."],
    "it": ["I bambini sono andati al fiume dopo la scuola e hanno guardato le barche per un'ora."],
    "ru": ["После школы дети пошли к реке и целый час смотрели на лодки, которые плыли мимо."],
    "ja": ["子供たちは学校のあとで川まで歩いて、一時間ずっと船を見ていました。"],
    "ko": ["아이들은 학교가 끝난 뒤 강까지 걸어가서 한 시간 동안 배를 구경했습니다."],
    "el": ["Τα παιδιά περπάτησαν μέχρι το ποτάμι μετά το σχολείο και κοίταζαν τις βάρκες."],
    "th": ["เด็กๆ เดินไปที่แม่น้ำหลังเลิกเรียนและดูเรือเป็นเวลาหนึ่งชั่วโมง"],
}


@pytest.mark.parametrize("code", ["fr", "de", "zh"])
def test_auto_picks_the_language_of_each_test_text(code):
    lines = read_lines(code)
    assert detect_language(lines) == code
    assert detect_language(lines[:1]) == code  # one line is enough


@pytest.mark.parametrize("code", sorted(SAMPLES))
def test_auto_on_short_samples_of_other_scripts(code):
    assert detect_language(SAMPLES[code]) == code


def test_japanese_is_told_from_chinese_by_its_kana():
    assert script_of("学") == "han" and script_of("が") == "kana" and script_of("한") == "hangul"
    assert script_of("é") == "latin" and script_of("3") is None and script_of(" ") is None


def test_codes_are_normalised_and_bad_ones_are_user_errors():
    assert normalize_language("zh-Hans") == "zh" and normalize_language("pt_BR") == "pt"
    assert normalize_language("AUTO") == "auto" and normalize_language(None) == "en"
    with pytest.raises(UserError, match="ISO 639"):
        normalize_language("french")
    with pytest.raises(UserError, match="masking strategy|ISO 639"):
        build_strategy({"name": "whole_word", "language": "chinese"})


def test_a_sample_without_letters_is_a_user_error():
    with pytest.raises(UserError, match="no letters"):
        detect_language(["12345 ... 678 !!!"])


def test_auto_strategy_settles_its_language_on_the_corpus_sample(zh_tokenizer):
    import datasets

    from mlmkit.data.cache import feature_fingerprint
    from mlmkit.data.packing import tokenize_corpus

    strategy = build_strategy({"name": "content_word", "language": "auto"})
    strategy.bind(zh_tokenizer)
    assert strategy.language == "auto" and strategy.function_words is None
    key = feature_fingerprint(strategy)
    tokenized = tokenize_corpus(datasets.Dataset.from_dict({"text": read_lines("zh")}), zh_tokenizer, strategy)
    assert strategy.resolved_language == "zh" and strategy.resolved_segmenter == "jieba"
    assert "的" in strategy.function_word_set
    # the prepared corpus holds jieba's words: a two-character word gives two tokens with one word id
    words = [[w for w in ids if w >= 0] for ids in tokenized["word_ids"]]
    assert any(len(ids) > len(set(ids)) for ids in words)
    # the cache key reads "auto" before and after (the corpus, also in the key, decides the rest)
    assert feature_fingerprint(strategy) == key and key["params"]["language"] == "auto"


@pytest.fixture(scope="module")
def zh_tokenizer():
    return trained("zh")


def test_a_mixture_settles_the_language_of_its_word_components(zh_tokenizer):
    import datasets

    from mlmkit.data.packing import tokenize_corpus

    # the first 200 documents (the sample) are Chinese; the first tokenization batch (1,000) is mostly French
    texts = (read_lines("zh") * 8)[:200] + read_lines("fr") * 34
    assert detect_language(texts[:1000]) == "fr"
    mixture = build_strategy({"name": "mixture", "strategies": [{"name": "random"},
                                                                 {"name": "whole_word", "language": "auto"}]})
    mixture.bind(zh_tokenizer)
    tokenize_corpus(datasets.Dataset.from_dict({"text": texts}), zh_tokenizer, mixture)
    assert mixture.components[1].resolved_language == "zh"
