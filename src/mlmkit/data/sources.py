"""Load text or labelled data from the embedded corpus, local files or the Hugging Face Hub.

Every source ends up as a ``datasets.Dataset``; the call for a Hub name is the plain
``load_dataset`` one, so Hub names work unchanged wherever the Hub is reachable.
"""

from __future__ import annotations

import glob
import os
from collections import Counter
from pathlib import Path

from mlmkit.config.schema import EMBEDDED
from mlmkit.errors import UserError

#: file extension -> datasets builder
BUILDERS = {".txt": "text", ".text": "text", ".csv": "csv", ".tsv": "csv", ".json": "json", ".jsonl": "json",
            ".parquet": "parquet"}


def looks_like_path(source: str) -> bool:
    """True when ``source`` is meant as a local path rather than a Hub name."""
    return (
        source.startswith((".", "/", "~"))
        or Path(source).suffix.lower() in BUILDERS
        or any(ch in source for ch in "*?")
        or Path(source).exists()
    )


def _local_files(source: str) -> tuple[str, list[str]]:
    expanded = os.path.expanduser(source)
    if os.path.isdir(expanded):
        files = sorted(p for p in glob.glob(os.path.join(expanded, "**", "*"), recursive=True)
                       if Path(p).suffix.lower() in BUILDERS)
        if not files:
            raise UserError(f"no txt/csv/json/jsonl/parquet files in directory {source}")
        # a directory may mix formats; use the most common one
        ext = Counter(Path(p).suffix.lower() for p in files).most_common(1)[0][0]
        files = [p for p in files if Path(p).suffix.lower() == ext]
    else:
        files = sorted(glob.glob(expanded)) if any(ch in expanded for ch in "*?") else [expanded]
        missing = [p for p in files if not os.path.isfile(p)]
        if not files or missing:
            raise UserError(f"no such file: {missing[0] if missing else source}")
    suffixes = {Path(p).suffix.lower() for p in files}
    unknown = suffixes - set(BUILDERS)
    if unknown or len({BUILDERS[s] for s in suffixes}) != 1:
        raise UserError(f"cannot read {source}: use one of {', '.join(sorted(BUILDERS))} files")
    return BUILDERS[suffixes.pop()], files


def load_any(source: str, split: str = "train", config_name: str | None = None, streaming: bool = False):
    """Load ``split`` of a local file/dir/glob or a Hub dataset as a ``datasets.Dataset``.

    With ``streaming`` the result is a ``datasets.IterableDataset`` read lazily.
    """
    import datasets

    if looks_like_path(source):
        builder, files = _local_files(source)
        kwargs = {"delimiter": "\t"} if builder == "csv" and files[0].lower().endswith(".tsv") else {}
        try:
            return datasets.load_dataset(builder, data_files=files, split="train", streaming=streaming, **kwargs)
        except Exception as exc:  # parser errors from pyarrow / pandas come in many types
            raise UserError(f"cannot read {source}: {str(exc).splitlines()[0]}") from exc
    try:
        return datasets.load_dataset(source, config_name, split=split, streaming=streaming)
    except ValueError as exc:
        if "split" in str(exc).lower() or "Unknown split" in str(exc):
            raise UserError(f"dataset {source!r} has no split {split!r}: {str(exc).splitlines()[0]}") from exc
        raise UserError(f"cannot load dataset {source!r}: {str(exc).splitlines()[0]}") from exc
    except Exception as exc:
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
    import datasets

    if source == EMBEDDED:
        from mlmkit.data.embedded import read_embedded_tweets

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
