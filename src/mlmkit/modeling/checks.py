"""What is wrong with a model directory, in one line that names the file.

Every way a model directory can be broken (no ``config.json``, a damaged JSON file, no
weights, a truncated ``model.safetensors``, a missing shard) is found here by reading
headers and sizes, without loading a model: :func:`diagnose_model_dir` finds the problem
and :func:`model_load_error` turns a failed ``from_pretrained`` into that line. Loading
itself is :mod:`mlmkit.modeling.loading`.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

from mlmkit.config.schema import EMBEDDED
from mlmkit.data.embedded import embedded_model_dir
from mlmkit.errors import UserError, first_line

#: weight files ``from_pretrained`` reads, in the order it prefers them
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")
#: JSON files of a model or tokenizer directory; each must parse when present
JSON_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
              "generation_config.json", "model.safetensors.index.json", "pytorch_model.bin.index.json")
#: files a tokenizer directory holds (at least one of them)
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json", "spiece.model",
                   "sentencepiece.bpe.model")
_DAMAGED = "it is damaged or was only partly copied; copy or save the model again"


def resolve_model_name(name: str) -> str:
    """Map ``embedded`` to the packaged encoder; check that path-like names exist."""
    if name == EMBEDDED:
        return str(embedded_model_dir())
    path = Path(name).expanduser()
    if path.exists():
        if not path.is_dir() or not (path / "config.json").is_file():
            raise UserError(f"{name} is not a model directory (no config.json)")
        return str(path)
    if name.startswith((".", "/", "~")) or name.count("/") > 1 or name.endswith("/"):
        raise UserError(f"no such model directory: {name}")
    return name


def read_json_file(path: Path) -> Any:
    """Parse a JSON file of a model directory; a damaged one is a UserError naming it."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise UserError(f"{path} is not valid JSON ({first_line(exc)}); {_DAMAGED}") from exc
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror or exc}") from exc


def safetensors_problem(path: Path) -> str | None:
    """Why a ``.safetensors`` file cannot be loaded (truncated, bad header), or None when it looks whole.

    Reads only the header: 8 bytes of length, the JSON header, and the file size, which must
    equal the end of the last tensor.
    """
    size = path.stat().st_size
    with open(path, "rb") as handle:
        head = handle.read(8)
        if len(head) < 8:
            return f"{path} is truncated ({size} bytes, not even a header); {_DAMAGED}"
        length = int.from_bytes(head, "little")
        if 8 + length > size:
            return (f"{path} is truncated or not a safetensors file: its header length field ({length:,} bytes) "
                    f"exceeds the file ({size:,} bytes); {_DAMAGED}")
        try:
            header = json.loads(handle.read(length))
            ends = [int(meta["data_offsets"][1]) for key, meta in header.items() if key != "__metadata__"]
        except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
            return f"{path} has a corrupt header ({first_line(exc)}); {_DAMAGED}"
    expected = 8 + length + max(ends, default=0)
    if size < expected:
        return f"{path} is truncated: it holds {size:,} bytes of the {expected:,} its header describes; {_DAMAGED}"
    if size > expected:
        return f"{path} has {size - expected:,} bytes more than its header describes; {_DAMAGED}"
    return None


def _weights_problem(path: Path) -> str | None:
    present = [name for name in WEIGHT_FILES if (path / name).is_file()]
    if not present:
        return (f"{path} has no weights file ({' or '.join(WEIGHT_FILES[::2])}); save the model with "
                "save_pretrained, or use the directory of a finished `mlmkit pretrain` run")
    name = present[0]
    if name.endswith(".index.json"):
        weight_map = read_json_file(path / name).get("weight_map", {})
        shards = sorted(set(weight_map.values())) if isinstance(weight_map, dict) else []
        for shard in shards:
            if not (path / shard).is_file():
                return f"{path / shard}, a shard listed in {path / name}, is missing"
        files = [path / shard for shard in shards]
    else:
        files = [path / name]
    for file in files:
        if file.suffix == ".safetensors":
            problem = safetensors_problem(file)
            if problem:
                return problem
        elif not zipfile.is_zipfile(file):  # torch.save writes zip archives; a cut one loses its directory
            return f"{file} is not a complete PyTorch weights archive; {_DAMAGED}"
    return None


def json_problem(path: Path, names: tuple[str, ...]) -> str | None:
    """The first of ``names`` in ``path`` that does not parse as JSON, as a one-line problem; None if all do."""
    for name in names:
        if (path / name).is_file():
            try:
                read_json_file(path / name)
            except UserError as exc:
                return str(exc)
    return None


def diagnose_model_dir(path: str | Path, weights: bool = True) -> str | None:
    """What is wrong with a local model directory, naming the file; None when nothing is.

    Args:
        path: The directory.
        weights: Also check the weight files (a from-scratch run needs only the config).
    """
    path = Path(path)
    if not (path / "config.json").is_file():
        return f"{path} is not a model directory (no config.json)"
    problem = json_problem(path, JSON_FILES)
    if problem:
        return problem
    config = read_json_file(path / "config.json")
    if not isinstance(config, dict) or not config.get("model_type"):
        return f"{path / 'config.json'} names no model_type, so transformers cannot tell which model it describes"
    return _weights_problem(path) if weights else None


def local_model_dir(name: str) -> Path | None:
    """The local directory ``name`` refers to (``embedded`` included), or None for a Hub name."""
    if name == EMBEDDED:
        return Path(resolve_model_name(name))
    path = Path(name).expanduser()
    return path if path.is_dir() else None


def model_load_error(name: str, exc: BaseException, what: str = "model") -> UserError:
    """Turn a failed ``from_pretrained`` of ``what`` (model, tokenizer, model config) into one clear line."""
    if isinstance(exc, UserError):
        return exc
    directory = local_model_dir(name)
    if directory is not None:
        problem = diagnose_model_dir(directory, weights=what == "model")
        if problem:
            return UserError(problem)
        return UserError(f"cannot load the {what} in {directory}: {type(exc).__name__}: {first_line(exc)}")
    return UserError(f"cannot load {what} {name!r} (not a local directory, and the Hub load failed: "
                     f"{first_line(exc)})")
