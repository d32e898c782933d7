"""Prepared corpora on disk: tokenize, featurize and pack once, reuse in every run.

A prepared corpus is the packed blocks of a pre-training corpus (``input_ids``,
``word_ids`` and the masking strategy's per-token features) saved with ``datasets``'
``save_to_disk`` and memory-mapped back with ``load_from_disk``. Its directory name is a
fingerprint of everything the blocks depend on:

* the corpus: source, its files (resolved paths, sizes, modification times), text
  column, split and ``max_documents``;
* the tokenizer: its class, serialized backend (vocabulary, normalizer, post-processor)
  and special tokens;
* ``data.max_seq_length``;
* the strategy's feature extractor: its class, declared features and the parameters that
  can change them (see :func:`feature_fingerprint`); a strategy without features adds
  nothing, so ``random``, ``whole_word`` and ``span`` share one prepared corpus.

``data.num_proc`` is not part of the key: any process count gives the same blocks. Unset,
a build uses every core for a big corpus (see :func:`preparation_processes`); each process
tokenizes and featurizes its share of the documents (for POS tags, its own spaCy pipeline),
and every batch is written to Arrow files in the build folder as it is produced, so memory
does not grow with the corpus. ``data.streaming`` is not part of the key either: a streamed
run reads a matching prepared corpus lazily (:func:`streamed_blocks`), with the same blocks
in the same order as the raw stream. Hub datasets are not cached here (their revision is
unknown offline); ``datasets`` keeps its own cache of them.

A directory is built under a temporary name and renamed when complete; its
``manifest.json``, written last, lists every file with its size (and a SHA-256 of the
small metadata files). A directory whose files disagree with its manifest is rebuilt
with a one-line notice.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import pyarrow.compute as pc
from huggingface_hub import constants

from mlmkit import __version__
from mlmkit.config.schema import EMBEDDED
from mlmkit.data.embedded import embedded_tweets_file
from mlmkit.data.packing import pack_blocks, tokenize_corpus
from mlmkit.data.sources import _local_files, load_text_corpus, looks_like_path
from mlmkit.errors import UserError

MANIFEST = "manifest.json"
BLOCKS_DIR = "blocks"
#: intermediate Arrow files (tokenized documents, packed blocks) of a build, removed when it is saved
WORK_DIR = "work"
#: bump when the layout or the packing of prepared corpora changes (old directories are then ignored)
FORMAT = 1
#: metadata files small enough to hash on every load
HASHED_SUFFIXES = (".json",)
#: strategy parameters that act at masking time only (the base class's), never on the features
MASKING_ONLY = frozenset({"ratio", "mask_replace_prob", "random_replace_prob", "mask_token_id"})
TEMP_PREFIX = ".tmp-"
#: shards of a streamed prepared corpus (a power of two: they divide evenly among 1, 2, 4, ... processes)
STREAM_SHARDS = 32
#: with data.num_proc unset, one preparation process per this many documents (at most one per core)
DOCUMENTS_PER_PROCESS = 5000
#: how many times the preparation ran in this process (tests and benchmarks read it)
PREPARATIONS = {"count": 0}


@dataclass
class PreparedCorpus:
    """Packed blocks of a corpus and where they live."""

    blocks: Any
    """The blocks (a memory-mapped ``datasets.Dataset`` when cached)."""
    documents: int
    tokens: int
    path: Path | None
    """Directory of the prepared corpus; None when it is not cached."""
    reused: bool
    """True when the blocks came from an existing prepared corpus."""
    size_bytes: int = 0


def default_cache_dir() -> Path:
    """``<Hugging Face cache home>/mlmkit/prepared`` (``$HF_HOME``, else ``~/.cache/huggingface``)."""
    return Path(constants.HF_HOME).expanduser() / "mlmkit" / "prepared"


def resolve_cache_dir(cache_dir: str | os.PathLike | None) -> Path:
    """``data.cache_dir``, or the default location."""
    return Path(cache_dir).expanduser() if cache_dir else default_cache_dir()


def _file_stamp(path: str | os.PathLike) -> list[Any]:
    stat = os.stat(path)
    return [str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns]


def corpus_fingerprint(data_cfg: Any) -> dict[str, Any] | None:
    """What identifies the corpus of ``data_cfg``; None for a Hub dataset (not cached)."""
    if data_cfg.source == EMBEDDED:
        files = [str(embedded_tweets_file())]
        column = split = None
    elif looks_like_path(data_cfg.source):
        _, files = _local_files(data_cfg.source)
        column, split = data_cfg.text_column, None  # local files have a single split
    else:
        return None
    return {"source": data_cfg.source, "files": [_file_stamp(f) for f in files], "text_column": column,
            "split": split, "max_documents": data_cfg.max_documents}


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """SHA-256 of the tokenizer's class, serialized backend (or vocabulary) and special tokens."""
    digest = hashlib.sha256(type(tokenizer).__name__.encode())
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        digest.update(backend.to_str().encode())
    else:
        digest.update(json.dumps(sorted(tokenizer.get_vocab().items())).encode())
    digest.update(json.dumps(sorted(map(str, tokenizer.all_special_tokens))).encode())
    return digest.hexdigest()


def _parameter(value: Any) -> Any:
    """A JSON-able stand-in for a parameter value, or None when it does not describe the extractor."""
    if isinstance(value, bool | int | float) or value is None:
        return value
    if isinstance(value, str):
        # a parameter naming a file (a PMI vocabulary, a word list) depends on the file's content
        return [value, _file_stamp(value)] if os.path.isfile(value) else value
    if hasattr(value, "features"):
        return feature_fingerprint(value)
    if isinstance(value, list | tuple) and value and all(hasattr(v, "features") for v in value):
        return [feature_fingerprint(v) for v in value]
    if isinstance(value, list | tuple) and all(isinstance(v, str | int | float | bool) for v in value):
        return list(value)
    if isinstance(value, set | frozenset) and all(isinstance(v, str | int | float) for v in value):
        return sorted(value, key=str)  # a word list
    return None


def feature_fingerprint(strategy: Any) -> Any:
    """What identifies the per-token features ``strategy`` computes at preparation.

    A strategy (or duck-typed feature set) that declares no ``features`` adds no column and
    gets the key ``None``. Otherwise: its class, features, group features, and either its
    ``cache_key()`` when it defines one, or every public plain parameter (numbers, strings,
    files by path, size and mtime, nested strategies) except the masking-time ratios.
    """
    if strategy is None or not tuple(getattr(strategy, "features", ())):
        return None
    kind = type(strategy)
    key: dict[str, Any] = {"class": f"{kind.__module__}.{kind.__qualname__}", "features": list(strategy.features),
                           "group_features": list(getattr(strategy, "group_features", ()))}
    if callable(getattr(strategy, "cache_key", None)):
        key["key"] = strategy.cache_key()
        return key
    params = {}
    for name, value in sorted(vars(strategy).items()):
        if name.startswith("_") or name in MASKING_ONLY or name in ("features", "group_features"):
            continue
        described = _parameter(value)
        if described is not None:
            params[name] = described
    key["params"] = params
    return key


def prepared_key(data_cfg: Any, tokenizer: Any, strategy: Any) -> tuple[str, dict[str, Any]] | None:
    """``(directory name, description)`` of the prepared corpus, or None when it cannot be cached."""
    corpus = corpus_fingerprint(data_cfg)
    if corpus is None:
        return None
    description = {"format": FORMAT, "mlmkit": __version__, "corpus": corpus,
                   "tokenizer": tokenizer_fingerprint(tokenizer),
                   "tokenizer_name": str(getattr(tokenizer, "name_or_path", "")),
                   "max_seq_length": data_cfg.max_seq_length, "features": feature_fingerprint(strategy)}
    canonical = json.dumps({k: v for k, v in description.items() if k != "tokenizer_name"}, sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()[:20], description


def preparation_processes(num_proc: int | None, documents: int) -> int:
    """Processes that prepare ``documents`` documents: ``data.num_proc``, else all cores.

    Unset, it is one process per :data:`DOCUMENTS_PER_PROCESS` documents, at most one per core:
    every worker loads the tokenizer and the strategy's feature extractor (a spaCy pipeline
    takes seconds), which a small corpus would not pay back. The blocks do not depend on it.
    """
    if num_proc:
        return max(1, min(int(num_proc), documents))
    return max(1, min(os.cpu_count() or 1, documents // DOCUMENTS_PER_PROCESS))


def prepare_blocks(data_cfg: Any, tokenizer: Any, strategy: Any, work_dir: Path | None = None) -> tuple[Any, int]:
    """Load, tokenize (with the strategy's features) and pack a corpus; returns ``(blocks, documents)``.

    Tokenization (with the strategy's features) and packing each run as a batched ``map`` in
    :func:`preparation_processes` processes, writing every batch to Arrow files under
    ``work_dir`` (else the ``datasets`` cache) as it is produced: memory stays bounded by a
    batch per process, whatever the corpus size.
    """
    PREPARATIONS["count"] += 1
    texts = load_text_corpus(data_cfg.source, data_cfg.text_column, data_cfg.split, data_cfg.config_name,
                             data_cfg.max_documents, streaming=False)
    processes = preparation_processes(data_cfg.num_proc, len(texts))
    files = {}
    if work_dir is not None:
        work_dir.mkdir(parents=True, exist_ok=True)
        files = {name: str(work_dir / f"{name}.arrow") for name in ("tokenized", "blocks")}
    tokenized = tokenize_corpus(texts, tokenizer, strategy, num_proc=processes, cache_file_name=files.get("tokenized"))
    blocks = pack_blocks(tokenized, data_cfg.max_seq_length, tuple(getattr(strategy, "group_features", ())),
                         num_proc=processes, cache_file_name=files.get("blocks"))
    return blocks, len(texts)


def count_tokens(blocks: Any) -> int:
    """Tokens in all blocks (read from the Arrow column, not row by row)."""
    lengths = pc.list_value_length(blocks.data.column("input_ids"))
    return int(pc.sum(lengths).as_py() or 0)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _list_files(root: Path) -> dict[str, dict[str, Any]]:
    files = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file() and p.name != MANIFEST):
        entry: dict[str, Any] = {"size": path.stat().st_size}
        if path.suffix in HASHED_SUFFIXES:
            entry["sha256"] = _sha256(path)
        files[path.relative_to(root).as_posix()] = entry
    return files


def read_manifest(directory: Path) -> dict[str, Any]:
    """The manifest of a prepared corpus (raises ``OSError`` / ``ValueError`` when missing or unreadable)."""
    manifest = json.loads((directory / MANIFEST).read_text(encoding="utf-8"))
    if not isinstance(manifest, dict) or "files" not in manifest:
        raise ValueError("manifest without a file list")
    return manifest


def damage(directory: Path, key: str | None = None) -> str | None:
    """Why the prepared corpus in ``directory`` cannot be used (None when it is sound)."""
    try:
        manifest = read_manifest(directory)
    except FileNotFoundError:
        return "no manifest (an interrupted build?)"
    except (OSError, ValueError) as exc:
        return f"unreadable manifest ({exc})"
    if key is not None and manifest.get("key") != key:
        return "its manifest belongs to another corpus"
    for name, entry in manifest["files"].items():
        path = directory / name
        if not path.is_file():
            return f"{name} is missing"
        if path.stat().st_size != entry["size"]:
            return f"{name} has {path.stat().st_size:,} bytes, its manifest says {entry['size']:,}"
        if "sha256" in entry and _sha256(path) != entry["sha256"]:
            return f"{name} differs from its manifest"
    return None


def _load(directory: Path, manifest: dict[str, Any]) -> PreparedCorpus:
    blocks = datasets.load_from_disk(str(directory / BLOCKS_DIR))
    if len(blocks) != manifest["blocks"]:
        raise ValueError(f"{len(blocks):,} blocks where its manifest says {manifest['blocks']:,}")
    return PreparedCorpus(blocks=blocks, documents=manifest["documents"], tokens=manifest["tokens"], path=directory,
                          reused=True, size_bytes=sum(e["size"] for e in manifest["files"].values()))


def _try_load(directory: Path, key: str) -> tuple[PreparedCorpus | None, str | None]:
    """``(prepared, None)`` for a sound directory, ``(None, why)`` for a damaged one, ``(None, None)`` if absent."""
    if not directory.exists():
        return None, None
    problem = damage(directory, key)
    if problem is None:
        try:
            return _load(directory, read_manifest(directory)), None
        except Exception as exc:  # Arrow and datasets raise many kinds on a damaged file
            problem = f"cannot be read ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
    return None, problem


def _remove(path: Path) -> None:
    """Move ``path`` aside, then delete it (a reader never sees it half deleted)."""
    trash = path.with_name(f"{TEMP_PREFIX}trash-{uuid.uuid4().hex[:8]}")
    try:
        path.rename(trash)
    except FileNotFoundError:
        return
    shutil.rmtree(trash, ignore_errors=True)


def _write(temp: Path, directory: Path, key: str, description: dict[str, Any], blocks: Any, documents: int,
           num_proc: int | None) -> PreparedCorpus:
    """Save ``blocks`` into the build folder ``temp``, write the manifest last, rename into place."""
    try:
        blocks.save_to_disk(str(temp / BLOCKS_DIR), num_proc=num_proc if num_proc and num_proc > 1 else None)
        shutil.rmtree(temp / WORK_DIR, ignore_errors=True)  # intermediate files; ``blocks`` has them mapped already
        manifest = {"key": key, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "documents": documents,
                    "blocks": len(blocks), "tokens": count_tokens(blocks), "description": description,
                    "files": _list_files(temp)}
        (temp / MANIFEST).write_text(json.dumps(manifest, indent=1), encoding="utf-8")
        if directory.exists():  # damaged (checked by the caller) or built meanwhile by another process
            if damage(directory, key) is None:
                shutil.rmtree(temp, ignore_errors=True)
                return _load(directory, read_manifest(directory))
            _remove(directory)
        temp.rename(directory)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    prepared = _load(directory, manifest)
    prepared.reused = False
    return prepared


def prepared_corpus(data_cfg: Any, tokenizer: Any, strategy: Any,
                    notify: Callable[[str], None] | None = None, rebuild: bool = False) -> PreparedCorpus:
    """The packed blocks of ``data_cfg``'s corpus, from the cache when a matching one exists.

    With ``data.cache`` off, or for a corpus that cannot be fingerprinted (a Hub dataset),
    the blocks are prepared in memory as before and nothing is written.

    Args:
        data_cfg: A :class:`~mlmkit.config.schema.PretrainDataConfig`.
        tokenizer: The run's tokenizer.
        strategy: The masking strategy (bound to ``tokenizer``) or a duck-typed feature set.
        notify: Called with a one-line notice when a damaged prepared corpus is rebuilt.
        rebuild: Prepare again even when a sound prepared corpus exists.
    """
    keyed = prepared_key(data_cfg, tokenizer, strategy) if data_cfg.cache else None
    if keyed is None:
        blocks, documents = prepare_blocks(data_cfg, tokenizer, strategy)
        return PreparedCorpus(blocks=blocks, documents=documents, tokens=count_tokens(blocks), path=None,
                              reused=False)
    key, description = keyed
    directory = resolve_cache_dir(data_cfg.cache_dir) / key
    if not rebuild:
        found, problem = _try_load(directory, key)
        if found is not None:
            return found
        if problem is not None and notify is not None:
            notify(f"prepared corpus {directory} is damaged ({problem}); rebuilding it")
    directory.parent.mkdir(parents=True, exist_ok=True)
    temp = directory.with_name(f"{TEMP_PREFIX}{key}-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        blocks, documents = prepare_blocks(data_cfg, tokenizer, strategy, work_dir=temp / WORK_DIR)
        if rebuild and directory.exists():
            _remove(directory)
        return _write(temp, directory, key, description, blocks, documents, data_cfg.num_proc)
    finally:
        shutil.rmtree(temp, ignore_errors=True)  # a failed build leaves nothing behind


def streamed_blocks(data_cfg: Any, tokenizer: Any, strategy: Any, notify: Callable[[str], None] | None = None) -> Any:
    """The packed blocks of a streamed corpus (``data.streaming``): an ``IterableDataset`` read lazily, in order.

    When a sound prepared corpus matches (``data.cache`` on; built by ``mlmkit prepare`` or an
    earlier map-style run), its memory-mapped blocks are streamed in :data:`STREAM_SHARDS`
    shards and nothing is tokenized. Otherwise the corpus is read, tokenized and packed as the
    stream is consumed. Both give the same blocks in the same order.
    """
    keyed = prepared_key(data_cfg, tokenizer, strategy) if data_cfg.cache else None
    if keyed is not None:
        directory = resolve_cache_dir(data_cfg.cache_dir) / keyed[0]
        found, problem = _try_load(directory, keyed[0])
        if found is not None:
            if notify is not None:
                notify(f"data: streaming the prepared corpus in {found.path}")
            return found.blocks.to_iterable_dataset(num_shards=max(1, min(STREAM_SHARDS, len(found.blocks))))
        if problem is not None and notify is not None:
            notify(f"prepared corpus {directory} is damaged ({problem}); streaming the raw corpus instead")
    texts = load_text_corpus(data_cfg.source, data_cfg.text_column, data_cfg.split, data_cfg.config_name,
                             data_cfg.max_documents, streaming=True)
    tokenized = tokenize_corpus(texts, tokenizer, strategy, num_proc=data_cfg.num_proc)
    return pack_blocks(tokenized, data_cfg.max_seq_length, tuple(getattr(strategy, "group_features", ())),
                       num_proc=data_cfg.num_proc)


@dataclass
class CacheEntry:
    """One prepared corpus in a cache directory."""

    key: str
    path: str
    source: str
    tokenizer: str
    max_seq_length: int | None
    features: list[str]
    documents: int
    blocks: int
    tokens: int
    size_bytes: int
    created: str
    problem: str | None


def list_prepared(cache_dir: str | os.PathLike | None = None) -> list[CacheEntry]:
    """The prepared corpora under ``cache_dir`` (default location when None), newest first."""
    root = resolve_cache_dir(cache_dir)
    entries = []
    for directory in sorted(root.iterdir()) if root.is_dir() else []:
        if not directory.is_dir() or directory.name.startswith(TEMP_PREFIX):
            continue
        problem = damage(directory)
        try:
            manifest = read_manifest(directory)
        except (OSError, ValueError):
            manifest = {}
        described = manifest.get("description", {})
        features = (described.get("features") or {}).get("features", [])
        size = sum(p.stat().st_size for p in directory.rglob("*") if p.is_file())
        entries.append(CacheEntry(
            key=directory.name, path=str(directory), source=str(described.get("corpus", {}).get("source", "?")),
            tokenizer=str(described.get("tokenizer_name", "?")), max_seq_length=described.get("max_seq_length"),
            features=list(features), documents=int(manifest.get("documents", 0)),
            blocks=int(manifest.get("blocks", 0)), tokens=int(manifest.get("tokens", 0)), size_bytes=size,
            created=str(manifest.get("created", "")), problem=problem))
    return sorted(entries, key=lambda e: e.created, reverse=True)


def clear_prepared(cache_dir: str | os.PathLike | None = None, keys: Iterable[str] = ()) -> list[str]:
    """Delete the prepared corpora ``keys`` (all of them, and leftover temporary folders, when empty).

    Returns the deleted directory names. An unknown key is a :class:`UserError`.
    """
    root = resolve_cache_dir(cache_dir)
    wanted = list(keys)
    present = {p.name for p in root.iterdir()} if root.is_dir() else set()
    missing = [k for k in wanted if k not in present]
    if missing:
        raise UserError(f"no prepared corpus {missing[0]!r} in {root} (see `mlmkit cache ls`)")
    names = wanted or sorted(present)
    for name in names:
        if (root / name).is_dir():
            _remove(root / name)
    return names
