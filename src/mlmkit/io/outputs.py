"""The run directory: a ``from_pretrained``-ready model plus config and metrics.

Files appear atomically: each is written to a temporary name and renamed into
place, and the model is saved to a hidden staging folder first, so an interrupted
run never leaves a half-written ``model.safetensors`` behind.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from mlmkit.errors import TrainingInterrupted, UserError
from mlmkit.modeling.fast_dropout import restore_attention

F = TypeVar("F", bound=Callable[..., Any])

#: output directory -> the hidden folder holding what it held before ``overwrite`` emptied it,
#: filled only while a function decorated with :func:`restores_replaced_output` runs
_SET_ASIDE: dict[Path, Path] = {}
_GUARDS = [0]


def prepare_output_dir(path: str | Path, overwrite: bool, resume: bool = False) -> Path:
    """Create the run directory; a non-empty one is an error unless ``overwrite`` or ``resume``.

    Args:
        path: Directory to create.
        overwrite: Empty an existing directory first. Inside a function decorated with
            :func:`restores_replaced_output` the old contents are set aside, not deleted, until
            that function returns.
        resume: Keep an existing directory exactly as it is (its checkpoints, metrics and
            tokenizer are what the run continues from); wins over ``overwrite``.
    """
    out = Path(path).expanduser()
    if not resume and not check_output_dir(out, overwrite):
        _set_aside(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise UserError(f"cannot write to output directory {out}: {exc.strerror or exc}") from exc
    return out


def check_output_dir(out: Path, overwrite: bool) -> bool:
    """Whether ``out`` can be written as it is (missing or empty); a non-empty one is an error unless ``overwrite``.

    Changes nothing, so every process of a launched run can ask before the main one writes.
    """
    if out.exists() and not out.is_dir():
        raise UserError(f"output path {out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise UserError(f"output directory {out} is not empty; choose another or set output.overwrite=true")
        return False
    return True


def _set_aside(out: Path) -> None:
    """Empty ``out``: into a hidden sibling folder while a guard is active, else for good."""
    if not _GUARDS[0]:
        for entry in out.iterdir():
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
        return
    try:  # a sibling on the same file system: moving is a rename, and the run never sees it
        aside = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.previous-"))
    except OSError:  # the parent is not writable: a hidden folder inside the output will do
        aside = Path(tempfile.mkdtemp(dir=out, prefix=".previous-"))
    for entry in list(out.iterdir()):
        if entry != aside:
            os.replace(entry, aside / entry.name)
    _SET_ASIDE[out.resolve()] = aside


def _put_back(out: Path, aside: Path) -> None:
    """Undo :func:`_set_aside`: drop what the failed run wrote and move the old contents back."""
    out.mkdir(parents=True, exist_ok=True)
    for entry in list(out.iterdir()):
        if entry != aside:
            shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
    for entry in list(aside.iterdir()):
        os.replace(entry, out / entry.name)
    aside.rmdir()


def restores_replaced_output(fn: F) -> F:
    """Run ``fn`` so that an output directory it overwrites comes back if it fails.

    ``output.overwrite=true`` must not cost the user their previous run when the new one stops
    on an error: the old files are moved aside when the directory is emptied and deleted only
    once ``fn`` returns. On an exception they are moved back (and whatever the failed run wrote
    is removed); on an interruption that saved a checkpoint the new run is kept, to be resumed,
    and the old files stay where a printed note says.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        before = set(_SET_ASIDE)
        _GUARDS[0] += 1
        try:
            result = fn(*args, **kwargs)
        except TrainingInterrupted:
            for out in set(_SET_ASIDE) - before:
                print(f"note: the previous contents of {out} are in {_SET_ASIDE.pop(out)}", file=sys.stderr)
            raise
        except BaseException:
            for out in set(_SET_ASIDE) - before:
                _put_back(out, _SET_ASIDE.pop(out))
            raise
        finally:
            _GUARDS[0] -= 1
        for out in set(_SET_ASIDE) - before:
            shutil.rmtree(_SET_ASIDE.pop(out), ignore_errors=True)
        return result

    return wrapper  # type: ignore[return-value]


def _umask_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(tmp, _umask_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_pretrained_atomic(out: Path, model: Any, tokenizer: Any) -> None:
    """Save model and tokenizer into ``out`` via a staging folder, then move files in one by one."""
    try:
        staging = Path(tempfile.mkdtemp(dir=out, prefix=".staging-"))
    except OSError as exc:
        raise UserError(f"cannot write the model to {out}: {exc.strerror or exc}") from exc
    try:
        try:
            restore_attention(model)  # the saved config names a standard attention kernel
            model.save_pretrained(staging, safe_serialization=True)
            if tokenizer is not None:
                tokenizer.save_pretrained(staging)
        except (OSError, RuntimeError) as exc:  # a full disk surfaces as either
            reason = getattr(exc, "strerror", None) or str(exc).splitlines()[0]
            raise UserError(f"cannot write the model to {out} ({reason}); nothing was replaced") from exc
        for entry in staging.iterdir():
            target = out / entry.name
            if entry.is_file():
                os.chmod(entry, _umask_mode())
            if target.is_dir():
                shutil.rmtree(target)
            os.replace(entry, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


class MetricsLog:
    """Appends one JSON object per line to ``metrics.jsonl`` (flushed per line)."""

    def __init__(self, path: Path, enabled: bool = True) -> None:
        self.path = path
        self.enabled = enabled
        self.start = time.perf_counter()

    def write(self, **record: Any) -> None:
        """Append a record with the elapsed wall time."""
        if not self.enabled:
            return
        record.setdefault("elapsed_s", round(time.perf_counter() - self.start, 3))
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """Read a ``metrics.jsonl`` file."""
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]
