"""Tokenize documents and pack them into fixed-length blocks.

Documents are tokenized with their special tokens, concatenated and cut into blocks
of ``block_size`` tokens. Unlike ``run_mlm.py``'s ``group_texts`` the remainder of each
chunk of documents is kept as one shorter block (padded at collate time), so no token
is lost. Per-token features travel with the tokens: ``word_ids`` always (from the fast
tokenizer, so whole-word strategies work for WordPiece, byte-level BPE and Unigram alike),
plus whatever the masking strategy computes once here.
"""

from __future__ import annotations

import hashlib
from typing import Any

import datasets
import numpy as np
from transformers.utils import logging as hf_logging

from mlmkit.errors import UserError

#: features that identify groups of tokens; offset per document so ids stay unique in a block
GROUP_FEATURES = ("word_ids",)
#: documents per packing chunk: at most one short block per chunk
PACK_CHUNK = 2000


def word_ids_of(encodings: Any, index: int, input_ids: list[int], special_ids: set[int]) -> list[int]:
    """Word index of each token of document ``index`` (-1 for special tokens)."""
    if getattr(encodings, "is_fast", False) or hasattr(encodings, "word_ids"):
        try:
            words = encodings.word_ids(index)
            return [-1 if w is None else int(w) for w in words]
        except (ValueError, AttributeError):
            pass
    # slow tokenizers: every ordinary token is its own word
    return [-1 if t in special_ids else i for i, t in enumerate(input_ids)]


def tokenize_corpus(dataset, tokenizer, strategy=None, num_proc: int | None = None, cache_file_name: str | None = None):
    """Tokenize the ``text`` column into ``input_ids``, ``word_ids`` and strategy features.

    With ``num_proc`` > 1 the documents are split among that many worker processes, each
    tokenizing and computing the strategy's features (a spaCy pipeline, for instance) for its
    share; batches are written to Arrow files as they are produced (``cache_file_name``, else
    the ``datasets`` cache), so memory does not grow with the corpus. This one level of
    processes is the parallelism: spaCy's own ``nlp.pipe(n_process=...)`` on top would put
    ``num_proc`` squared processes on ``num_proc`` cores.
    """
    special_ids = set(tokenizer.all_special_ids)
    wants_offsets = bool(strategy is not None and strategy.features)
    if callable(getattr(strategy, "detect_language", None)):  # masking.language=auto: settle it on a sample, once
        strategy.detect_language(corpus_sample(dataset))

    def encode(batch: dict[str, list]) -> dict[str, list]:
        encodings = tokenizer(
            batch["text"], add_special_tokens=True, truncation=False,
            return_offsets_mapping=wants_offsets and tokenizer.is_fast, verbose=False,
        )
        out = {"input_ids": encodings["input_ids"]}
        out["word_ids"] = [word_ids_of(encodings, i, ids, special_ids) for i, ids in enumerate(out["input_ids"])]
        if strategy is not None:
            for name, values in strategy.token_features(batch["text"], encodings).items():
                out[name] = values
        return out

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # long documents are fine here: they get packed, not truncated
    try:
        # a filtered stream may not know its columns: it has the one ``text`` column of load_text_corpus
        return _map(dataset, encode, remove_columns=dataset.column_names or ["text"], num_proc=num_proc,
                    desc="tokenizing", cache_file_name=cache_file_name)
    finally:
        hf_logging.set_verbosity(verbosity)


def corpus_sample(dataset, documents: int = 200) -> list[str]:
    """The first ``documents`` texts of a (map-style or streamed) dataset with a ``text`` column."""
    if isinstance(dataset, datasets.IterableDataset):
        return [row["text"] for row in dataset.take(documents)]
    return list(dataset[:documents]["text"])


def _map(dataset, fn, num_proc=None, desc=None, cache_file_name=None, **kwargs):
    """``dataset.map(batched=True)`` for both map-style and streamed (iterable) datasets."""
    if isinstance(dataset, datasets.IterableDataset):
        return dataset.map(fn, batched=True, **kwargs)  # lazy: runs as the stream is read
    return dataset.map(fn, batched=True, num_proc=num_proc, desc=desc, cache_file_name=cache_file_name,
                       **named_output(cache_file_name), **kwargs)


def named_output(cache_file_name: str | None) -> dict[str, str]:
    """``map`` arguments for output written to a file of the caller's choosing.

    ``datasets`` fingerprints a ``map`` by pickling and hashing the function with everything it
    holds (the tokenizer, the strategy): most of a second, only to name a cache file. When the
    caller names the file (a fresh build folder), its path names the result instead.
    """
    if cache_file_name is None:
        return {}
    return {"new_fingerprint": hashlib.sha256(str(cache_file_name).encode("utf-8")).hexdigest()[:32]}


def pack_blocks(tokenized, block_size: int, group_features: tuple[str, ...] = (), num_proc: int | None = None,
                cache_file_name: str | None = None):
    """Concatenate tokenized documents and cut them into blocks of ``block_size`` tokens.

    Packing is a batched ``map`` over chunks of :data:`PACK_CHUNK` documents, so only one
    chunk per process is in memory; the blocks go to ``cache_file_name`` (else the
    ``datasets`` cache) as they are produced.

    Every token of the input appears exactly once in the output. Group features
    (``word_ids`` and those listed in ``group_features``) are offset per document so a
    block never holds two different words with the same id.
    """
    if block_size < 2:
        raise UserError("data.max_seq_length must be at least 2")
    groups = set(GROUP_FEATURES) | set(group_features)

    def pack(batch: dict[str, list]) -> dict[str, list]:
        columns = list(batch)
        flat: dict[str, list[int]] = {c: [] for c in columns}
        next_id = dict.fromkeys(groups, 0)
        for doc in range(len(batch["input_ids"])):
            for c in columns:
                values = batch[c][doc]
                if c in groups:
                    offset = next_id[c]
                    values = [v + offset if v >= 0 else v for v in values]
                    next_id[c] = max(max(values, default=-1) + 1, offset)
                flat[c].extend(values)
        total = len(flat["input_ids"])
        return {c: [flat[c][i:i + block_size] for i in range(0, total, block_size)] for c in columns}

    if not num_proc or num_proc < 2 or isinstance(tokenized, datasets.IterableDataset):
        return _map(tokenized, pack, batch_size=PACK_CHUNK, num_proc=None, desc="packing blocks",
                    cache_file_name=cache_file_name)
    # ``map(num_proc=n)`` cuts the rows into n equal shards, whose batches would not start at multiples
    # of PACK_CHUNK; mapping over the chunk starts instead gives exactly the blocks of one process
    chunk = PACK_CHUNK
    starts = datasets.Dataset.from_dict({"chunk_start": list(range(0, len(tokenized), chunk))})

    def pack_chunk(batch: dict[str, list]) -> dict[str, list]:
        return pack(tokenized[batch["chunk_start"][0]:batch["chunk_start"][0] + chunk])

    return starts.map(pack_chunk, batched=True, batch_size=1, num_proc=min(num_proc, len(starts)),
                      remove_columns=["chunk_start"], features=tokenized.features, desc="packing blocks",
                      cache_file_name=cache_file_name, **named_output(cache_file_name))


def split_eval(blocks, eval_fraction: float, eval_max_blocks: int, seed: int):
    """Hold out a shuffled evaluation share of the blocks; returns ``(train, eval)``."""
    n = len(blocks)
    if n < 2:
        raise UserError(f"the corpus gives only {n} block(s); it needs at least 2 to hold out an evaluation split")
    n_eval = min(max(1, round(n * eval_fraction)), eval_max_blocks, n - 1)

    # the split of ``blocks.train_test_split(test_size=n_eval, seed=seed)`` (the same seeded permutation), with
    # the indices kept in memory: nothing is written next to the blocks, which may be a shared prepared corpus
    permutation = np.random.default_rng(seed).permutation(n)
    return (blocks.select(permutation[n_eval:], keep_in_memory=True),
            blocks.select(permutation[:n_eval], keep_in_memory=True))
