"""Token-weighted masking from a per-token-id table built on a corpus (in the spirit of InforMask).

InforMask (Sadeq, Xu and McAuley, EMNLP 2022) scores how *informative* each token of a
sentence is by the sum of its pointwise mutual information (PMI) with the other tokens
of the sentence, masks the most informative ones, and, to keep pre-training cheap,
distils this into *token-specific masking rates*: how often each vocabulary token ends
up masked over the corpus. :func:`build_token_weights` computes such a table once;
:class:`TokenWeightedMasking` draws the predicted tokens in proportion to it.

The table is stored as JSON or safetensors (never pickle): a float per token id plus a
little metadata (tokenizer, vocabulary size, ratio, corpus size).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from mlmkit.data.sources import load_text_corpus
from mlmkit.errors import UserError
from mlmkit.masking.base import MaskingStrategy, Selection
from mlmkit.masking.units import candidate_mask, select_units, word_unit_ids
from mlmkit.modeling.loading import load_tokenizer

FORMAT = "mlmkit-token-weights"
FORMAT_VERSION = 1
#: windows handled per numpy pass when building (bounds memory to a few hundred MB)
BUILD_CHUNK = 2000
#: the build summary lists this many most / least weighted tokens among those seen SUMMARY_MIN_COUNT times
SUMMARY_SIZE = 10
SUMMARY_MIN_COUNT = 20


# ---------------------------------------------------------------------------------------------- building
def _windows(token_lists: Iterable[list[int]], window: int) -> list[np.ndarray]:
    """Cut tokenized documents into windows of at most ``window`` tokens (the co-occurrence context)."""
    out = []
    for ids in token_lists:
        for start in range(0, len(ids), window):
            piece = ids[start:start + window]
            if piece:
                out.append(np.asarray(piece, dtype=np.int64))
    return out


def _distinct_per_window(chunk: list[np.ndarray], vocab: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct ``(window, token)`` entries of a chunk.

    Returns:
        ``(tokens, window_index, occurrence_to_distinct)``: the distinct token of each entry,
        its window within the chunk, and for every token occurrence of the chunk the index
        of its distinct entry.
    """
    lengths = np.fromiter((len(w) for w in chunk), dtype=np.int64, count=len(chunk))
    flat = np.concatenate(chunk)
    win = np.repeat(np.arange(len(chunk), dtype=np.int64), lengths)
    keys, inverse = np.unique(win * vocab + flat, return_inverse=True)
    return keys % vocab, keys // vocab, inverse.reshape(-1)


def _pairs(window_of: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All ordered pairs ``(i, j)``, ``i != j``, of distinct entries sharing a window (entries sorted by window)."""
    sizes = np.bincount(window_of)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    m = sizes[window_of]  # size of each entry's window
    left = np.repeat(np.arange(len(window_of), dtype=np.int64), m)
    group_start = np.repeat(np.cumsum(m) - m, m)
    right = np.repeat(starts[window_of], m) + (np.arange(len(left), dtype=np.int64) - group_start)
    keep = left != right
    return left[keep], right[keep]


def build_token_weights(
    token_lists: Iterable[list[int]],
    vocab_size: int,
    special_ids: Iterable[int] = (),
    ratio: float = 0.15,
    window: int = 64,
    min_pair_count: int = 2,
    prior_strength: float = 10.0,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Per-token-id masking rates from corpus statistics, InforMask style.

    1. Documents are cut into windows of ``window`` tokens; ``p(x)`` is the share of
       windows containing token ``x`` and ``p(x, y)`` the share containing both.
    2. The informative relevance of a token in a window is the sum of
       ``PMI(x, y) = log p(x, y) / (p(x) p(y))`` over the other distinct tokens ``y`` of
       the window (pairs seen fewer than ``min_pair_count`` times contribute 0, as their
       PMI is noise).
    3. In every window the ``round(ratio * n)`` most relevant tokens are marked (ties
       broken at random); a token's rate is how often it was marked, shrunk towards
       ``ratio`` with ``prior_strength`` pseudo-occurrences:
       ``(marked + prior_strength * ratio) / (count + prior_strength)``.

    Special tokens get rate 0; tokens absent from the corpus get ``ratio``.

    Args:
        token_lists: Token ids of each document, without special tokens.
        vocab_size: Size of the tokenizer's vocabulary (``len(tokenizer)``).
        special_ids: Ids never to mask.
        ratio: Share of each window marked as informative.
        window: Co-occurrence context, in tokens.
        min_pair_count: Minimum number of windows a pair must share to count.
        prior_strength: Pseudo-count pulling rare tokens' rates towards ``ratio``.
        seed: Seed for tie-breaking.
        progress: Optional ``callback(done, total)`` over the two passes' chunks.

    Returns:
        ``(rates, stats)``: a float32 array of ``vocab_size`` rates and corpus statistics.
    """
    windows = _windows(token_lists, window)
    if not windows:
        raise UserError("the corpus has no tokens to build masking weights from")
    vocab = int(vocab_size)
    chunks = [windows[i:i + BUILD_CHUNK] for i in range(0, len(windows), BUILD_CHUNK)]
    total_steps = 2 * len(chunks)
    n_windows = len(windows)

    # pass 1: window frequencies of tokens and of token pairs
    window_freq = np.zeros(vocab, dtype=np.int64)
    pair_keys = np.zeros(0, dtype=np.int64)
    pair_counts = np.zeros(0, dtype=np.int64)
    for done, chunk in enumerate(chunks, start=1):
        tokens, window_of, _ = _distinct_per_window(chunk, vocab)
        window_freq += np.bincount(tokens, minlength=vocab)
        left, right = _pairs(window_of)
        keys, counts = np.unique(tokens[left] * vocab + tokens[right], return_counts=True)
        merged, where = np.unique(np.concatenate([pair_keys, keys]), return_inverse=True)
        pair_counts = np.bincount(where, weights=np.concatenate([pair_counts, counts]),
                                  minlength=len(merged)).astype(np.int64)
        pair_keys = merged
        if progress:
            progress(done, total_steps)
    frequent = pair_counts >= min_pair_count
    pair_keys, pair_counts = pair_keys[frequent], pair_counts[frequent]
    px = window_freq / n_windows
    pmi = (np.log(pair_counts / n_windows) - np.log(px[pair_keys // vocab]) - np.log(px[pair_keys % vocab]))

    # pass 2: relevance of every occurrence, top share of each window marked
    rng = np.random.default_rng(seed)
    marked = np.zeros(vocab, dtype=np.int64)
    count = np.zeros(vocab, dtype=np.int64)
    for done, chunk in enumerate(chunks, start=len(chunks) + 1):
        tokens, window_of, occurrence = _distinct_per_window(chunk, vocab)
        left, right = _pairs(window_of)
        keys = tokens[left] * vocab + tokens[right]
        contribution = np.zeros(len(keys))
        if len(pair_keys):
            slot = np.searchsorted(pair_keys, keys).clip(max=len(pair_keys) - 1)
            contribution = np.where(pair_keys[slot] == keys, pmi[slot], 0.0)
        relevance = np.bincount(left, weights=contribution, minlength=len(tokens))[occurrence]
        flat = np.concatenate(chunk)
        lengths = np.fromiter((len(w) for w in chunk), dtype=np.int64, count=len(chunk))
        win = np.repeat(np.arange(len(chunk)), lengths)
        order = np.lexsort((rng.random(len(flat)), -relevance, win))
        rank = np.arange(len(flat)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        budget = np.floor(lengths * ratio + 0.5).astype(np.int64)
        chosen = flat[order][rank < np.repeat(budget, lengths)]
        marked += np.bincount(chosen, minlength=vocab)
        count += np.bincount(flat, minlength=vocab)
        if progress:
            progress(done, total_steps)

    rates = (marked + prior_strength * ratio) / (count + prior_strength)
    specials = [i for i in special_ids if 0 <= i < vocab]
    rates[specials] = 0.0
    frequent_ids = np.flatnonzero(count >= SUMMARY_MIN_COUNT)
    by_rate = frequent_ids[np.argsort(-rates[frequent_ids], kind="stable")]
    stats = {"windows": n_windows, "tokens": int(count.sum()), "distinct_tokens": int((count > 0).sum()),
             "pairs": int(len(pair_keys)), "ratio": float(ratio), "window": int(window),
             "min_pair_count": int(min_pair_count), "prior_strength": float(prior_strength),
             "most_weighted_ids": by_rate[:SUMMARY_SIZE].tolist(),
             "least_weighted_ids": by_rate[::-1][:SUMMARY_SIZE].tolist()}
    return rates.astype(np.float32), stats


def build_token_weights_from_texts(
    texts: Iterable[str], tokenizer: Any, batch_size: int = 1000, **kwargs: Any
) -> tuple[np.ndarray, dict[str, Any]]:
    """Tokenize ``texts`` (no special tokens) with ``tokenizer`` and call :func:`build_token_weights`."""
    texts = list(texts)
    token_lists: list[list[int]] = []
    for start in range(0, len(texts), batch_size):
        encoded = tokenizer(texts[start:start + batch_size], add_special_tokens=False, truncation=False,
                            verbose=False)["input_ids"]
        token_lists.extend(encoded)
    return build_token_weights(token_lists, len(tokenizer), tokenizer.all_special_ids, **kwargs)


def build_weights_file(
    corpus: str,
    output: str | Path,
    model: str = "embedded",
    text_column: str = "text",
    max_documents: int | None = None,
    **kwargs: Any,
) -> dict[str, Any]:
    """``mlmkit masking build-weights``: load a corpus and a tokenizer, build the table, save it.

    Args:
        corpus: What ``data.source`` takes: 'embedded', local files, or a Hub dataset name.
        output: ``.json`` or ``.safetensors`` file to write.
        model: Model directory or Hub name whose tokenizer defines the token ids.
        text_column: Text column of csv/json/parquet corpora.
        max_documents: Use only the first N documents.
        **kwargs: Passed to :func:`build_token_weights` (ratio, window, min_pair_count, ...).

    Returns:
        The metadata written with the table, plus the output path and the most and least
        weighted frequent tokens.
    """
    if Path(output).suffix.lower() not in (".json", ".safetensors"):
        raise UserError(f"masking weights go to a .json or .safetensors file, not {Path(output).name!r}")
    tokenizer = load_tokenizer(model, require_mask=False)
    texts = load_text_corpus(corpus, text_column, max_documents=max_documents)["text"]
    weights, stats = build_token_weights_from_texts(texts, tokenizer, **kwargs)
    meta = {"tokenizer": model, "corpus": corpus, "documents": len(texts), **stats}
    path = save_token_weights(output, weights, meta)
    summary = dict(meta, output=str(path))
    for key in ("most_weighted", "least_weighted"):
        ids = summary.pop(f"{key}_ids")
        summary[key] = [{"token": tokenizer.convert_ids_to_tokens(int(i)), "weight": round(float(weights[i]), 4)}
                        for i in ids]
    return summary


# ---------------------------------------------------------------------------------------------- files
def save_token_weights(path: str | Path, weights: np.ndarray, metadata: dict[str, Any]) -> Path:
    """Write a table as ``.json`` or ``.safetensors`` (chosen by the file extension)."""
    path = Path(path)
    meta = {"format": FORMAT, "version": FORMAT_VERSION, "vocab_size": int(len(weights)), **metadata}
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix.lower()
    if suffix == ".json":
        payload = {**meta, "weights": [round(float(w), 6) for w in weights]}
        path.write_text(json.dumps(payload) + "\n", encoding="utf-8")
    elif suffix == ".safetensors":
        save_file({"weights": torch.as_tensor(np.asarray(weights, dtype=np.float32))}, str(path),
                  metadata={k: json.dumps(v) for k, v in meta.items()})
    else:
        raise UserError(f"masking weights go to a .json or .safetensors file, not {path.name!r}")
    return path


def load_token_weights(path: str | Path) -> tuple[torch.Tensor, dict[str, Any]]:
    """Read a table written by :func:`save_token_weights`; returns ``(weights, metadata)``."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"masking weights file {str(path)!r} not found (build one with `mlmkit masking "
                        "build-weights CORPUS --model MODEL -o FILE`)")
    suffix = path.suffix.lower()
    try:
        if suffix == ".json":
            payload = json.loads(path.read_text(encoding="utf-8"))
            weights = torch.tensor(payload.pop("weights"), dtype=torch.float32)
            meta = payload
        elif suffix == ".safetensors":
            with safe_open(str(path), framework="pt") as handle:
                weights = handle.get_tensor("weights").float()
                meta = {k: json.loads(v) for k, v in (handle.metadata() or {}).items()}
        else:
            raise UserError(f"masking weights must be a .json or .safetensors file, not {path.name!r}")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UserError(f"cannot read masking weights {str(path)!r}: {exc}") from exc
    if meta.get("format") not in (None, FORMAT) or weights.dim() != 1:
        raise UserError(f"{str(path)!r} is not an mlmkit token-weights table")
    if bool((weights < 0).any()) or not bool(torch.isfinite(weights).all()):
        raise UserError(f"masking weights in {str(path)!r} must be finite and non-negative")
    return weights, meta


# ---------------------------------------------------------------------------------------------- strategy
class TokenWeightedMasking(MaskingStrategy):
    """Draw predicted tokens without replacement in proportion to a per-token-id weight table.

    The table (built once by ``mlmkit masking build-weights``, see
    :func:`build_token_weights`) holds InforMask-style token-specific masking rates:
    tokens that carry information about their context are masked more often than
    frequent, uninformative ones. Each row's budget is ``ratio`` of its tokens, so the
    table shapes *which* tokens are predicted, not how many.

    Args:
        weights_file: The table, a ``.json`` or ``.safetensors`` file from
            ``mlmkit masking build-weights``. Required.
        whole_words: Predict whole words (a word weighs as its heaviest token) instead of single tokens.
        min_weight: Floor added to every ordinary token's weight, so no token is never masked.
    """

    name = "token_weighted"
    description = "Tokens drawn in proportion to a per-token-id table of corpus informativeness (PMI)."
    paper = "Sadeq, Xu and McAuley, InforMask, EMNLP 2022"

    def __init__(self, weights_file: str | None = None, whole_words: bool = False, min_weight: float = 0.0,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        if not weights_file:
            raise ValueError("token_weighted needs masking.weights_file=FILE; build one with "
                             "`mlmkit masking build-weights CORPUS --model MODEL -o FILE`")
        if float(min_weight) < 0 or not math.isfinite(float(min_weight)):
            raise ValueError("masking.min_weight must be >= 0")
        self.weights_file = str(weights_file)
        self.whole_words = bool(whole_words)
        self.min_weight = float(min_weight)
        self.table, self.table_info = load_token_weights(self.weights_file)
        self.table = self.table + self.min_weight

    def bind(self, tokenizer: Any) -> None:
        super().bind(tokenizer)
        size = len(tokenizer)
        if len(self.table) < size:
            expected = self.table_info.get("vocab_size", len(self.table))
            raise UserError(f"masking weights {self.weights_file!r} cover {expected} token ids but the tokenizer "
                            f"has {size}; build the table with this model's tokenizer")

    def select(self, batch: dict[str, torch.Tensor], ratio: float, generator: torch.Generator) -> Selection:
        input_ids = batch["input_ids"]
        candidates = candidate_mask(batch)
        token_weights = self.table[input_ids.clamp(0, len(self.table) - 1)]
        if self.whole_words:
            unit_ids = word_unit_ids(batch)
            weights = torch.zeros_like(token_weights).scatter_reduce(
                1, unit_ids.clamp(min=0), torch.where(candidates, token_weights, torch.zeros_like(token_weights)),
                reduce="amax", include_self=True)
        else:
            positions = torch.arange(input_ids.shape[1]).expand_as(input_ids)
            unit_ids = torch.where(candidates, positions, torch.full_like(positions, -1))
            weights = token_weights
        return select_units(unit_ids, candidates, ratio, generator, weights)
