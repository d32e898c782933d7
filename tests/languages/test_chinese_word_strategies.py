"""span and pmi on Chinese: spans and n-grams are made of whole jieba words."""

from __future__ import annotations

import jieba
import pytest
import torch
from language_data import TEXTS, read_lines, trained

from mlmkit.masking.collator import MaskingCollator
from mlmkit.masking.pmi_vocab import PmiVocabulary, build_vocab_file
from mlmkit.masking.preview import encode_text
from mlmkit.masking.registry import build_strategy


@pytest.fixture(scope="module")
def zh_tokenizer_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("zh-tokenizer")
    trained("zh").save_pretrained(path)
    return path


def boundaries(text: str) -> tuple[set[int], set[int]]:
    words = [(s, e) for w, s, e in jieba.tokenize(text) if not w.isspace()]
    return {s for s, _ in words}, {e for _, e in words}


def predicted_units(text: str, tokenizer, strategy, seed: int, ratio: float) -> list[tuple[int, int]]:
    """Character span of every predicted unit of ``text``."""
    example, encodings = encode_text(text, tokenizer, strategy)
    batch = MaskingCollator(tokenizer, strategy, seed=seed, pad_to_multiple_of=None).pad([example])
    selection = strategy.select(batch, ratio, torch.Generator().manual_seed(seed))
    spans: dict[int, list[int]] = {}
    for position in selection.predicted[0].nonzero().squeeze(1).tolist():
        start, end = encodings["offset_mapping"][0][position]
        span = spans.setdefault(int(selection.units[0, position]), [start, end])
        span[0], span[1] = min(span[0], start), max(span[1], end)
    return sorted(map(tuple, spans.values()))


@pytest.mark.slow
def test_chinese_spans_are_runs_of_whole_jieba_words(zh_tokenizer_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(zh_tokenizer_dir)
    strategy = build_strategy({"name": "span", "language": "zh"})
    strategy.bind(tokenizer)
    several = 0
    for seed, text in enumerate(read_lines("zh")):
        starts, ends = boundaries(text)
        for start, end in predicted_units(text, tokenizer, strategy, seed, ratio=0.3):
            assert start in starts and end in ends  # a span never cuts a jieba word
            several += len([s for s in starts if start <= s < end]) > 1
    assert several > 0  # spans of several words exist


def test_chinese_pmi_vocabulary_and_units_are_jieba_word_ngrams(tmp_path, zh_tokenizer_dir):
    from transformers import AutoTokenizer

    vocab = tmp_path / "zh-pmi.json"
    summary = build_vocab_file([str(TEXTS["zh"])], vocab, model=str(zh_tokenizer_dir), min_count=1, size=400,
                               language="zh")
    assert summary["language"] == "zh" and summary["segmenter"] == "jieba" and summary["entries"][2] > 0
    vocabulary = PmiVocabulary.load(vocab)
    corpus_words = {w for text in read_lines("zh") for w in jieba.lcut(text)}
    entries = [words for n in vocabulary.ngrams for words, _, _ in vocabulary.ngrams[n]]
    assert all(set(words) <= corpus_words for words in entries)  # n-grams of jieba words, not of characters
    assert any(len(word) > 1 for words in entries for word in words)

    tokenizer = AutoTokenizer.from_pretrained(zh_tokenizer_dir)
    strategy = build_strategy({"name": "pmi", "vocab": str(vocab), "language": "zh"})
    strategy.bind(tokenizer)
    spelled = {"".join(words) for words in entries}
    ngram_units = 0
    for seed, text in enumerate(read_lines("zh")):
        starts, ends = boundaries(text)
        for start, end in predicted_units(text, tokenizer, strategy, seed, ratio=0.4):
            assert start in starts and end in ends
            ngram_units += text[start:end] in spelled
    assert ngram_units > 0
