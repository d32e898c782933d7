"""Crash-safe training checkpoints.

A checkpoint is a directory ``<run>/checkpoints/step-00000123`` holding everything
needed to continue exactly: Accelerate's ``save_state`` (model as safetensors,
optimizer, LR scheduler, gradient scaler, Python/NumPy/torch RNG states per process),
plus ``trainer_state.json`` (step, data position, masking schedule and strategy state,
the metrics before training) and the resolved ``config.yaml``. ``manifest.json`` is
written last with the size and SHA-256 of every file.

Atomicity: a checkpoint is assembled in a hidden temporary directory and renamed into
place, so a kill at any moment leaves earlier checkpoints intact; only then are old
ones pruned. Loading checks the manifest first and only ever reads safetensors or
``torch.load(weights_only=True)`` data, never arbitrary pickles.

Integrity on resume: the checkpoint being resumed has every file's size and SHA-256
checked against its manifest. A damaged checkpoint named by path is an error;
``resume=auto`` falls back to the newest intact checkpoint and says which one it
skipped. Pruning counts intact checkpoints only, never deletes one newer than the
checkpoint just written, and deletes nothing at all while the run directory holds a
damaged checkpoint, so the intact ones survive whatever happened to the newest.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from mlmkit.errors import UserError
from mlmkit.training.optim import rescale_lr_scheduler

CHECKPOINT_DIR = "checkpoints"
STATE_FILE = "trainer_state.json"
MANIFEST = "manifest.json"
_NAME = re.compile(r"^step-(\d{8})$")


@dataclass
class TrainerState:
    """Loop position and bookkeeping saved with every checkpoint."""

    step: int = 0
    """Optimizer steps completed."""
    micro_step: int = 0
    """Micro-batches consumed (steps x accumulation)."""
    epoch: int = 0
    """Current pass over the training blocks."""
    batches_in_epoch: int = 0
    """Micro-batches of the current epoch already consumed (per process)."""
    tokens: int = 0
    """Tokens trained on so far (all processes)."""
    train_seconds: float = 0.0
    """Wall time spent in the training loop so far."""
    num_processes: int = 1
    """Processes of the run that wrote the checkpoint."""
    before: dict[str, float] = field(default_factory=dict)
    """Held-out metrics before training."""
    schedule: dict[str, Any] = field(default_factory=dict)
    """Masking-ratio schedule state."""
    strategy: dict[str, Any] = field(default_factory=dict)
    """Masking strategy state (learned statistics)."""
    data_state: list[Any] = field(default_factory=list)
    """Per-process position in a streamed corpus (``IterableDataset.state_dict()``)."""
    skipped_batches: int = 0
    """Micro-batches (all processes) skipped because the masking strategy predicted no token in them."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and p.name != MANIFEST)


def _step(path: Path) -> int:
    return int(_NAME.match(path.name).group(1))


def _step_dirs(run_dir: str | Path) -> list[Path]:
    """Every ``step-*`` directory of a run, complete or not, oldest first."""
    root = Path(run_dir) / CHECKPOINT_DIR
    if not root.is_dir():
        return []
    return sorted((p for p in root.iterdir() if p.is_dir() and _NAME.match(p.name)), key=_step)


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Complete checkpoints of a run (those with a manifest), oldest first."""
    return [p for p in _step_dirs(run_dir) if (p / MANIFEST).is_file()]


def _manifest_files(path: Path) -> dict[str, Any]:
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        raise UserError(f"{path} is not a complete checkpoint (no {MANIFEST}); it was probably interrupted")
    try:
        files = json.loads(manifest_path.read_text())["files"]
        if not isinstance(files, dict) or not all(isinstance(m, dict) and {"size", "sha256"} <= set(m)
                                                  for m in files.values()):
            raise ValueError("its file list is malformed")
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise UserError(f"checkpoint {path} has a corrupt manifest: {exc}") from exc
    return files


def verify_checkpoint(path: Path, deep: bool = True) -> None:
    """Raise a UserError unless every file listed in the manifest is present and intact.

    Args:
        path: The checkpoint directory.
        deep: Compare SHA-256 checksums too (otherwise only presence and sizes).
    """
    for name, meta in _manifest_files(path).items():
        file = path / name
        if not file.is_file() or file.stat().st_size != meta["size"]:
            raise UserError(f"checkpoint {path} is corrupt: {name} is missing or truncated")
        if deep and _sha256(file) != meta["sha256"]:
            raise UserError(f"checkpoint {path} is corrupt: {name} does not match its checksum")


def _problem(path: Path, deep: bool) -> str | None:
    try:
        verify_checkpoint(path, deep=deep)
    except UserError as exc:
        return str(exc)
    return None


def resolve_resume(resume: str, run_dir: Path, notify: Callable[[str], None] | None = None) -> Path | None:
    """Turn ``--resume auto|PATH`` into a verified checkpoint directory (None: nothing to resume).

    Args:
        resume: ``auto`` (the newest intact checkpoint of ``run_dir``, if any) or a checkpoint path.
        run_dir: The run directory.
        notify: Called with a warning when ``auto`` skips damaged checkpoints.

    Raises:
        UserError: The named checkpoint is damaged or incomplete, or ``auto`` finds checkpoints
            but none of them is intact.
    """
    if resume == "auto":
        damaged: list[tuple[Path, str]] = []
        for candidate in reversed(_step_dirs(run_dir)):
            problem = _problem(candidate, deep=True)
            if problem is None:
                if damaged and notify is not None:
                    skipped = ", ".join(p.name for p, _ in damaged)
                    notify(f"warning: {damaged[0][1]}; resuming from {candidate}, the newest intact checkpoint "
                           f"(skipped: {skipped})")
                return candidate
            damaged.append((candidate, problem))
        if damaged:
            raise UserError(f"no intact checkpoint to resume from: {damaged[0][1]}" +
                            (f" (and {len(damaged) - 1} older ones are damaged too)" if len(damaged) > 1 else ""))
        return None
    path = Path(resume).expanduser()
    if not path.is_dir():
        raise UserError(f"no such checkpoint directory: {resume}")
    verify_checkpoint(path)
    return path


def _prune(run_dir: Path, newest: Path, keep: int) -> None:
    """Keep ``keep`` intact checkpoints up to ``newest``; see the module docstring for what is never deleted."""
    found = _step_dirs(run_dir)
    if any(_problem(p, deep=False) for p in found):
        return
    older = [p for p in found if _step(p) < _step(newest)]
    for old in older[: max(len(older) - (keep - 1), 0)]:
        shutil.rmtree(old, ignore_errors=True)


def save_checkpoint(accelerator: Any, run_dir: Path, state: TrainerState, config_yaml: str, keep: int) -> Path:
    """Write a checkpoint atomically and keep only the newest ``keep`` (0 keeps all).

    Every process must call this (Accelerate saves per-process RNG states).
    """
    root = run_dir / CHECKPOINT_DIR
    final = root / f"step-{state.step:08d}"
    tmp = root / f".tmp-step-{state.step:08d}"
    main = accelerator.is_main_process
    if main:
        root.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
    accelerator.wait_for_everyone()
    try:
        accelerator.save_state(str(tmp), safe_serialization=True)
        accelerator.wait_for_everyone()
        if main:
            (tmp / STATE_FILE).write_text(json.dumps(asdict(state), indent=1))
            (tmp / "config.yaml").write_text(config_yaml)
            files = {str(p.relative_to(tmp)): {"size": p.stat().st_size, "sha256": _sha256(p)} for p in _files(tmp)}
            (tmp / MANIFEST).write_text(json.dumps({"step": state.step, "files": files}, indent=1))
            for p in [*_files(tmp), tmp / MANIFEST]:
                with open(p, "rb") as handle:
                    os.fsync(handle.fileno())
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
            if keep > 0:
                _prune(run_dir, final, keep)
    except (OSError, RuntimeError) as exc:  # torch.save reports a full disk as RuntimeError
        if main:
            shutil.rmtree(tmp, ignore_errors=True)
        reason = getattr(exc, "strerror", None) or str(exc).splitlines()[0]
        raise UserError(f"could not write checkpoint to {final} ({reason}); earlier checkpoints are intact") from exc
    accelerator.wait_for_everyone()
    return final


def load_checkpoint(accelerator: Any, path: Path) -> TrainerState:
    """Restore model/optimizer/scheduler/scaler/RNG into the prepared objects; return the loop state."""
    try:
        data = json.loads((path / STATE_FILE).read_text())
        known = {f.name for f in fields(TrainerState)}
        state = TrainerState(**{k: v for k, v in data.items() if k in known})
    except (OSError, ValueError, TypeError, AttributeError) as exc:
        raise UserError(f"checkpoint {path} has an unreadable {STATE_FILE}: {exc}") from exc
    try:
        accelerator.load_state(str(path))
    except Exception as exc:  # torch/accelerate raise many types on bad files
        raise UserError(f"cannot load checkpoint {path}: {str(exc).splitlines()[0]}") from exc
    # checkpoints are written at optimizer-step boundaries: the next micro-batch opens an accumulation cycle,
    # whatever process count or train.grad_accum wrote the checkpoint (Accelerate restores its micro-batch count)
    accelerator.step = 0
    if state.num_processes != accelerator.num_processes:
        # written by another number of processes: the LR schedule counts one step per process per optimizer step
        for scheduler in accelerator._schedulers:
            rescale_lr_scheduler(scheduler, state.step, accelerator.num_processes)
    return state
