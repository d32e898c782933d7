"""Load text or labelled data from the embedded corpus, local files or the Hugging Face Hub.

Every source ends up as a ``datasets.Dataset``; the call for a Hub name is the plain
``load_dataset`` one, so Hub names work unchanged wherever the Hub is reachable.
"""

from __future__ import annotations

import bz2
import glob
import gzip
import lzma
import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import datasets

from mlmkit.config.schema import EMBEDDED
from mlmkit.data.embedded import read_embedded_tweets
from mlmkit.errors import UserError

#: file extension -> datasets builder; a file with any other extension is sniffed and read as lines of text
BUILDERS = {".txt": "text", ".text": "text", ".csv": "csv", ".tsv": "csv", ".json": "json", ".jsonl": "json",
            ".parquet": "parquet"}
#: compression suffixes that ``datasets`` decompresses on the fly (for every format but parquet)
COMPRESSIONS = (".gz", ".bz2", ".xz", ".zst")
#: bytes read from the start of a file to tell text from binary
SNIFF_BYTES = 8192


def looks_like_path(source: str) -> bool:
    """True when ``source`` is meant as a local path rather than a Hub name."""
    return (
        source.startswith((".", "/", "~"))
        or Path(source).suffix.lower() in BUILDERS
        or Path(source).suffix.lower() in COMPRESSIONS
        or any(ch in source for ch in "*?")
        or Path(source).exists()
    )


def split_compression(path: str) -> tuple[str, str | None]:
    """``("data.jsonl.gz")`` -> ``(".jsonl", ".gz")``: the format suffix and the compression suffix, if any."""
    name = Path(path).name.lower()
    compression = next((c for c in COMPRESSIONS if name.endswith(c)), None)
    if compression:
        name = name[: -len(compression)]
    return Path(name).suffix, compression


def _read_head(path: str, compression: str | None) -> bytes:
    """The first :data:`SNIFF_BYTES` bytes of a file, decompressed."""
    openers = {None: open, ".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}
    try:
        if compression == ".zst":
            import zstandard  # lazy: only .zst files need it; a missing install becomes the error below

            with open(path, "rb") as raw, zstandard.ZstdDecompressor().stream_reader(raw) as handle:
                return handle.read(SNIFF_BYTES)
        with openers[compression](path, "rb") as handle:
            return handle.read(SNIFF_BYTES)
    except ImportError as exc:  # pragma: no cover - zstandard is a dependency
        raise UserError(f"reading {path} needs the zstandard package: pip install zstandard") from exc
    except PermissionError as exc:
        raise UserError(f"cannot read {path}: permission denied") from exc
    except (OSError, EOFError, lzma.LZMAError) as exc:
        raise UserError(f"{path} is not a valid {compression or ''} file ({exc}); it is damaged or misnamed") from exc
    except Exception as exc:  # zstandard.ZstdError
        raise UserError(f"{path} is not a valid {compression} file ({exc}); it is damaged or misnamed") from exc


def text_problem(head: bytes) -> str | None:
    """Why bytes from the start of a file are not UTF-8 text (None when they are)."""
    if b"\x00" in head:
        return "it is a binary file, not text (it holds NUL bytes)"
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 3:  # not merely a character cut off by the sniff window
            return (f"it is not UTF-8 text (byte 0x{head[exc.start]:02x} at offset {exc.start}); a binary file, or "
                    "text in another encoding (convert it, e.g. iconv -f latin1 -t utf-8)")
    return None


def _classify(path: str) -> tuple[str | None, str | None]:
    """``(builder, problem)`` of one local file: a ``datasets`` builder, or why the file is not text."""
    suffix, compression = split_compression(path)
    if suffix == ".parquet":
        if compression:
            raise UserError(f"{path}: parquet files compress their columns themselves and cannot be read through "
                            f"an outer {compression}; decompress it first")
        return "parquet", None
    problem = text_problem(_read_head(path, compression))
    return (None, problem) if problem else (BUILDERS.get(suffix, "text"), None)


def file_builder(path: str) -> str | None:
    """The ``datasets`` builder for one local file, or None for a file that is not text.

    Known extensions (optionally compressed) pick their builder; any other file is read as
    lines of text when its first bytes are UTF-8 text.
    """
    return _classify(path)[0]


def _ensure_text(path: str) -> str:
    builder, problem = _classify(path)
    if builder is None:
        raise UserError(f"cannot read {path}: {problem}")
    return builder


def _local_files(source: str) -> tuple[str, list[str]]:
    """Resolve a local file, directory or glob to ``(builder, files)``."""
    expanded = os.path.expanduser(source)
    if os.path.isdir(expanded):
        candidates = sorted(p for p in glob.glob(os.path.join(expanded, "**", "*"), recursive=True)
                            if os.path.isfile(p) and not any(part.startswith(".")
                                                             for part in Path(p).relative_to(expanded).parts))
        # in a directory, files that are not text (images, archives) are not part of the corpus
        typed = [(p, file_builder(p)) for p in candidates]
        typed = [(p, b) for p, b in typed if b is not None]
        if not typed:
            raise UserError(f"no text, csv, json(l) or parquet files in directory {source}")
        # a directory may mix formats; use the most common one
        builder = Counter(b for _, b in typed).most_common(1)[0][0]
        return builder, [p for p, b in typed if b == builder]
    files = sorted(glob.glob(expanded)) if any(ch in expanded for ch in "*?") else [expanded]
    missing = [p for p in files if not os.path.isfile(p)]
    if not files or missing:
        what = "a directory, not a file" if missing and os.path.isdir(missing[0]) else "no such file"
        raise UserError(f"{what}: {missing[0] if missing else source}")
    builders = {p: _ensure_text(p) for p in files}
    kinds = sorted(set(builders.values()))
    if len(kinds) != 1:
        raise UserError(f"the files of {source} mix formats ({', '.join(kinds)}); give files of one format")
    return kinds[0], files


def check_local_source(source: str) -> None:
    """For a local corpus (file, directory, glob): check it exists and is text, without loading it."""
    if source != EMBEDDED and looks_like_path(source):
        _local_files(source)


def load_any(source: str, split: str = "train", config_name: str | None = None, streaming: bool = False,
             revision: str | None = None):
    """Load ``split`` of a local file/dir/glob or a Hub dataset as a ``datasets.Dataset``.

    With ``streaming`` the result is a ``datasets.IterableDataset`` read lazily; ``revision``
    picks a Hub dataset's branch, tag or commit.
    """
    if looks_like_path(source):
        builder, files = _local_files(source)
        kwargs = {"delimiter": "\t"} if builder == "csv" and split_compression(files[0])[0] == ".tsv" else {}
        try:
            return datasets.load_dataset(builder, data_files=files, split="train", streaming=streaming, **kwargs)
        except Exception as exc:  # parser errors from pyarrow / pandas come in many types
            raise UserError(f"cannot read {source}: {str(exc).splitlines()[0]}") from exc
    try:
        return datasets.load_dataset(source, config_name, split=split, streaming=streaming, revision=revision)
    except ValueError as exc:
        if "split" in str(exc).lower() or "Unknown split" in str(exc):
            raise UserError(f"dataset {source!r} has no split {split!r}: {str(exc).splitlines()[0]}") from exc
        raise UserError(f"cannot load dataset {source!r}: {str(exc).splitlines()[0]}") from exc
    except Exception as exc:
        if "scripts are no longer supported" in str(exc) and revision is None:
            # datasets 4 dropped loading scripts; the Hub keeps a Parquet export of many such datasets
            raise UserError(f"dataset {source!r} needs a loading script, which this datasets version no longer "
                            f"runs; try its Parquet export (data.revision=refs/convert/parquet) or a Parquet "
                            f"copy of it") from exc
        raise UserError(
            f"{source!r} is not a local file and could not be loaded from the Hugging Face Hub "
            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else 'no detail'})"
        ) from exc


def require_column(dataset, column: str, source: str, role: str) -> None:
    """Raise a UserError naming the available columns when ``column`` is missing."""
    if column not in dataset.column_names:
        raise UserError(
            f"{role} column {column!r} not found in {source}; available columns: {', '.join(dataset.column_names)}"
        )


def load_text_corpus(source: str, text_column: str = "text", split: str = "train",
                     config_name: str | None = None, max_documents: int | None = None, streaming: bool = False):
    """Pre-training text with one column ``text`` (empty lines dropped).

    Returns a ``Dataset``, or with ``streaming`` an ``IterableDataset`` that is read lazily
    (the corpus may be larger than memory or disk).
    """
    if source == EMBEDDED:
        dataset = datasets.Dataset.from_dict({"text": read_embedded_tweets()["text"]})
        if streaming:
            dataset = dataset.to_iterable_dataset(num_shards=4)
    else:
        dataset = load_any(source, split=split, config_name=config_name, streaming=streaming)
        names = dataset.column_names
        if names is None:  # some streamed sources only know their columns after the first row
            names = list(next(iter(dataset.take(1)), {"text": ""}).keys())
        column = "text" if "text" in names and len(names) == 1 else text_column
        if column not in names:
            raise UserError(
                f"text column {column!r} not found in {source}; available columns: {', '.join(names)}")
        dataset = dataset.select_columns([column])
        if column != "text":
            dataset = dataset.rename_column(column, "text")

    def non_empty(batch):
        return [isinstance(t, str) and t.strip() != "" for t in batch["text"]]

    if streaming:
        dataset = dataset.filter(non_empty, batched=True)
        if max_documents is not None:
            dataset = dataset.take(max_documents)
        if next(iter(dataset.take(1)), None) is None:
            raise UserError(f"the corpus {source!r} has no non-empty text")
        return dataset
    dataset = dataset.filter(non_empty, batched=True, desc="dropping empty lines")
    if max_documents is not None:
        dataset = dataset.select(range(min(max_documents, len(dataset))))
    if len(dataset) == 0:
        raise UserError(f"the corpus {source!r} has no non-empty text")
    return dataset


def load_corpora(sources: Sequence[str], text_column: str = "text", split: str = "train",
                 config_name: str | None = None, max_documents: int | None = None):
    """Load one or more corpora (embedded, local files, Hub names) as one ``text`` dataset.

    With ``max_documents``, the first N documents over all corpora in the order given; corpora
    after the N-th document are not read.
    """
    if not sources:
        raise UserError("give at least one corpus (a file, a directory, a Hub dataset or 'embedded')")
    parts: list[Any] = []
    for source in sources:
        remaining = None if max_documents is None else max_documents - sum(len(part) for part in parts)
        if remaining is not None and remaining <= 0:
            break
        parts.append(load_text_corpus(source, text_column, split, config_name, remaining))
    return parts[0] if len(parts) == 1 else datasets.concatenate_datasets(parts)
