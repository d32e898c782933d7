"""Word segmentation: Chinese whole-word units follow jieba's words; alignment, plug-ins, errors, caching."""

from __future__ import annotations

import importlib.util

import jieba
import pytest
import torch
from language_data import read_lines, trained

from mlmkit.errors import UserError
from mlmkit.masking.collator import MaskingCollator
from mlmkit.masking.preview import encode_text
from mlmkit.masking.registry import build_strategy
from mlmkit.masking.segmentation import align_words, load_segmenter, resolve_segmenter
from mlmkit.masking.units import word_unit_ids


@pytest.fixture(scope="module")
def zh_tokenizer():
    return trained("zh")


def jieba_words(text: str) -> list[tuple[int, int]]:
    """jieba's words of ``text`` (default precise mode), as character spans, whitespace left out."""
    return [(start, end) for word, start, end in jieba.tokenize(text) if not word.isspace()]


def unit_spans(text: str, tokenizer, strategy, seed: int = 0, ratio: float = 0.5) -> tuple[list, list]:
    """Mask ``text`` once; returns (character span of every word unit, of every predicted unit)."""
    example, encodings = encode_text(text, tokenizer, strategy)
    offsets = encodings["offset_mapping"][0]
    batch = MaskingCollator(tokenizer, strategy, seed=seed, pad_to_multiple_of=None).pad([example])
    units = word_unit_ids(batch)[0]
    selection = strategy.select(batch, ratio, torch.Generator().manual_seed(seed))
    spans: dict[int, list[int]] = {}
    predicted: dict[int, list[int]] = {}
    for position, unit in enumerate(units.tolist()):
        if unit < 0:
            continue
        start, end = offsets[position]
        for table in (spans, predicted) if bool(selection.predicted[0, position]) else (spans,):
            span = table.setdefault(unit, [start, end])
            span[0], span[1] = min(span[0], start), max(span[1], end)
    # a unit is predicted whole or not at all
    for unit, span in predicted.items():
        assert span == spans[unit]
    return sorted(map(tuple, spans.values())), sorted(map(tuple, predicted.values()))


def test_chinese_whole_word_units_are_exactly_jiebas_words(zh_tokenizer):
    strategy = build_strategy({"name": "whole_word", "language": "zh"})
    strategy.bind(zh_tokenizer)
    assert strategy.segmenter == "jieba" and "word_ids" in strategy.features
    multi_character = 0
    for text in read_lines("zh"):
        words, predicted = unit_spans(text, zh_tokenizer, strategy)
        # every Han character is one WordPiece token here, so units equal jieba's words exactly:
        # no word split in two units, no unit across two words
        assert words == jieba_words(text)
        assert predicted and set(predicted) <= set(words)
        multi_character += sum(end - start > 1 for start, end in predicted)
    assert multi_character > 0  # whole words of several characters really get masked together


@pytest.mark.parametrize("kind", ["unigram", "bpe"])
def test_units_never_split_a_token_nor_a_jieba_word(kind):
    # Unigram / BPE pieces may cross jieba's word boundaries: such words merge, nothing else does
    tokenizer = trained("zh", kind=kind, vocab_size=600)
    strategy = build_strategy({"name": "whole_word", "language": "zh"})
    strategy.bind(tokenizer)
    for text in read_lines("zh"):
        starts = {s for s, _ in jieba_words(text)}
        ends = {e for _, e in jieba_words(text)}
        words, _ = unit_spans(text, tokenizer, strategy)
        for start, end in words:
            # tokens of a unit cover whole jieba words: the unit starts and ends on jieba boundaries
            # (NFKC may shift the end of a token onto the next character, e.g. full-width commas)
            assert start in starts and (end in ends or end in starts)


def test_alignment_merges_words_a_token_straddles():
    text = "abcdef"
    spans = [(0, 2), (2, 3), (3, 6)]  # words "ab", "c", "def"
    word_ids = [None, 0, 0, 0, None]
    offsets = [(0, 0), (0, 1), (1, 3), (3, 6), (0, 0)]  # token "bc" straddles "ab" and "c"
    assert align_words(text, spans, word_ids, offsets) == [-1, 0, 0, 1, -1]
    # a lone marker token (no character of its own) stays with its tokenizer word's next token
    text = " ab cd"
    word_ids = [None, 0, 0, 1, None]
    offsets = [(0, 0), (0, 1), (1, 3), (4, 6), (0, 0)]
    assert align_words(text, [(1, 3), (4, 6)], word_ids, offsets) == [-1, 0, 0, 1, -1]


def test_segmenter_names_resolve_by_language():
    assert resolve_segmenter("auto", "zh") == "jieba" and resolve_segmenter("auto", "fr") == "tokenizer"
    assert resolve_segmenter("auto", "ja") == "spacy" and resolve_segmenter("spacy", "de") == "spacy"
    with pytest.raises(UserError, match="unknown masking.segmenter"):
        resolve_segmenter("mecab", "ja")
    assert load_segmenter("tokenizer", "en") is None


def test_spacy_segmenter_gives_word_spans():
    segment = load_segmenter("spacy", "fr")
    text = "Aujourd'hui, le marché ouvre."
    assert [text[s:e] for s, e in segment(text)] == ["Aujourd'hui", ",", "le", "marché", "ouvre", "."]


def test_plugin_segmenter_from_a_dotted_path(tmp_path, monkeypatch, zh_tokenizer):
    (tmp_path / "pair_segmenter.py").write_text(
        "def pairs(text):\n    return [(i, min(i + 2, len(text))) for i in range(0, len(text), 2)]\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    strategy = build_strategy({"name": "whole_word", "language": "zh", "segmenter": "pair_segmenter:pairs"})
    strategy.bind(zh_tokenizer)
    words, _ = unit_spans("我们在面包店", zh_tokenizer, strategy)
    assert words == [(0, 2), (2, 4), (4, 6)]
    with pytest.raises(UserError, match="cannot import masking.segmenter"):
        load_segmenter("pair_segmenter:missing", "zh")


def test_missing_jieba_is_one_user_error_naming_the_extra(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "jieba" else real(name, *a))
    with pytest.raises(UserError) as info:
        build_strategy({"name": "whole_word", "language": "zh"})
    message = str(info.value)
    assert "pip install 'mlmkit[zh]'" in message and "jieba" in message and "\n" not in message


@pytest.mark.skipif(importlib.util.find_spec("sudachipy") is not None, reason="sudachipy is installed here")
def test_japanese_without_sudachipy_fails_when_the_strategy_is_built():
    with pytest.raises(UserError, match="needs sudachipy: pip install spacy sudachipy sudachidict_core"):
        build_strategy({"name": "whole_word", "language": "ja"})


def test_segmentation_runs_once_per_corpus_and_is_keyed(tmp_path, monkeypatch, zh_tokenizer, preparations):
    from mlmkit.config.schema import PretrainDataConfig
    from mlmkit.data import cache

    # a plug-in segmenter (jieba) that logs every document it segments to a file: preparation may run
    # in worker processes, whose counters the test could not read
    log = tmp_path / "segmented.log"
    (tmp_path / "logged_jieba.py").write_text(
        "import jieba\n"
        "def segment(text):\n"
        f"    with open({str(log)!r}, 'a', encoding='utf-8') as f:\n"
        "        f.write('x\\n')\n"
        "    return [(s, e) for w, s, e in jieba.tokenize(text) if not w.isspace()]\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    corpus = tmp_path / "zh.txt"
    lines = read_lines("zh")
    corpus.write_text("\n".join(lines) + "\n", encoding="utf-8")
    data = PretrainDataConfig(source=str(corpus), cache_dir=str(tmp_path / "prepared"), max_seq_length=64)

    def prepared(**spec):
        strategy = build_strategy({"name": "whole_word", "language": "zh", **spec})
        strategy.bind(zh_tokenizer)
        return cache.prepared_corpus(data, zh_tokenizer, strategy)

    def segmented() -> int:
        return len(log.read_text().splitlines()) if log.exists() else 0

    first = prepared(segmenter="logged_jieba:segment")
    assert segmented() == len(lines) and not first.reused
    second = prepared(segmenter="logged_jieba:segment")
    assert second.reused and second.path == first.path and len(preparations) == 1
    assert segmented() == len(lines)  # the cache hit segmented nothing
    assert second.blocks["word_ids"] == first.blocks["word_ids"]
    # the same words as the built-in jieba segmenter, which is another key (the segmenter is part of it)
    builtin = prepared()
    assert builtin.path != first.path and builtin.blocks["word_ids"] == first.blocks["word_ids"]
    plain = prepared(segmenter="tokenizer")
    assert plain.path not in (first.path, builtin.path) and len(preparations) == 3
    assert plain.blocks["word_ids"] != first.blocks["word_ids"]
