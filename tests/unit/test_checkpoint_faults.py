"""Faults while writing: the previous checkpoint survives and the user gets one clear error."""

import errno
import json
from pathlib import Path

import pytest

from mlmkit.errors import UserError
from mlmkit.training.checkpoint import TrainerState, list_checkpoints, save_checkpoint, verify_checkpoint
from mlmkit.training.run_dir import prepare_output_dir, save_pretrained_atomic


class FakeAccelerator:
    """Just enough of Accelerator for save_checkpoint: writes one weights file, or fails like a full disk."""

    is_main_process = True

    def __init__(self, fail: bool = False):
        self.fail = fail

    def wait_for_everyone(self):
        pass

    def save_state(self, directory, safe_serialization=True):
        path = Path(directory) / "model.safetensors"
        path.write_bytes(b"x" * 100)
        if self.fail:
            raise OSError(errno.ENOSPC, "No space left on device")


def test_full_disk_keeps_previous_checkpoint(tmp_path):
    good = save_checkpoint(FakeAccelerator(), tmp_path, TrainerState(step=4), "a: 1\n", keep=3)
    with pytest.raises(UserError, match="No space left on device.*earlier checkpoints are intact"):
        save_checkpoint(FakeAccelerator(fail=True), tmp_path, TrainerState(step=8), "a: 1\n", keep=3)
    assert list_checkpoints(tmp_path) == [good]
    verify_checkpoint(good)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step-00000004"]  # no temp left


def test_manifest_lists_every_file_and_state(tmp_path):
    path = save_checkpoint(FakeAccelerator(), tmp_path, TrainerState(step=2, tokens=99), "a: 1\n", keep=0)
    manifest = json.loads((path / "manifest.json").read_text())
    assert set(manifest["files"]) == {"model.safetensors", "trainer_state.json", "config.yaml"}
    assert json.loads((path / "trainer_state.json").read_text())["tokens"] == 99


def test_interrupted_checkpoint_without_manifest_is_ignored(tmp_path):
    good = save_checkpoint(FakeAccelerator(), tmp_path, TrainerState(step=2), "a: 1\n", keep=0)
    half = tmp_path / "checkpoints" / "step-00000004"
    half.mkdir()
    (half / "model.safetensors").write_bytes(b"partial")
    assert list_checkpoints(tmp_path) == [good]
    with pytest.raises(UserError, match="not a complete checkpoint"):
        verify_checkpoint(half)


def test_unwritable_output_directory(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(UserError, match="not a directory|cannot write"):
        prepare_output_dir(blocker, overwrite=False)
    with pytest.raises(UserError, match="cannot write to output directory"):
        prepare_output_dir(blocker / "run", overwrite=False)


def test_model_save_failure_replaces_nothing(tmp_path):
    (tmp_path / "model.safetensors").write_text("previous")

    class Broken:
        def save_pretrained(self, directory, safe_serialization=True):
            (Path(directory) / "model.safetensors").write_text("half")
            raise RuntimeError("PytorchStreamWriter failed writing file: No space left on device")

    with pytest.raises(UserError, match="nothing was replaced"):
        save_pretrained_atomic(tmp_path, Broken(), None)
    assert (tmp_path / "model.safetensors").read_text() == "previous"
    assert not list(tmp_path.glob(".staging-*"))
