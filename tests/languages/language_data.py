"""Helpers of the language tests: the French, German and Chinese texts of tests/data, tokenizers trained on them."""

from __future__ import annotations

from pathlib import Path

DATA = Path(__file__).resolve().parent.parent / "data"
#: language code -> test text (a few hundred words, one document a line)
TEXTS = {"fr": DATA / "fr_notes.txt", "de": DATA / "de_notes.txt", "zh": DATA / "zh_notes.txt"}


def read_lines(code: str) -> list[str]:
    """The documents of the ``code`` test text."""
    return [line for line in TEXTS[code].read_text(encoding="utf-8").splitlines() if line.strip()]


def trained(code: str, kind: str = "wordpiece", vocab_size: int = 800):
    """A tokenizer of ``kind`` trained with mlmkit on the ``code`` test text (BERT special tokens)."""
    from mlmkit.tokenization.train import train_tokenizer

    return train_tokenizer(read_lines(code), kind=kind, vocab_size=vocab_size, round_to=1).tokenizer
