import json

import pytest
from typer.testing import CliRunner

from mlmkit.cli.app import app

runner = CliRunner()


def _assert_one_line_error(result, fragment):
    assert result.exit_code == 2, result.output
    text = result.output.strip()
    assert "Traceback" not in text
    assert "error:" in text and fragment in text
    assert len([line for line in text.splitlines() if line.strip()]) <= 3  # one message (may soft-wrap)


def test_pretrain_cli_json(tiny_model_dir, corpus_file, tmp_path):
    out = tmp_path / "run"
    result = runner.invoke(app, [
        "pretrain", f"model.name_or_path={tiny_model_dir}", f"data.source={corpus_file}",
        "data.max_seq_length=32", "train.max_steps=3", "train.batch_size=8", f"output.dir={out}", "--json",
    ])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout[result.stdout.index("{"):])
    assert payload["steps"] == 3 and payload["output_dir"] == str(out)
    assert (out / "model.safetensors").is_file()


def test_pretrain_cli_table(tiny_model_dir, corpus_file, tmp_path):
    result = runner.invoke(app, [
        "pretrain", f"model.name_or_path={tiny_model_dir}", f"data.source={corpus_file}",
        "data.max_seq_length=32", "train.max_steps=2", "train.batch_size=8", f"output.dir={tmp_path / 'r'}",
    ])
    assert result.exit_code == 0, result.output
    assert "masked-token accuracy" in result.stdout and "perplexity" in result.stdout


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["train.lrr=1"], "valid keys in train"),
        (["--recipe", "nope"], "not found"),
        (["data.source=/no/such/file.txt"], "no such file"),
        (["model.name_or_path=/no/such/model"], "no such model directory"),
        (["masking.name=rnadom"], "Did you mean 'random'"),
        (["masking.ratoi=0.2"], "unknown parameter"),
        (["masking.ratio=1.5"], "between 0 and 1"),
    ],
)
def test_pretrain_cli_user_errors(args, fragment, tiny_model_dir, corpus_file, tmp_path):
    base = [f"model.name_or_path={tiny_model_dir}", f"data.source={corpus_file}", f"output.dir={tmp_path / 'x'}",
            "train.max_steps=1"]
    result = runner.invoke(app, ["pretrain", *base, *args])
    _assert_one_line_error(result, fragment)


def test_missing_text_column_and_empty_corpus(tiny_model_dir, tmp_path):
    csv = tmp_path / "d.csv"
    csv.write_text("body,label\nhello there,1\n")
    result = runner.invoke(app, ["pretrain", f"model.name_or_path={tiny_model_dir}", f"data.source={csv}",
                                 f"output.dir={tmp_path / 'a'}"])
    _assert_one_line_error(result, "available columns: body, label")
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    result = runner.invoke(app, ["pretrain", f"model.name_or_path={tiny_model_dir}", f"data.source={empty}",
                                 f"output.dir={tmp_path / 'b'}"])
    _assert_one_line_error(result, "no non-empty text")


def test_non_empty_output_dir_needs_overwrite(tiny_model_dir, corpus_file, tmp_path):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    result = runner.invoke(app, ["pretrain", f"model.name_or_path={tiny_model_dir}", f"data.source={corpus_file}",
                                 f"output.dir={out}"])
    _assert_one_line_error(result, "output.overwrite=true")
    assert (out / "keep.txt").read_text() == "mine"


def test_masking_ls_lists_random():
    result = runner.invoke(app, ["masking", "ls", "--json"])
    assert result.exit_code == 0
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert rows["random"]["parameters"]["mask_replace_prob"] == 0.8
    assert "Devlin" in rows["random"]["paper"]
