"""Whole-word masking: every sub-token of a chosen word is predicted together."""

from __future__ import annotations

import torch

from mlmkit.masking.base import Selection, WordMaskingStrategy
from mlmkit.masking.units import candidate_mask, select_units, word_unit_ids


class WholeWordMasking(WordMaskingStrategy):
    """Predict whole words until ``ratio`` of the tokens are predicted; corruption decided per word.

    Words come from the fast tokenizer's word ids (kept with the tokens when the corpus
    is packed), so this works for WordPiece, byte-level BPE and SentencePiece / Unigram
    tokenizers alike, not only for ``##`` continuation prefixes. Words are visited in a
    random order and taken while the row's token budget lasts. Unlike Hugging Face's
    whole-word collator, the full mask / random / keep split applies, one draw per word:
    a word is either entirely masked, entirely replaced by random tokens, or kept.
    Time and memory grow linearly with the sequence length (one sort per row).

    For scripts written without spaces, words come from a segmenter instead
    (``masking.language: zh`` segments with jieba), aligned to the sub-tokens at data
    preparation: a Chinese whole word is then a jieba word, not a single character.

    The parameters are those of :class:`~mlmkit.masking.base.WordMaskingStrategy`:
    ``language``, ``segmenter``, ``ratio``, ``mask_replace_prob`` and ``random_replace_prob``.
    """

    name = "whole_word"
    description = "Whole words (all sub-tokens together, any fast tokenizer); 80/10/10 decided per word."
    paper = "Devlin et al., BERT (whole-word masking release, 2019); Cui et al., IEEE/ACM TASLP 2021"

    def select(self, batch: dict[str, torch.Tensor], ratio: float, generator: torch.Generator) -> Selection:
        return select_units(word_unit_ids(batch), candidate_mask(batch), ratio, generator)
