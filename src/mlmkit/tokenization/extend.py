"""Extend a tokenizer with frequent domain words and initialise their embeddings.

Domain text (clinical notes, code, a new language variety) is full of words that a
general tokenizer cuts into several pieces. This module counts the words of a corpus
*as the tokenizer itself sees them* (its normalizer and pre-tokenizer), keeps those its
model splits into two or more pieces, adds the N most frequent as new tokens, and
initialises each new input-embedding row as the mean of the rows of the pieces the word
used to be split into (Hewitt 2021, "Initializing new word embeddings for pretrained
language models"). An untied output layer gets the same treatment, and the output bias
of a new token is the mean of its pieces' biases, so the model's first predictions for
it are sensible.

New words are added as whole-word tokens (``single_word``, matched on normalized text),
which changes the tokenization of exactly those words: every old token keeps its id and
embedding, and every other word is tokenized as before. For tokenizers that carry the
preceding space inside tokens (byte-level BPE, SentencePiece/Metaspace), the new token
absorbs that space (``lstrip``), as RoBERTa's ``<mask>`` does; decoding then writes it
without the space before it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tokenizers import AddedToken

from mlmkit.config.schema import ModelConfig
from mlmkit.data.sources import load_corpora
from mlmkit.errors import UserError
from mlmkit.io.outputs import prepare_output_dir, save_pretrained_atomic
from mlmkit.modeling.loading import load_mlm_model
from mlmkit.tokenization.train import iter_text_batches


@dataclass
class NewWord:
    """A word added to the vocabulary."""

    word: str
    """The token's text (as matched in normalized text)."""
    count: int
    """Occurrences in the corpus where the new token will match."""
    pieces: list[str]
    """The tokens it was split into before."""
    piece_ids: list[int]
    """Their ids (the rows averaged to initialise the new embedding)."""
    token_id: int = -1
    """Its new id (set once added)."""


@dataclass
class ExtensionResult:
    """What :func:`extend_vocabulary_on_corpus` did."""

    output_dir: str
    old_vocab_size: int
    new_vocab_size: int
    documents: int
    words: list[NewWord] = field(default_factory=list)
    tied_output: bool = True


def _is_word_char(ch: str) -> bool:
    # the tokenizers library's word boundary for single_word tokens
    return ch.isalnum() or ch == "_"


def count_split_words(tokenizer: Any, batches: Iterable[list[str]]) -> tuple[Counter, dict[str, Counter], bool]:
    """Count the corpus's words as the tokenizer's normalizer and pre-tokenizer cut them.

    Only occurrences with word boundaries on both sides are counted, since a whole-word
    token matches only there.

    Returns:
        ``(counts, forms, spaces_in_tokens)``: occurrences per word, per word the
        pre-token strings it appeared as (e.g. ``Ġword`` and ``word`` for byte-level BPE),
        and whether the pre-tokenizer keeps the preceding space inside tokens.
    """
    backend = tokenizer.backend_tokenizer
    normalizer, pre_tokenizer = backend.normalizer, backend.pre_tokenizer
    counts: Counter = Counter()
    forms: dict[str, Counter] = {}
    spaces_in_tokens = False
    for batch in batches:
        for text in batch:
            norm = normalizer.normalize_str(text) if normalizer is not None else text
            pieces = pre_tokenizer.pre_tokenize_str(norm) if pre_tokenizer is not None else [(norm, (0, len(norm)))]
            for piece, (start, end) in pieces:
                raw = norm[start:end]
                word = raw.strip()
                if not word or not (_is_word_char(word[0]) and _is_word_char(word[-1])):
                    continue
                if raw[0].isspace():
                    spaces_in_tokens = True
                left = start + (len(raw) - len(raw.lstrip()))
                right = left + len(word)
                if (left > 0 and _is_word_char(norm[left - 1])) or (right < len(norm) and _is_word_char(norm[right])):
                    continue
                counts[word] += 1
                forms.setdefault(word, Counter())[piece] += 1
    return counts, forms, spaces_in_tokens


def choose_new_words(tokenizer: Any, counts: Counter, forms: dict[str, Counter], n: int,
                     min_count: int = 2) -> list[NewWord]:
    """The ``n`` most frequent words the tokenizer splits into several pieces (ties: first seen first)."""
    model = tokenizer.backend_tokenizer.model
    existing = set(tokenizer.get_vocab())
    chosen: list[NewWord] = []
    for word, count in counts.most_common():
        if len(chosen) >= n or count < min_count:
            break
        if word in existing:
            continue
        form = forms[word].most_common(1)[0][0]
        tokens = model.tokenize(form)
        if len(tokens) < 2:
            continue
        chosen.append(NewWord(word=word, count=count, pieces=[t.value for t in tokens],
                              piece_ids=[t.id for t in tokens]))
    return chosen


def add_words(model: Any, tokenizer: Any, words: Sequence[NewWord], lstrip: bool) -> bool:
    """Add ``words`` to ``tokenizer`` and initialise their rows in ``model`` (in place).

    Returns:
        Whether the output layer is tied to the input embeddings.
    """
    old_size = len(tokenizer)
    tokenizer.add_tokens([AddedToken(w.word, single_word=True, lstrip=lstrip, normalized=True) for w in words])
    for w in words:
        w.token_id = tokenizer.convert_tokens_to_ids(w.word)
        if w.token_id < old_size:
            raise RuntimeError(f"new word {w.word!r} got an old id {w.token_id}")
    embeddings = model.get_input_embeddings()
    if len(tokenizer) > embeddings.num_embeddings:
        model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    embeddings = model.get_input_embeddings()
    output = model.get_output_embeddings()
    tied = output is None or output.weight is embeddings.weight
    bias = getattr(output, "bias", None) if output is not None else None
    with torch.no_grad():
        for w in words:
            rows = torch.tensor(w.piece_ids)
            embeddings.weight[w.token_id] = embeddings.weight[rows].mean(dim=0)
            if not tied:
                output.weight[w.token_id] = output.weight[rows].mean(dim=0)
            if bias is not None:
                bias[w.token_id] = bias[rows].mean()
    return tied


def extend_vocabulary_on_corpus(
    model_name: str,
    sources: Sequence[str],
    add: int,
    output_dir: str | Path,
    *,
    text_column: str = "text",
    split: str = "train",
    config_name: str | None = None,
    max_documents: int | None = None,
    min_count: int = 2,
    overwrite: bool = False,
) -> ExtensionResult:
    """Add the ``add`` most frequent split words of a corpus to a model's vocabulary and save both.

    Args:
        model_name: Model directory, Hub name or 'embedded'; loaded with its MLM head.
        sources: Corpora (files, directories, Hub datasets, 'embedded').
        add: How many words to add.
        output_dir: Where to save the extended model and tokenizer.
        text_column: Text column of csv/json/parquet/Hub corpora.
        split: Split of Hub datasets.
        config_name: Hub dataset configuration.
        max_documents: Count words in at most this many documents.
        min_count: Ignore words seen fewer times.
        overwrite: Replace a non-empty ``output_dir``.
    """
    if add < 1:
        raise UserError(f"--add must be at least 1, got {add}")
    corpus = load_corpora(sources, text_column, split, config_name, max_documents)
    model, tokenizer, _ = load_mlm_model(ModelConfig(name_or_path=model_name, attn_implementation=None))
    if not getattr(tokenizer, "is_fast", False):
        raise UserError(f"the tokenizer of {model_name!r} is not a fast tokenizer; extension needs one")
    out = prepare_output_dir(output_dir, overwrite)
    counts, forms, spaces_in_tokens = count_split_words(tokenizer, iter_text_batches(corpus))
    words = choose_new_words(tokenizer, counts, forms, add, min_count)
    if not words:
        raise UserError(f"no word of the corpus seen at least {min_count} times is split by the tokenizer of "
                        f"{model_name!r}; nothing to add")
    old_size = len(tokenizer)
    tied = add_words(model, tokenizer, words, lstrip=spaces_in_tokens)
    save_pretrained_atomic(out, model, tokenizer)
    return ExtensionResult(output_dir=str(out), old_vocab_size=old_size, new_vocab_size=len(tokenizer),
                           documents=len(corpus), words=words, tied_output=tied)
