"""Faults while writing: the previous checkpoint survives and the user gets one clear error."""

import errno
import json
from pathlib import Path

import pytest

from mlmkit.errors import UserError
from mlmkit.io.outputs import prepare_output_dir, save_pretrained_atomic
from mlmkit.training.checkpoint import (
    TrainerState,
    list_checkpoints,
    load_checkpoint,
    resolve_resume,
    save_checkpoint,
    verify_checkpoint,
)


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


def _damage(checkpoint: Path) -> None:
    weights = checkpoint / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1])  # one byte short: a partial copy


def _steps(run: Path) -> list[str]:
    return sorted(p.name for p in (run / "checkpoints").iterdir())


def test_auto_resume_falls_back_past_a_damaged_checkpoint_and_says_so(tmp_path):
    for step in (2, 4, 6):
        save_checkpoint(FakeAccelerator(), tmp_path, TrainerState(step=step), "a: 1\n", keep=0)
    newest = tmp_path / "checkpoints" / "step-00000006"
    _damage(newest)
    warnings = []
    chosen = resolve_resume("auto", tmp_path, notify=warnings.append)
    assert chosen == tmp_path / "checkpoints" / "step-00000004"
    assert len(warnings) == 1 and str(newest) in warnings[0] and str(chosen) in warnings[0]
    with pytest.raises(UserError, match=r"step-00000006 is corrupt: model.safetensors is missing or truncated"):
        resolve_resume(str(newest), tmp_path)  # named explicitly: an error, no fallback


def test_auto_resume_with_only_damaged_checkpoints_is_an_error(tmp_path):
    for step in (2, 4):
        _damage(save_checkpoint(FakeAccelerator(), tmp_path, TrainerState(step=step), "a: 1\n", keep=0))
    with pytest.raises(UserError, match=r"no intact checkpoint to resume from: .*step-00000004.*1 older"):
        resolve_resume("auto", tmp_path)
    assert resolve_resume("auto", tmp_path / "fresh-run") is None  # no checkpoints at all: start afresh


def test_pruning_keeps_intact_checkpoints_while_a_damaged_one_exists(tmp_path):
    for step in (2, 4, 6):
        save_checkpoint(FakeAccelerator(), tmp_path, TrainerState(step=step), "a: 1\n", keep=0)
    _damage(tmp_path / "checkpoints" / "step-00000006")
    # the run resumed from step 4 and writes step 5 with keep=1: nothing is deleted, least of all step 4
    save_checkpoint(FakeAccelerator(), tmp_path, TrainerState(step=5), "a: 1\n", keep=1)
    assert _steps(tmp_path) == ["step-00000002", "step-00000004", "step-00000005", "step-00000006"]
    # writing step 6 again replaces the damaged one; then pruning resumes
    save_checkpoint(FakeAccelerator(), tmp_path, TrainerState(step=6), "a: 1\n", keep=2)
    assert _steps(tmp_path) == ["step-00000005", "step-00000006"]
    for checkpoint in list_checkpoints(tmp_path):
        verify_checkpoint(checkpoint)


def test_pruning_never_deletes_checkpoints_newer_than_the_one_written(tmp_path):
    for step in (2, 4, 8):
        save_checkpoint(FakeAccelerator(), tmp_path, TrainerState(step=step), "a: 1\n", keep=0)
    save_checkpoint(FakeAccelerator(), tmp_path, TrainerState(step=5), "a: 1\n", keep=1)
    assert _steps(tmp_path) == ["step-00000005", "step-00000008"]


@pytest.mark.parametrize("manifest", ["{not json", "[]", '{"files": {"model.safetensors": 3}}', '{"step": 2}'])
def test_corrupt_manifest_is_one_clear_error(tmp_path, manifest):
    checkpoint = save_checkpoint(FakeAccelerator(), tmp_path, TrainerState(step=2), "a: 1\n", keep=0)
    (checkpoint / "manifest.json").write_text(manifest)
    with pytest.raises(UserError, match="corrupt manifest"):
        resolve_resume(str(checkpoint), tmp_path)


def test_unreadable_trainer_state_is_one_clear_error(tmp_path):
    checkpoint = save_checkpoint(FakeAccelerator(), tmp_path, TrainerState(step=2), "a: 1\n", keep=0)
    (checkpoint / "trainer_state.json").write_text('{"step": 2, "epoch": ')

    class NeverLoads:
        def load_state(self, directory):
            raise AssertionError("the state file is read before any weights are loaded")

    with pytest.raises(UserError, match="unreadable trainer_state.json"):
        load_checkpoint(NeverLoads(), checkpoint)
