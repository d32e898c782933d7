"""The masking-strategy contract.

A strategy decides *which* positions are predicted (``select``) and the base class
decides *how* each is corrupted (``corrupt``: mask token / random token / kept), per
token or per unit (word, span, n-gram) when ``select`` returns unit ids. The collator
owns padding and tensor plumbing; a strategy only sees padded tensors.

Batch tensors a strategy receives (all ``(batch, length)``):

* ``input_ids`` (long) – token ids, never modified in place.
* ``attention_mask`` (long) – 1 for real tokens.
* ``special_tokens_mask`` (bool) – True for special *and* padding tokens; these are
  never predicted.
* ``word_ids`` (long) – index of the word each token belongs to, -1 for special and
  padding tokens. Always present. Words are made unique per document when packing.
* any feature a strategy declares in ``features`` and computes once at data
  preparation through :meth:`MaskingStrategy.token_features` (padded with -1).

Everything is vectorized torch code driven by an explicit ``torch.Generator`` so a
batch masks identically for the same seed and step.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from mlmkit.data.packing import word_ids_of
from mlmkit.masking.language import AUTO, DEFAULT_LANGUAGE, detect_language, normalize_language
from mlmkit.masking.segmentation import (
    TOKENIZER,
    check_segmenter,
    load_segmenter,
    resolve_segmenter,
    segmented_word_ids,
)
from mlmkit.modeling.sparse_head import IGNORE_INDEX


@dataclass
class Selection:
    """What a strategy chose.

    Attributes:
        predicted: ``(B, L)`` bool, True where the model must predict the original token.
        units: optional ``(B, L)`` long; positions sharing a value (within a row) share one
            corruption decision (all masked, all random, or all kept). Values must lie in
            ``[0, L)``; -1 where nothing is predicted. ``None`` means per-token decisions.
    """

    predicted: torch.Tensor
    units: torch.Tensor | None = None


def run_starts(group_ids: torch.Tensor) -> torch.Tensor:
    """Mark the first position of every run of equal, non-negative ids along each row."""
    prev = torch.full_like(group_ids[:, :1], -1)
    shifted = torch.cat([prev, group_ids[:, :-1]], dim=1)
    return (group_ids >= 0) & (group_ids != shifted)


def run_unit_ids(group_ids: torch.Tensor) -> torch.Tensor:
    """Map each position to the index of the first position of its run (-1 where id < 0).

    Runs are maximal stretches of equal non-negative ids, so this works on word ids
    straight from a fast tokenizer, whatever its sub-word scheme. It runs on every batch,
    hence the few tensor operations: a run starts where the id changes, and a running
    maximum carries each start's position to the rest of its run.
    """
    invalid = group_ids < 0
    previous = torch.nn.functional.pad(group_ids[:, :-1], (1, 0), value=-1)
    starts = (group_ids != previous) & ~invalid
    positions = torch.arange(group_ids.shape[1], device=group_ids.device)
    return (starts * positions).cummax(dim=1).values.masked_fill_(invalid, -1)


class MaskingStrategy:
    """Base class of every masking strategy.

    Subclasses set ``name``, ``description`` and ``paper``, declare extra per-token
    ``features`` they need, and implement :meth:`select`. Parameters are keyword
    arguments of ``__init__`` with defaults; they are what a recipe's ``masking``
    section sets, and what ``mlmkit masking ls`` prints.

    Args:
        ratio: Share of maskable tokens to predict (a ratio schedule may override it per step).
        mask_replace_prob: Share of predicted units replaced by the mask token.
        random_replace_prob: Share of predicted units replaced by a random ordinary token;
            the rest are kept unchanged.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    paper: ClassVar[str] = ""
    features: ClassVar[tuple[str, ...]] = ()
    #: features that group tokens (offset per document when packing so they stay unique)
    group_features: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self, ratio: float = 0.15, mask_replace_prob: float = 0.8, random_replace_prob: float = 0.1
    ) -> None:
        for label, value in (
            ("ratio", ratio),
            ("mask_replace_prob", mask_replace_prob),
            ("random_replace_prob", random_replace_prob),
        ):
            if not 0.0 <= float(value) <= 1.0:
                raise ValueError(f"masking.{label} must be between 0 and 1, got {value}")
        if mask_replace_prob + random_replace_prob > 1.0 + 1e-9:
            raise ValueError("masking.mask_replace_prob + masking.random_replace_prob must not exceed 1")
        self.ratio = float(ratio)
        self.mask_replace_prob = float(mask_replace_prob)
        self.random_replace_prob = float(random_replace_prob)
        self.mask_token_id: int | None = None
        self.replacement_ids: torch.Tensor | None = None
        self.tokenizer: Any = None

    # ------------------------------------------------------------------ setup
    def bind(self, tokenizer: Any) -> None:
        """Attach the tokenizer: mask token id and the ordinary tokens used for random replacement."""
        if tokenizer.mask_token_id is None:
            raise ValueError("the tokenizer has no mask token, so it cannot be used for masked language modeling")
        self.tokenizer = tokenizer
        self.mask_token_id = int(tokenizer.mask_token_id)
        special = set(tokenizer.all_special_ids)
        ordinary = [i for i in range(len(tokenizer)) if i not in special]
        self.replacement_ids = torch.tensor(ordinary, dtype=torch.long)

    def token_features(self, texts: list[str], encodings: Any) -> dict[str, list[list[int]]]:
        """Compute the per-token features this strategy declares, once, at data preparation.

        Args:
            texts: The raw documents of one tokenization batch.
            encodings: The fast tokenizer's ``BatchEncoding`` for ``texts`` (with
                ``offset_mapping`` and ``word_ids``), special tokens included.

        Returns:
            ``{feature_name: one list of ints per document, aligned with its input_ids}``.
        """
        return {}

    # ------------------------------------------------------------------ masking
    def select(self, batch: dict[str, torch.Tensor], ratio: float, generator: torch.Generator) -> Selection:
        """Choose the predicted positions of a padded batch. Subclasses implement this."""
        raise NotImplementedError

    def corrupt(
        self, input_ids: torch.Tensor, selection: Selection, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Apply mask / random / keep to the predicted positions and build labels."""
        predicted = selection.predicted
        labels = torch.where(predicted, input_ids, torch.full_like(input_ids, IGNORE_INDEX))
        if selection.units is None:
            draw = torch.rand(input_ids.shape, generator=generator)
        else:
            # One uniform per unit id; units live in [0, L) so a (B, L) table covers them.
            per_unit = torch.rand(input_ids.shape, generator=generator)
            draw = per_unit.gather(1, selection.units.clamp(min=0))
        to_mask = predicted & (draw < self.mask_replace_prob)
        to_random = predicted & ~to_mask & (draw < self.mask_replace_prob + self.random_replace_prob)
        corrupted = input_ids.clone()
        corrupted[to_mask] = self.mask_token_id
        n_random = int(to_random.sum())
        if n_random:
            pick = torch.randint(len(self.replacement_ids), (n_random,), generator=generator)
            corrupted[to_random] = self.replacement_ids[pick]
        return corrupted, labels

    def __call__(
        self, batch: dict[str, torch.Tensor], ratio: float | None = None, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mask one padded batch; returns ``(corrupted_input_ids, labels)``."""
        _, corrupted, labels = self.mask_with_selection(batch, ratio, generator)
        return corrupted, labels

    def mask_with_selection(
        self, batch: dict[str, torch.Tensor], ratio: float | None = None, generator: torch.Generator | None = None
    ) -> tuple[Selection, torch.Tensor, torch.Tensor]:
        """What calling the strategy does, also returning the selection (units included) for previews and tests."""
        if self.mask_token_id is None:
            raise RuntimeError("call bind(tokenizer) before masking")
        generator = generator if generator is not None else torch.Generator().manual_seed(0)
        selection = self.select(batch, self.ratio if ratio is None else float(ratio), generator)
        selection.predicted = selection.predicted & ~batch["special_tokens_mask"]
        corrupted, labels = self.corrupt(batch["input_ids"], selection, generator)
        return selection, corrupted, labels

    # ------------------------------------------------------------------ training feedback and state
    def observe(self, batch: dict[str, torch.Tensor], token_losses: torch.Tensor) -> None:
        """Receive the per-position MLM loss of a step (``(B, L)``, 0 where not predicted).

        Strategies that learn from the loss (POS-weighted masking) override this; the
        training loop calls it after every forward pass when ``wants_feedback`` is True.
        """

    wants_feedback: ClassVar[bool] = False

    def log_values(self) -> dict[str, float]:
        """Numbers worth logging with the training metrics (e.g. the realized masking ratio)."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        """JSON-serialisable state saved with checkpoints (learned statistics); empty by default."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""

    # ------------------------------------------------------------------ introspection
    @classmethod
    def parameters(cls) -> dict[str, Any]:
        """Constructor parameters and their defaults, base ones included."""
        params: dict[str, Any] = {}
        for klass in reversed(cls.__mro__):
            init = klass.__dict__.get("__init__")
            if init is None or klass is object:
                continue
            for p in inspect.signature(init).parameters.values():
                if p.name == "self" or p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
                    continue
                params[p.name] = p.default
        return params


class WordMaskingStrategy(MaskingStrategy):
    """Base class of the strategies that predict words: they read the corpus language and segment words.

    With a segmenter (scripts without spaces: ``zh`` gets jieba, ``ja`` and ``th`` spaCy's
    tokenizer; or ``masking.segmenter`` set), the segmented word of every token replaces the
    tokenizer's ``word_ids`` once, at data preparation, and is cached with the prepared
    corpus; ``language`` and ``segmenter`` are then part of the cache key. Otherwise words
    are the tokenizer's, as before. See :mod:`mlmkit.masking.language` and
    :mod:`mlmkit.masking.segmentation`.

    Args:
        language: ISO 639 code of the corpus (``en``, ``fr``, ``zh``...) or ``auto`` (detected
            from a sample of the corpus when it is prepared).
        segmenter: ``auto`` (the language's default), ``tokenizer`` (no segmentation),
            ``jieba``, ``spacy``, or ``package.module:function`` returning word spans.
    """

    def __init__(self, language: str = "en", segmenter: str = "auto", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.language = normalize_language(language)
        if self.language == AUTO:
            resolve_segmenter(segmenter, "en")  # a bad name fails now; what "auto" means waits for the language
            self.segmenter = str(segmenter)
        else:
            self.segmenter = resolve_segmenter(segmenter, self.language)
            check_segmenter(self.segmenter, self.language)
        self._detected: str | None = None
        self._segment: Any = None
        # segmented words travel as the word_ids feature (with auto they may be segmented: known once detected)
        segments = self.language == AUTO or self.segmenter != TOKENIZER
        self.features = tuple(dict.fromkeys((*type(self).features, *(("word_ids",) if segments else ()))))

    @property
    def resolved_language(self) -> str:
        """The language code in use: ``language``, or what ``auto`` detected (``en`` until it has seen text)."""
        if self.language != AUTO:
            return self.language
        return self._detected or DEFAULT_LANGUAGE

    @property
    def resolved_segmenter(self) -> str:
        """The segmenter name in use (``tokenizer`` for none)."""
        return self.segmenter if self.language != "auto" else resolve_segmenter(self.segmenter, self.resolved_language)

    def detect_language(self, texts: list[str]) -> str:
        """Settle ``language=auto`` from a sample of the corpus (once; later calls keep the first answer)."""
        if self.language == AUTO and self._detected is None:
            self._detected = detect_language(texts)
            self.on_language(self._detected)
            check_segmenter(self.resolved_segmenter, self._detected)
        return self.resolved_language

    def on_language(self, language: str) -> None:
        """Hook for subclasses: ``auto`` has just been resolved to ``language``."""

    def word_ids(self, texts: list[str], encodings: Any) -> list[list[int]]:
        """The word of every token of a tokenized batch: segmented words, or the tokenizer's (-1 on special tokens)."""
        self.detect_language(texts)
        if self.resolved_segmenter == TOKENIZER:
            special = set(self.tokenizer.all_special_ids) if self.tokenizer is not None else set()
            return [word_ids_of(encodings, i, ids, special) for i, ids in enumerate(encodings["input_ids"])]
        if self._segment is None:
            self._segment = load_segmenter(self.resolved_segmenter, self.resolved_language)
        return segmented_word_ids(self._segment, texts, encodings)

    def token_features(self, texts: list[str], encodings: Any) -> dict[str, list[list[int]]]:
        """``word_ids`` from the segmenter when this strategy segments; nothing otherwise."""
        if "word_ids" not in self.features:
            return {}
        return {"word_ids": self.word_ids(texts, encodings)}

    def __getstate__(self) -> dict[str, Any]:
        # segmenters hold dictionaries and pipelines: rebuilt where needed (a tokenization worker) instead
        state = dict(self.__dict__)
        state["_segment"] = None
        return state
