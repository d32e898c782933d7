"""`mlmkit prepare`, `mlmkit cache ls/clear`, and `pretrain` reading a prepared corpus."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from mlmkit.cli.app import app

runner = CliRunner()


def _json(result) -> dict | list:
    assert result.exit_code == 0, result.output
    start = min(i for i in (result.stdout.find("{"), result.stdout.find("[")) if i >= 0)
    return json.loads(result.stdout[start:])


def _data_args(tiny_model_dir, corpus_file, cache_dir) -> list[str]:
    return [f"model.name_or_path={tiny_model_dir}", f"data.source={corpus_file}", "data.max_seq_length=32",
            f"data.cache_dir={cache_dir}", "masking.name=whole_word"]


def test_prepare_ls_clear(tiny_model_dir, corpus_file, tmp_path, preparations):
    args = _data_args(tiny_model_dir, corpus_file, tmp_path / "prepared")
    first = _json(runner.invoke(app, ["prepare", *args, "--json"]))
    again = _json(runner.invoke(app, ["prepare", *args, "--json"]))
    assert len(preparations) == 1 and not first["reused"] and again["reused"]
    assert first["path"] == again["path"] and first["blocks"] == again["blocks"] > 0
    assert first["tokens"] == again["tokens"] and first["size_bytes"] > 0
    table = runner.invoke(app, ["prepare", *args])
    assert table.exit_code == 0 and "reused" in table.stdout and "tokens" in table.stdout

    listed = _json(runner.invoke(app, ["cache", "ls", "--cache-dir", str(tmp_path / "prepared"), "--json"]))
    assert [(e["path"], e["blocks"], e["tokens"]) for e in listed] == [(first["path"], first["blocks"],
                                                                        first["tokens"])]
    cleared = runner.invoke(app, ["cache", "clear", "--cache-dir", str(tmp_path / "prepared")])
    assert cleared.exit_code == 0 and "removed 1" in cleared.output
    assert _json(runner.invoke(app, ["cache", "ls", "--cache-dir", str(tmp_path / "prepared"), "--json"])) == []


@pytest.mark.slow
def test_prepare_then_pretrain_equals_pretrain_alone_and_resume_does_not_prepare(
        tiny_model_dir, corpus_file, tmp_path, preparations):
    args = _data_args(tiny_model_dir, corpus_file, tmp_path / "prepared")
    train = ["train.max_steps=4", "train.batch_size=8", "train.checkpoint_every=2", "--json"]
    alone = _json(runner.invoke(app, ["pretrain", *args, "data.cache=false", f"output.dir={tmp_path / 'a'}", *train]))
    assert len(preparations) == 1
    _json(runner.invoke(app, ["prepare", *args, "--json"]))
    assert len(preparations) == 2
    cached = _json(runner.invoke(app, ["pretrain", *args, f"output.dir={tmp_path / 'b'}", *train]))
    assert len(preparations) == 2  # the run read the prepared blocks
    for key in ("before", "after", "final_loss", "steps"):
        assert cached[key] == alone[key], key
    path = cached["data"].pop("prepared_path")  # where the blocks came from
    assert alone["data"].pop("prepared_path") is None and path.startswith(str(tmp_path / "prepared"))
    assert cached["data"] == alone["data"]

    resumed = runner.invoke(app, ["pretrain", *args, f"output.dir={tmp_path / 'b'}", "train.max_steps=6",
                                  "train.batch_size=8", "--resume", "auto", "--json"])
    assert _json(resumed)["resumed_from"].endswith("step-00000004")
    assert len(preparations) == 2  # resuming never prepares again


@pytest.mark.parametrize("extra, fragment", [
    (["data.cache=false"], "data.cache is false"),
    (["data.source=wikitext"], "Hub dataset"),
])
def test_prepare_user_errors(extra, fragment, tiny_model_dir, corpus_file, tmp_path):
    result = runner.invoke(app, ["prepare", *_data_args(tiny_model_dir, corpus_file, tmp_path), *extra])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and "error:" in result.output and fragment in result.output


def test_clear_unknown_key_is_a_user_error(tmp_path):
    (tmp_path / "prepared").mkdir()
    result = runner.invoke(app, ["cache", "clear", "nope", "--cache-dir", str(tmp_path / "prepared")])
    assert result.exit_code == 2 and "no prepared corpus 'nope'" in result.output


@pytest.mark.slow
def test_streamed_pretrain_reads_the_prepared_corpus_and_trains_as_on_the_raw_stream(
        tiny_model_dir, corpus_file, tmp_path, preparations):
    import shutil

    args = [*_data_args(tiny_model_dir, corpus_file, tmp_path / "prepared"), "data.streaming=true",
            "data.eval_max_blocks=8"]
    train = ["train.batch_size=8", "train.max_steps=5", "train.checkpoint_every=2", "--json"]
    raw = _json(runner.invoke(app, ["pretrain", *args, "data.cache=false", f"output.dir={tmp_path / 'raw'}", *train]))
    assert preparations == []
    prepared = _json(runner.invoke(app, ["prepare", *args, "--json"]))  # a streamed recipe can be prepared ahead
    assert len(preparations) == 1 and not prepared["reused"]

    streamed = runner.invoke(app, ["pretrain", *args, f"output.dir={tmp_path / 'cached'}", *train])
    assert f"data: streaming the prepared corpus in {prepared['path']}" in streamed.stderr
    for key in ("before", "after", "final_loss", "steps"):  # the same held-out and training batches
        assert _json(streamed)[key] == raw[key], key

    # interrupted after step 2 (later checkpoints removed), then resumed: the same run again
    shutil.copytree(tmp_path / "cached", tmp_path / "resumed")
    for later in ("step-00000004", "step-00000005"):
        shutil.rmtree(tmp_path / "resumed" / "checkpoints" / later)
    resumed = _json(runner.invoke(app, ["pretrain", *args, f"output.dir={tmp_path / 'resumed'}", "--resume", "auto",
                                        *train]))
    assert resumed["resumed_from"].endswith("step-00000002")
    assert len(preparations) == 1  # no run after `prepare` tokenized the corpus
    # the same weights at the end (final_loss is not compared: a resumed run's loss window starts at the resume)
    for key in ("after", "steps"):
        assert resumed[key] == raw[key], key
