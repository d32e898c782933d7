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
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mlmkit.errors import UserError

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


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and p.name != MANIFEST)


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Complete checkpoints of a run (those with a manifest), oldest first."""
    root = Path(run_dir) / CHECKPOINT_DIR
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and _NAME.match(p.name) and (p / MANIFEST).is_file()]
    return sorted(found, key=lambda p: int(_NAME.match(p.name).group(1)))


def verify_checkpoint(path: Path, deep: bool = True) -> None:
    """Raise a UserError unless every file listed in the manifest is present and intact."""
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        raise UserError(f"{path} is not a complete checkpoint (no {MANIFEST}); it was probably interrupted")
    try:
        manifest = json.loads(manifest_path.read_text())
    except ValueError as exc:
        raise UserError(f"checkpoint {path} has a corrupt manifest: {exc}") from exc
    for name, meta in manifest["files"].items():
        file = path / name
        if not file.is_file() or file.stat().st_size != meta["size"]:
            raise UserError(f"checkpoint {path} is corrupt: {name} is missing or truncated")
        if deep and _sha256(file) != meta["sha256"]:
            raise UserError(f"checkpoint {path} is corrupt: {name} does not match its checksum")


def resolve_resume(resume: str, run_dir: Path) -> Path | None:
    """Turn ``--resume auto|PATH`` into a verified checkpoint directory (None: nothing to resume)."""
    if resume == "auto":
        candidates = list_checkpoints(run_dir)
        for candidate in reversed(candidates):
            try:
                verify_checkpoint(candidate)
                return candidate
            except UserError:
                continue  # fall back to the previous complete checkpoint
        return None
    path = Path(resume).expanduser()
    if not path.is_dir():
        raise UserError(f"no such checkpoint directory: {resume}")
    verify_checkpoint(path)
    return path


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
                for old in list_checkpoints(run_dir)[:-keep]:
                    shutil.rmtree(old, ignore_errors=True)
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
        accelerator.load_state(str(path))
    except Exception as exc:  # torch/accelerate raise many types on bad files
        raise UserError(f"cannot load checkpoint {path}: {str(exc).splitlines()[0]}") from exc
    data = json.loads((path / STATE_FILE).read_text())
    return TrainerState(**data)
