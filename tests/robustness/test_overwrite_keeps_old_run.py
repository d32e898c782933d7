"""``overwrite`` replaces an output directory only when the new run succeeds.

A command that empties a non-empty output directory (``output.overwrite=true``, ``--overwrite``)
and then fails must leave the old files exactly as they were, and no hidden folder behind.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mlmkit.cli.app import app
from mlmkit.errors import UserError
from mlmkit.io.outputs import prepare_output_dir, restores_replaced_output
from mlmkit.training.stopping import TrainingInterrupted

runner = CliRunner()


def _old_run(root: Path) -> Path:
    out = root / "run"
    (out / "checkpoints" / "step-00000002").mkdir(parents=True)
    (out / "model.safetensors").write_bytes(b"old weights" * 10)
    (out / "metrics.jsonl").write_text('{"step": 2}\n')
    (out / "checkpoints" / "step-00000002" / "state.bin").write_bytes(b"s" * 7)
    return out


def _files(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_failure_after_emptying_puts_the_old_files_back(tmp_path):
    out = _old_run(tmp_path)
    before = _files(out)

    @restores_replaced_output
    def run():
        prepare_output_dir(out, overwrite=True)
        assert list(out.iterdir()) == []  # the new run sees an empty directory
        (out / "config.yaml").write_text("new: 1\n")  # ... and writes into it before failing
        raise UserError("the corpus is empty")

    with pytest.raises(UserError):
        run()
    assert _files(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # nothing set aside is left behind


def test_success_replaces_the_old_files_for_good(tmp_path):
    out = _old_run(tmp_path)

    @restores_replaced_output
    def run():
        prepare_output_dir(out, overwrite=True)
        (out / "config.yaml").write_text("new: 1\n")
        return "done"

    assert run() == "done"
    assert _files(out).keys() == {"config.yaml"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_interruption_keeps_the_new_run_and_says_where_the_old_one_is(tmp_path, capsys):
    out = _old_run(tmp_path)
    before = _files(out)

    @restores_replaced_output
    def run():
        prepare_output_dir(out, overwrite=True)
        (out / "checkpoints").mkdir()
        raise TrainingInterrupted("interrupted; resume with --resume auto", 2)

    with pytest.raises(TrainingInterrupted):
        run()
    assert (out / "checkpoints").is_dir() and not (out / "model.safetensors").exists()
    aside = [p for p in tmp_path.iterdir() if p.name != "run"]
    assert len(aside) == 1 and _files(aside[0]) == before
    assert str(aside[0]) in capsys.readouterr().err


def test_without_a_guard_overwrite_empties_as_before(tmp_path):
    out = _old_run(tmp_path)
    prepare_output_dir(out, overwrite=True)
    assert list(out.iterdir()) == [] and sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_pretrain_that_fails_on_its_corpus_keeps_the_old_run(tmp_path, tiny_model_dir, one_torch_thread):
    out = _old_run(tmp_path)
    before = _files(out)
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    result = runner.invoke(app, ["pretrain", f"model.name_or_path={tiny_model_dir}", f"data.source={empty}",
                                 f"output.dir={out}", "output.overwrite=true", "train.max_steps=1",
                                 "train.batch_size=4", "data.max_seq_length=32", "data.cache=false"])
    assert result.exit_code == 2, result.output
    assert _files(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.txt", "run"]


def test_tokenizer_extend_that_finds_nothing_keeps_the_old_output(tmp_path, tiny_model_dir, corpus_file):
    out = _old_run(tmp_path)
    before = _files(out)
    result = runner.invoke(app, ["tokenizer", "extend", "-c", str(corpus_file), "-n", "3", "--min-count", "1000000",
                                 "-m", str(tiny_model_dir), "-o", str(out), "--overwrite"])
    assert result.exit_code == 2 and "nothing to add" in result.output, result.output
    assert _files(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
