"""Word segmentation for word-based masking, and the alignment of sub-tokens to segmented words.

Whole-word, span, PMI, content-word and POS-weighted masking predict *words*. For
languages written with spaces a word is what the tokenizer's pre-tokenizer splits
off (its ``word_ids``). Scripts without spaces need a segmenter: BERT's tokenizers
split Chinese into single characters, so without one a "whole word" of Chinese is one
character (the reason Hugging Face's ``run_mlm_wwm.py`` takes reference files from an
external segmenter). Here the segmenter runs once per document at data preparation,
its words are aligned to the sub-tokens through the fast tokenizer's character offsets,
and the resulting word index of every token replaces ``word_ids`` in the prepared corpus
(cached with it, like POS tags).

``masking.segmenter`` (default ``auto``) picks one:

* ``auto``: the language's default (:data:`DEFAULT_SEGMENTERS`: ``jieba`` for ``zh``,
  spaCy's tokenizer for ``ja`` and ``th``), otherwise ``tokenizer``;
* ``tokenizer``: no segmentation, the tokenizer's own words (mlmkit's behaviour for
  languages written with spaces);
* ``jieba``: `jieba <https://github.com/fxsjy/jieba>`_'s default (precise) mode, for
  Chinese (``pip install 'mlmkit[zh]'``);
* ``spacy``: ``spacy.blank(language)``'s rule-based tokenizer, for every language spaCy
  supports (Japanese needs ``sudachipy``, Thai ``pythainlp``, as spaCy says);
* ``package.module:function``: any function ``text -> iterable of (start, end)`` character
  spans of words (the segmenter plug-in point).

Alignment: a sub-token belongs to the segmented word holding its first non-space
character. A sub-token that straddles two segmented words (a BPE merge across a word
boundary) cannot be split, so those words become one unit: units never cut a sub-token,
and otherwise follow the segmenter exactly.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from mlmkit.errors import UserError

#: segmenter spec values with a built-in meaning
AUTO = "auto"
TOKENIZER = "tokenizer"
BUILTIN_SEGMENTERS = (AUTO, TOKENIZER, "jieba", "spacy")
#: languages written without spaces between words, and the segmenter ``auto`` gives them
DEFAULT_SEGMENTERS: dict[str, str] = {"zh": "jieba", "ja": "spacy", "th": "spacy"}
#: modules spaCy's tokenizer of a language needs besides spaCy
SPACY_TOKENIZER_NEEDS: dict[str, str] = {"ja": "sudachipy", "th": "pythainlp"}
#: what to install for a segmenter (the optional extra first)
INSTALL_HINTS: dict[str, str] = {
    "jieba": "pip install 'mlmkit[zh]'",
    "spacy:ja": "pip install spacy sudachipy sudachidict_core",
    "spacy:th": "pip install spacy pythainlp",
    "spacy": "pip install spacy",
}

Span = tuple[int, int]
Segmenter = Callable[[str], list[Span]]


def resolve_segmenter(spec: str | None, language: str) -> str:
    """The segmenter name for ``masking.segmenter`` = ``spec`` and a (resolved) language code.

    Raises:
        UserError: for an unknown name.
    """
    name = AUTO if spec is None else str(spec).strip()
    if name == AUTO:
        return DEFAULT_SEGMENTERS.get(language, TOKENIZER)
    if name in BUILTIN_SEGMENTERS or ":" in name:
        return name
    raise UserError(f"unknown masking.segmenter {spec!r}: use one of {', '.join(BUILTIN_SEGMENTERS)} or "
                    f"'package.module:function' (text -> (start, end) word spans)")


def check_segmenter(name: str, language: str) -> None:
    """Raise a one-line :class:`UserError` naming what to install when segmenter ``name`` cannot run."""
    if name == "jieba" and importlib.util.find_spec("jieba") is None:
        raise UserError(f"masking.language={language} segments words with jieba, which is not installed: "
                        f"{INSTALL_HINTS['jieba']}")
    if name == "spacy" and importlib.util.find_spec("spacy") is None:
        raise UserError(f"masking.segmenter=spacy needs spaCy: {INSTALL_HINTS['spacy']}")
    needed = SPACY_TOKENIZER_NEEDS.get(language)
    if name == "spacy" and needed and importlib.util.find_spec(needed) is None:
        raise UserError(f"masking.language={language} segments words with spaCy's tokenizer, which needs {needed}: "
                        f"{INSTALL_HINTS[f'spacy:{language}']}")


def _jieba_segmenter() -> Segmenter:
    import jieba  # optional: only Chinese word segmentation needs it (the zh extra)

    logging.getLogger("jieba").setLevel(logging.WARNING)  # it announces its dictionary on stderr otherwise
    tokenizer = jieba.dt  # the process-wide default: its dictionary loads once per process

    def segment(text: str) -> list[Span]:
        return [(start, end) for word, start, end in tokenizer.tokenize(text) if not word.isspace()]

    return segment


def _spacy_segmenter(language: str) -> Segmenter:
    import spacy  # optional: only spaCy word segmentation needs it (the embedded extra)

    try:
        nlp = spacy.blank(language)
    except (ImportError, ValueError, KeyError) as exc:
        hint = INSTALL_HINTS.get(f"spacy:{language}", "see https://spacy.io/usage/models#languages")
        raise UserError(f"spaCy cannot segment language {language!r} ({str(exc).splitlines()[0]}); {hint}") from exc

    def segment(text: str) -> list[Span]:
        if len(text) >= nlp.max_length:
            nlp.max_length = len(text) + 1
        return [(tok.idx, tok.idx + len(tok.text)) for tok in nlp.make_doc(text) if not tok.is_space]

    return segment


def _plugin_segmenter(target: str) -> Segmenter:
    module_name, _, attr = target.partition(":")
    try:
        function = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise UserError(f"cannot import masking.segmenter {target!r}: {exc}") from exc
    if not callable(function):
        raise UserError(f"masking.segmenter {target!r} is not callable")

    def segment(text: str) -> list[Span]:
        return [(int(start), int(end)) for start, end in function(text)]

    return segment


def load_segmenter(name: str, language: str) -> Segmenter | None:
    """A function ``text -> [(start, end), ...]`` for segmenter ``name``; None for ``tokenizer`` (no segmentation)."""
    check_segmenter(name, language)
    if name == TOKENIZER:
        return None
    if name == "jieba":
        return _jieba_segmenter()
    if name == "spacy":
        return _spacy_segmenter(language)
    return _plugin_segmenter(name)


def align_words(
    text: str, spans: Iterable[Span], word_ids: Sequence[int | None], offsets: Sequence[Span]
) -> list[int]:
    """The segmented word of every sub-token: ids 0, 1, 2... in order, -1 on special tokens.

    Args:
        text: The document.
        spans: Character spans of its segmented words, in order.
        word_ids: The fast tokenizer's word index of every token (None for special tokens).
        offsets: The fast tokenizer's character span of every token.

    A token takes the segmented words under its non-space characters; a token with none
    (a lone "▁" marker, a space) takes those of the nearest token of the same tokenizer
    word, or else is a unit of its own. Tokens whose segmented words overlap form one unit,
    so a token that reaches across a word boundary merges the words it touches: units
    never split a token, and otherwise follow the segmenter exactly.
    """
    owner = [-1] * len(text)
    for index, (start, end) in enumerate(spans):
        owner[start:end] = [index] * (end - start)
    ranges: list[tuple[int, int] | None] = []
    for word, (start, end) in zip(word_ids, offsets, strict=True):
        covered = [owner[c] for c in range(start, min(end, len(text))) if owner[c] >= 0 and not text[c].isspace()]
        ranges.append((min(covered), max(covered)) if word is not None and covered else None)
    for i, word in enumerate(word_ids):
        if word is None or ranges[i] is not None:
            continue
        for direction in (range(i + 1, len(word_ids)), range(i - 1, -1, -1)):
            neighbour = next((j for j in direction if word_ids[j] != word or ranges[j] is not None), None)
            if neighbour is not None and word_ids[neighbour] == word:
                ranges[i] = ranges[neighbour]
                break
    out = [-1] * len(word_ids)
    group, group_last = -1, -2
    for i, word in enumerate(word_ids):
        if word is None:
            continue
        span = ranges[i]
        if span is None:  # a unit of its own
            group, group_last = group + 1, -2
        else:
            if group < 0 or span[0] > group_last:
                group += 1
            group_last = max(group_last, span[1])
        out[i] = group
    return out


def segmented_word_ids(segment: Segmenter, texts: Sequence[str], encodings: Any) -> list[list[int]]:
    """Per document of a tokenized batch, the segmented word id of every token (-1 on special tokens).

    Raises:
        UserError: when the encodings carry no character offsets (a slow tokenizer).
    """
    offsets_all = encodings.get("offset_mapping") if hasattr(encodings, "get") else None
    if offsets_all is None:
        raise UserError("word segmentation needs a fast tokenizer (character offsets to align words to tokens)")
    out = []
    for index, text in enumerate(texts):
        out.append(align_words(text, segment(text), encodings.word_ids(index), offsets_all[index]))
    return out


def word_spans(text: str, word_ids: Sequence[int | None], offsets: Sequence[Span]) -> dict[int, Span]:
    """``{word id: (start, end)}``: the character span every word's tokens cover (special tokens skipped)."""
    spans: dict[int, list[int]] = {}
    for word, (start, end) in zip(word_ids, offsets, strict=True):
        if word is None or word < 0:
            continue
        span = spans.setdefault(word, [start, end])
        span[0], span[1] = min(span[0], start), max(span[1], end)
    return {w: (s, e) for w, (s, e) in spans.items()}
