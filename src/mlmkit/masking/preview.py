"""See what a masking strategy does: on one text, or as statistics over a corpus.

Both go through the same steps as pre-training (tokenize with the strategy's features,
pad with :class:`~mlmkit.masking.collator.MaskingCollator`, select, corrupt with the
generator of step 0 onwards), so what you see is what training would do with the
same seed.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import torch

from mlmkit.data.cache import prepared_corpus
from mlmkit.data.packing import pack_blocks, tokenize_corpus, word_ids_of
from mlmkit.errors import UserError
from mlmkit.masking.base import MaskingStrategy, Selection
from mlmkit.masking.collator import MaskingCollator, step_generator
from mlmkit.masking.content_word import (
    CONTENT_FEATURE,
    content_word_feature,
    function_words_for,
)

#: unit lengths above this are counted in one "more" bucket of the histogram
HISTOGRAM_MAX = 10


def corruption_kinds(original: torch.Tensor, corrupted: torch.Tensor, predicted: torch.Tensor,
                     mask_token_id: int) -> torch.Tensor:
    """Per position: 0 not predicted, 1 masked, 2 replaced by a random token, 3 kept unchanged."""
    kinds = torch.zeros_like(original)
    kinds[predicted & (corrupted == mask_token_id)] = 1
    kinds[predicted & (corrupted != mask_token_id) & (corrupted != original)] = 2
    kinds[predicted & (corrupted == original)] = 3
    return kinds


KIND_NAMES = {1: "mask", 2: "random", 3: "kept"}


# ---------------------------------------------------------------------------------------------- one text
@dataclass
class PreviewUnit:
    """One predicted unit of a previewed text."""

    text: str
    start: int
    end: int
    tokens: list[str]
    corruption: str
    replacements: list[str] = field(default_factory=list)


@dataclass
class TextPreview:
    """A text as the strategy would mask it."""

    text: str
    strategy: str
    ratio: float
    seed: int
    tokens: list[str]
    corrupted_tokens: list[str]
    predicted: list[bool]
    maskable_tokens: int
    units: list[PreviewUnit]

    @property
    def predicted_tokens(self) -> int:
        """How many tokens the model would have to predict."""
        return sum(self.predicted)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "text": self.text, "strategy": self.strategy, "ratio": self.ratio, "seed": self.seed,
            "maskable_tokens": self.maskable_tokens, "predicted_tokens": self.predicted_tokens,
            "realized_ratio": round(self.predicted_tokens / max(self.maskable_tokens, 1), 4),
            "tokens": self.tokens, "corrupted_tokens": self.corrupted_tokens, "predicted": self.predicted,
            "units": [vars(u) for u in self.units],
        }


def encode_text(text: str, tokenizer: Any, strategy: MaskingStrategy) -> tuple[dict[str, list[int]], Any]:
    """Tokenize one text as data preparation would: input ids, word ids and the strategy's features."""
    encodings = tokenizer([text], add_special_tokens=True, truncation=False,
                          return_offsets_mapping=bool(getattr(tokenizer, "is_fast", False)), verbose=False)
    ids = encodings["input_ids"][0]
    example = {"input_ids": ids, "word_ids": word_ids_of(encodings, 0, ids, set(tokenizer.all_special_ids))}
    for name, values in strategy.token_features([text], encodings).items():
        example[name] = values[0]
    return example, encodings


def preview_text(text: str, strategy: MaskingStrategy, tokenizer: Any, seed: int = 0,
                 ratio: float | None = None) -> TextPreview:
    """Mask ``text`` once with ``strategy`` (bound to ``tokenizer`` here) and describe every predicted unit.

    Args:
        text: The text to mask.
        strategy: A strategy instance (e.g. from :func:`~mlmkit.masking.registry.build_strategy`).
        tokenizer: A tokenizer with a mask token (fast, for character offsets).
        seed: Masking seed; the draw is the one training with this seed makes at step 0.
        ratio: Masking ratio; the strategy's own when None.
    """
    if not text.strip():
        raise UserError("the text to preview is empty")
    collator = MaskingCollator(tokenizer, strategy, seed=seed, pad_to_multiple_of=None)
    example, encodings = encode_text(text, tokenizer, strategy)
    batch = collator.pad([example])
    ratio = strategy.ratio if ratio is None else float(ratio)
    selection, corrupted, _ = strategy.mask_with_selection(batch, ratio, step_generator(seed, 0))
    original = batch["input_ids"][0]
    predicted = selection.predicted[0]
    kinds = corruption_kinds(original, corrupted[0], predicted, strategy.mask_token_id)
    offsets = encodings["offset_mapping"][0] if "offset_mapping" in encodings else [(0, 0)] * len(original)
    tokens = tokenizer.convert_ids_to_tokens(original.tolist())
    corrupted_tokens = tokenizer.convert_ids_to_tokens(corrupted[0].tolist())
    unit_of = selection.units[0] if selection.units is not None else torch.arange(len(original))

    units: list[PreviewUnit] = []
    index_of_unit: dict[int, int] = {}
    for position in predicted.nonzero().squeeze(1).tolist():
        key = int(unit_of[position])
        start, end = (int(v) for v in offsets[position])
        if key not in index_of_unit:
            index_of_unit[key] = len(units)
            units.append(PreviewUnit(text="", start=start, end=end, tokens=[],
                                     corruption=KIND_NAMES[int(kinds[position])]))
        unit = units[index_of_unit[key]]
        unit.start, unit.end = min(unit.start, start), max(unit.end, end)
        unit.tokens.append(tokens[position])
        if int(kinds[position]) == 2:
            unit.replacements.append(corrupted_tokens[position])
    for unit in units:
        unit.text = text[unit.start:unit.end] if unit.end > unit.start else " ".join(unit.tokens)
        if unit.replacements:
            unit.corruption = "random"
    return TextPreview(
        text=text, strategy=strategy.name or type(strategy).__name__, ratio=ratio, seed=seed, tokens=tokens,
        corrupted_tokens=corrupted_tokens, predicted=predicted.tolist(),
        maskable_tokens=int((~batch["special_tokens_mask"][0]).sum()), units=units,
    )


# ---------------------------------------------------------------------------------------------- corpus
class _WithContentLabels:
    """Duck-typed strategy for tokenization: the strategy's features plus content / function labels.

    Function words are those of the strategy's language (its own list for ``content_word``),
    over its (possibly segmented) words.
    """

    def __init__(self, strategy: MaskingStrategy) -> None:
        self.strategy = strategy
        self.features = tuple(dict.fromkeys((*strategy.features, CONTENT_FEATURE)))
        self.group_features = strategy.group_features

    def detect_language(self, texts: list[str]) -> str:
        return self.strategy.detect_language(texts) if hasattr(self.strategy, "detect_language") else "en"

    @property
    def language(self) -> str:
        return getattr(self.strategy, "resolved_language", "en")

    def token_features(self, texts: list[str], encodings: Any) -> dict[str, list[list[int]]]:
        out = dict(self.strategy.token_features(texts, encodings))
        if CONTENT_FEATURE not in out:
            words = out.get("word_ids")
            if words is None and hasattr(self.strategy, "word_ids"):
                words = self.strategy.word_ids(texts, encodings)
            function_words = getattr(self.strategy, "function_word_set", None) or function_words_for(self.language)
            out[CONTENT_FEATURE] = content_word_feature(texts, encodings, function_words,
                                                        tokenizer=self.strategy.tokenizer, word_ids=words)
        return out


def unit_lengths(selection: Selection, word_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Length of every predicted unit of a batch, in tokens and in words (two 1-D tensors)."""
    predicted = selection.predicted
    batch, length = predicted.shape
    positions = torch.arange(length).expand(batch, length)
    units = selection.units if selection.units is not None else positions
    units = torch.where(predicted, units, torch.full_like(units, -1))
    keys = (torch.arange(batch).unsqueeze(1) * length + units.clamp(min=0))[predicted]
    prev_units = torch.cat([torch.full((batch, 1), -1), units[:, :-1]], dim=1)
    prev_words = torch.cat([torch.full((batch, 1), -2), word_ids[:, :-1]], dim=1)
    new_word = predicted & ((prev_units != units) | (prev_words != word_ids))
    tokens = torch.bincount(keys, minlength=batch * length)
    words = torch.bincount(keys, weights=new_word[predicted].double(), minlength=batch * length)
    present = tokens > 0
    return tokens[present], words[present].long()


def _histogram(lengths: Counter) -> dict[str, int]:
    hist = {str(k): int(lengths.get(k, 0)) for k in range(1, HISTOGRAM_MAX + 1)}
    hist[f">{HISTOGRAM_MAX}"] = int(sum(v for k, v in lengths.items() if k > HISTOGRAM_MAX))
    return hist


def corpus_stats(
    texts: Any,
    strategy: MaskingStrategy,
    tokenizer: Any,
    seed: int = 0,
    ratio: float | None = None,
    block_size: int = 128,
    batch_size: int = 64,
    data: Any = None,
    notify: Any = None,
) -> dict[str, Any]:
    """Mask a corpus once, as pre-training would, and summarise what was predicted.

    Args:
        texts: A ``datasets.Dataset`` with a ``text`` column (e.g. from
            :func:`~mlmkit.data.sources.load_text_corpus`); None when ``data`` is given.
        strategy: The strategy to inspect.
        tokenizer: Its tokenizer.
        seed: Masking seed (batch ``i`` uses the generator of step ``i``).
        ratio: Masking ratio; the strategy's own when None.
        block_size: Packed block length, special tokens included.
        batch_size: Blocks per masking call.
        data: Instead of ``texts``, a :class:`~mlmkit.config.schema.PretrainDataConfig` naming the
            corpus (``max_seq_length`` is the block length): its blocks, with the content labels,
            come from the prepared-corpus cache (:mod:`mlmkit.data.cache`), built on first use.
        notify: Called with one-line notices about the prepared corpus (reused, damaged and rebuilt).

    Returns:
        Realized ratio, corruption shares, unit counts, unit-length histograms (in words
        and in tokens), the realized mean unit length next to the one the strategy draws
        from (span), the share of blocks with no prediction, and the share of content words
        among predicted tokens compared with their share in the corpus.
    """
    collator = MaskingCollator(tokenizer, strategy, seed=seed)
    ratio = strategy.ratio if ratio is None else float(ratio)
    labelled = _WithContentLabels(strategy)
    if data is None:
        tokenized = tokenize_corpus(texts, tokenizer, labelled)
        blocks = pack_blocks(tokenized, block_size, strategy.group_features)
        documents = len(texts)
    else:
        prepared = prepared_corpus(data, tokenizer, labelled, notify=notify)
        blocks, documents = prepared.blocks, prepared.documents
        if prepared.reused and notify is not None:
            notify(f"data: reusing the prepared corpus in {prepared.path}")
    totals = Counter()
    words_hist: Counter = Counter()
    tokens_hist: Counter = Counter()
    for step, start in enumerate(range(0, len(blocks), batch_size)):
        chunk = blocks[start:start + batch_size]
        examples = [{k: chunk[k][i] for k in chunk} for i in range(len(chunk["input_ids"]))]
        batch = collator.pad(examples)
        content = batch.pop(CONTENT_FEATURE) if CONTENT_FEATURE not in strategy.features else batch[CONTENT_FEATURE]
        selection, corrupted, _ = strategy.mask_with_selection(batch, ratio, step_generator(seed, step))
        maskable = ~batch["special_tokens_mask"]
        predicted = selection.predicted
        kinds = corruption_kinds(batch["input_ids"], corrupted, predicted, strategy.mask_token_id)
        totals["maskable"] += int(maskable.sum())
        totals["predicted"] += int(predicted.sum())
        for code, name in KIND_NAMES.items():
            totals[name] += int((kinds == code).sum())
        totals["corpus_content"] += int((maskable & (content == 1)).sum())
        totals["predicted_content"] += int((predicted & (content == 1)).sum())
        totals["blocks"] += len(examples)
        totals["rows_without_prediction"] += int((maskable.any(dim=1) & ~predicted.any(dim=1)).sum())
        in_tokens, in_words = unit_lengths(selection, batch["word_ids"])
        totals["units"] += len(in_tokens)
        tokens_hist.update(in_tokens.tolist())
        words_hist.update(in_words.tolist())
    predicted = max(totals["predicted"], 1)
    n_units = max(totals["units"], 1)
    return {
        "strategy": strategy.name or type(strategy).__name__,
        "language": labelled.language,
        "target_ratio": ratio,
        "documents": documents,
        "blocks": totals["blocks"],
        "maskable_tokens": totals["maskable"],
        "predicted_tokens": totals["predicted"],
        "realized_ratio": round(totals["predicted"] / max(totals["maskable"], 1), 4),
        "corruption": {name: round(totals[name] / predicted, 4) for name in KIND_NAMES.values()},
        "units": totals["units"],
        "mean_unit_tokens": round(sum(k * v for k, v in tokens_hist.items()) / n_units, 3),
        "mean_unit_words": round(sum(k * v for k, v in words_hist.items()) / n_units, 3),
        # what the strategy's paper draws (span: the clipped geometric's mean), None when it has no such figure
        "expected_mean_unit_words": (round(strategy.mean_span, 3) if isinstance(getattr(strategy, "mean_span", None),
                                                                               float) else None),
        "rows_without_prediction": round(totals["rows_without_prediction"] / max(totals["blocks"], 1), 4),
        "unit_words_histogram": _histogram(words_hist),
        "unit_tokens_histogram": _histogram(tokens_hist),
        "content_share_predicted": round(totals["predicted_content"] / predicted, 4),
        "function_share_predicted": round(1 - totals["predicted_content"] / predicted, 4),
        "content_share_corpus": round(totals["corpus_content"] / max(totals["maskable"], 1), 4),
        "function_share_corpus": round(1 - totals["corpus_content"] / max(totals["maskable"], 1), 4),
    }
