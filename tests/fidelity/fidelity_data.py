"""Real text for the fidelity suite: the tweets, the MiniLM tokenizer, layouts, masking as training does.

Three layouts, as the strategies meet them: tweets packed into 128-token blocks as in
training, one tweet per row (a row's budget is then a word or two), and long documents
(40 tweets joined) packed into 512-token blocks, SpanBERT's setting. (No conftest.py
here: it would shadow ``tests/conftest.py`` for the tests that import from it.)
"""

from __future__ import annotations

import functools

import datasets
import torch

from mlmkit.data.embedded import embedded_model_dir, read_embedded_tweets
from mlmkit.data.packing import pack_blocks, tokenize_corpus
from mlmkit.masking.collator import MaskingCollator, step_generator

datasets.disable_progress_bars()

BATCH = 64


@functools.cache
def load_tweets() -> list[str]:
    """The packaged tweets, read once per test session."""
    return read_embedded_tweets()["text"]


@functools.cache
def load_minilm_tokenizer():
    """The packaged MiniLM WordPiece tokenizer, loaded once per test session."""
    from mlmkit.modeling.loading import load_tokenizer

    return load_tokenizer(str(embedded_model_dir()))


def layout_rows(texts: list[str], tokenizer, strategy, layout: str) -> list[dict]:
    """Tokenized rows of ``texts`` in one of the layouts 'packed' (128), 'single' (one text a row) or 'long' (512)."""
    if layout == "long":
        texts = [" ".join(texts[i:i + 40]) for i in range(0, len(texts), 40)]
    tokenized = tokenize_corpus(datasets.Dataset.from_dict({"text": texts}), tokenizer, strategy)
    if layout == "single":
        return [{k: v[:128] for k, v in row.items()} for row in tokenized.to_list()]
    return pack_blocks(tokenized, 512 if layout == "long" else 128, strategy.group_features).to_list()


def masked_batches(rows: list[dict], tokenizer, strategy, ratio: float = 0.15, seeds: int = 1):
    """Yield ``(batch, selection, corrupted)`` for every batch of ``rows``, masked once per seed as training would."""
    collator = MaskingCollator(tokenizer, strategy, seed=0)
    for seed in range(seeds):
        for step, start in enumerate(range(0, len(rows), BATCH)):
            batch = collator.pad(rows[start:start + BATCH])
            generator = step_generator(seed, step)
            selection, corrupted, _ = strategy.mask_with_selection(batch, ratio, generator)
            yield batch, selection, corrupted


def per_unit(values: torch.Tensor, units: torch.Tensor, where: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Smallest and largest of ``values`` over the positions of each unit (within a row), for ``where``."""
    batch, length = units.shape
    keys = (torch.arange(batch).unsqueeze(1) * length + units.clamp(min=0))[where]
    vals = values[where].long()
    lo = torch.full((batch * length,), 1 << 40).scatter_reduce(0, keys, vals, reduce="amin")
    hi = torch.full((batch * length,), -(1 << 40)).scatter_reduce(0, keys, vals, reduce="amax")
    used = torch.zeros(batch * length, dtype=torch.bool)
    used[keys] = True
    return lo[used], hi[used]
