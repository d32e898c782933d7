"""PMI-Masking: mask high-PMI word n-grams (collocations) as single units.

Levine, Lenz, Lieber, Abend, Leyton-Brown, Tennenholtz and Shoham, "PMI-Masking:
Principled Masking of Correlated Spans", ICLR 2021. Random-token masking lets a model
recover a masked token from its immediate neighbours inside the same collocation
("e-[MASK]-val-ue", "New [MASK] City"); masking whole collocations forces it to use
the wider context. The paper reaches the end performance of random-span masking in
about half the training time.

Two steps:

1. **Build the vocabulary once per corpus** with ``mlmkit masking build-vocab``: word
   n-grams (n = 2..5) ranked by the paper's PMI_n measure, the top of each length kept
   (see :mod:`mlmkit.masking.pmi_vocab` for the formula and the choices made), written
   as JSON::

       mlmkit masking build-vocab embedded -o runs/pmi-vocab.json
       mlmkit masking build-vocab corpus/*.txt -o pmi-vocab.json --model bert-base-uncased --max-n 5

   ``CORPUS`` takes what ``data.source`` of a pre-training recipe takes ('embedded',
   local txt/csv/json/jsonl/parquet files, directories or globs, or a Hub dataset
   name). Words come from the tokenizer given by ``--model`` (default: the embedded
   model's), through its pre-tokenizer and normaliser, so use the tokenizer you will
   pre-train with (or one that splits and lowercases the same way).

2. **Pre-train with** ``masking.name: pmi`` and ``masking.vocab: PATH``::

       mlmkit pretrain --recipe demo-pmi
       mlmkit pretrain --recipe demo masking.name=pmi masking.vocab=runs/pmi-vocab.json

How units are formed and chosen:

* At data preparation (once, with tokenization, not per batch) each document's words
  are segmented into vocabulary n-grams as the paper describes (AI21Labs/pmi-masking,
  "How to implement PMI masking"): an entry that contains another wins, and of
  overlapping entries one is chosen at random. Here that is a dynamic program that
  covers the most words with n-grams, then uses the fewest units, with ties drawn
  uniformly (seeded by the document, so a document always segments the same way;
  the paper may choose anew at every masking). Every word not covered by an n-gram is a
  unit of its own (so it is masked whole, as in whole-word masking). The unit of every
  token is stored as the ``unit_ids`` feature and packed with the tokens.
* At masking time units are visited in random order and taken while the row's token
  budget (``ratio`` x ordinary tokens) lasts (:func:`mlmkit.masking.units.select_units`);
  an n-gram is never split, and the mask / random / keep decision is made once per
  unit.

Parameters (recipe ``masking`` section):

* ``vocab`` (required): path of the JSON vocabulary written by ``build-vocab``.
* ``ratio`` (0.15), ``mask_replace_prob`` (0.8), ``random_replace_prob`` (0.1): as for
  every strategy.

Example recipe section::

    masking:
      name: pmi
      vocab: runs/pmi-vocab.json
      ratio: 0.15
"""

from __future__ import annotations

import logging
import random
import zlib
from pathlib import Path
from typing import Any

import torch

from mlmkit.errors import UserError
from mlmkit.masking.base import Selection, WordMaskingStrategy, run_unit_ids
from mlmkit.masking.pmi_vocab import PmiVocabulary, document_words, word_normalizer
from mlmkit.masking.units import candidate_mask, select_units

log = logging.getLogger(__name__)


def segment_units(
    words: list[str], ngrams: dict[int, set[tuple[str, ...]]], max_n: int, rng: random.Random | None = None
) -> list[int]:
    """Segment ``words`` into vocabulary n-grams and single words, optimally over the whole document.

    Among all segmentations, the chosen one covers the most words with vocabulary n-grams,
    then uses the fewest units (so an entry that contains another wins, as in the paper:
    "the united states air force" over "the united states" + "air force"); the
    segmentations that tie (overlapping entries: "by the way" + "out" or "by" + "the way
    out") are drawn uniformly at random, as the paper chooses one at random. A dynamic
    program over word positions: time ``O(len(words) * max_n)``.

    Args:
        words: The words of one document, in order.
        ngrams: ``{n: set of n-word tuples}``.
        max_n: Longest n-gram length in ``ngrams``.
        rng: Breaks ties; by default seeded from the words, so a document always segments the same way.

    Returns:
        For each word, the index of the first word of its unit (a word outside every
        chosen n-gram is its own unit).
    """
    size = len(words)
    # best[i]: (words covered, -units) of the best segmentation of words[i:]; ways[i]: how many reach it
    best: list[tuple[int, int]] = [(0, 0)] * (size + 1)
    ways = [1] * (size + 1)
    choices: list[list[int]] = [[] for _ in range(size)]
    for i in range(size - 1, -1, -1):
        options = {1: (best[i + 1][0], best[i + 1][1] - 1)}
        for n in range(2, min(max_n, size - i) + 1):
            bucket = ngrams.get(n)
            if bucket and tuple(words[i:i + n]) in bucket:
                options[n] = (best[i + n][0] + n, best[i + n][1] - 1)
        best[i] = max(options.values())
        choices[i] = [n for n, score in options.items() if score == best[i]]
        ways[i] = sum(ways[i + n] for n in choices[i])
    if rng is None:
        rng = random.Random(zlib.crc32("\x1f".join(words).encode("utf-8")))
    units = list(range(size))
    i = 0
    while i < size:
        step = choices[i][0]
        if len(choices[i]) > 1:  # uniform over optimal segmentations: weight each choice by its completions
            step = rng.choices(choices[i], weights=[ways[i + n] for n in choices[i]])[0]
        for k in range(i + 1, i + step):
            units[k] = i
        i += step
    return units


class PmiMasking(WordMaskingStrategy):
    """Mask whole high-PMI word n-grams (and otherwise whole words) until ``ratio`` of the tokens are predicted.

    Args:
        vocab: Path of the n-gram vocabulary JSON written by ``mlmkit masking build-vocab``.
        language: ISO 639 code of the corpus or ``auto``; for scripts without spaces the n-grams
            are n-grams of segmented words (build the vocabulary with the same ``--language``).
        segmenter: Word segmenter (see :class:`~mlmkit.masking.base.WordMaskingStrategy`).
    """

    name = "pmi"
    description = "Whole high-PMI word n-grams (collocation vocabulary from `masking build-vocab`), else whole words."
    paper = "Levine et al., PMI-Masking, ICLR 2021"
    features = ("unit_ids",)
    group_features = ("unit_ids",)

    def __init__(self, vocab: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not vocab:
            raise UserError("the pmi masking strategy needs masking.vocab, the path of an n-gram vocabulary; "
                            "build one with `mlmkit masking build-vocab CORPUS -o pmi-vocab.json`")
        path = Path(str(vocab)).expanduser()
        if not path.is_file():
            raise UserError(f"PMI vocabulary {vocab} not found; build it with "
                            f"`mlmkit masking build-vocab CORPUS -o {vocab}` (CORPUS as in data.source, "
                            f"e.g. 'embedded')")
        self.vocab_path = str(path)
        self.vocabulary = PmiVocabulary.load(path)
        self.ngrams: dict[int, set[tuple[str, ...]]] = {
            n: {words for words, _, _ in entries} for n, entries in self.vocabulary.ngrams.items() if entries
        }
        self.max_n = max(self.ngrams, default=1)

    def bind(self, tokenizer: Any) -> None:
        super().bind(tokenizer)
        lowercase = word_normalizer(tokenizer)("A") == "a"
        if self.vocabulary.word_splitter and lowercase != self.vocabulary.lowercase:
            log.warning("the PMI vocabulary %s was built with a tokenizer that %s, but this one %s; few n-grams "
                        "may match", self.vocab_path, "lowercases" if self.vocabulary.lowercase else "keeps case",
                        "lowercases" if lowercase else "keeps case")
        built_with = self.vocabulary.meta.get("segmenter")
        if self.language != "auto" and built_with and built_with != self.segmenter:
            log.warning("the PMI vocabulary %s was built with words from the %s segmenter, but masking cuts words "
                        "with %s (masking.language=%s); few n-grams may match: build it with --language %s",
                        self.vocab_path, built_with, self.segmenter, self.language, self.language)

    def token_features(self, texts: list[str], encodings: Any) -> dict[str, list[list[int]]]:
        """``unit_ids``: per token, the word index of the first word of its n-gram unit (-1 on special tokens)."""
        if self.tokenizer is None:
            raise RuntimeError("call bind(tokenizer) before token_features: words are spelled by its normaliser")
        normalize = word_normalizer(self.tokenizer)
        offsets_all = encodings.get("offset_mapping") if hasattr(encodings, "get") else None
        out: list[list[int]] = []
        segmented = self.word_ids(texts, encodings) if "word_ids" in self.features else None
        for i, text in enumerate(texts):
            word_ids = encodings.word_ids(i) if segmented is None else [None if w < 0 else w for w in segmented[i]]
            if offsets_all is None:  # no offsets (slow tokenizer): whole words only
                out.append([-1 if w is None else int(w) for w in word_ids])
                continue
            words, ids = document_words(text, word_ids, offsets_all[i], normalize)
            first = segment_units(words, self.ngrams, self.max_n)
            unit_of_word: dict[int, int] = {}
            for k, head in enumerate(first):
                if head != k:
                    # every word from the unit's first word to this one (whitespace-only words
                    # in between included) joins the unit, so a unit stays contiguous
                    for w in range(ids[head], ids[k] + 1):
                        unit_of_word[w] = ids[head]
            out.append([-1 if w is None else unit_of_word.get(w, int(w)) for w in word_ids])
        features = {"unit_ids": out}
        if segmented is not None:
            features["word_ids"] = segmented
        return features

    def select(self, batch: dict[str, torch.Tensor], ratio: float, generator: torch.Generator) -> Selection:
        if "unit_ids" not in batch:
            raise ValueError("the pmi strategy needs the 'unit_ids' feature computed by token_features when the "
                             "corpus is tokenized (mlmkit.data.packing.tokenize_corpus with this strategy)")
        candidates = candidate_mask(batch)
        units = run_unit_ids(torch.where(candidates, batch["unit_ids"], torch.full_like(batch["unit_ids"], -1)))
        return select_units(units, candidates, ratio, generator)
