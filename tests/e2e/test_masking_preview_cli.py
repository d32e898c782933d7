"""``mlmkit masking ls | preview | build-weights`` through the Typer app."""

import json

import pytest
from typer.testing import CliRunner

from mlmkit.cli.app import app
from mlmkit.masking.registry import _BUILTINS

runner = CliRunner()
TEXT = "Self-driving cars are unbelievably tasty, said the young engineer."


def _json(result):
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)  # --json prints nothing else on stdout


def _assert_one_line_error(result, fragment):
    assert result.exit_code == 2, result.output
    text = result.output.strip()
    assert "Traceback" not in text
    assert "error:" in text and fragment in text
    assert len([line for line in text.splitlines() if line.strip()]) <= 3


def test_ls_lists_every_strategy_with_parameters_and_papers():
    rows = {row["name"]: row for row in _json(runner.invoke(app, ["masking", "ls", "--json"]))}
    assert set(_BUILTINS) <= set(rows)
    assert rows["span"]["parameters"] == {"ratio": 0.15, "mask_replace_prob": 0.8, "random_replace_prob": 0.1,
                                          "language": "en", "segmenter": "auto",
                                          "geometric_p": 0.2, "min_span": 1, "max_span": 10}
    assert rows["token_weighted"]["parameters"]["weights_file"] is None
    assert rows["content_word"]["parameters"]["function_weight"] == 0.25
    assert all(rows[name]["description"] and rows[name]["paper"] for name in _BUILTINS)
    assert "SpanBERT" in rows["span"]["paper"] and "InforMask" in rows["token_weighted"]["paper"]


def test_ls_table_is_never_cropped():
    result = runner.invoke(app, ["masking", "ls"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    table = [line for line in lines if line.startswith(("┃", "│"))]
    assert table and all(line.rstrip().endswith(("┃", "│")) for line in table)  # right border on every row
    assert "max_span=10" in result.stdout and "geometric_p=0.2" in result.stdout
    for name in _BUILTINS:
        assert name in result.stdout


def test_preview_text_json_with_parameter_overrides(tiny_model_dir):
    payload = _json(runner.invoke(app, [
        "masking", "preview", TEXT, "--strategy", "span", "--model", str(tiny_model_dir), "--seed", "3",
        "--ratio", "0.5", "masking.max_span=2", "masking.min_span=2", "--json",
    ]))
    assert payload["strategy"] == "span" and payload["ratio"] == 0.5 and payload["seed"] == 3
    assert payload["predicted_tokens"] == sum(payload["predicted"]) > 0
    assert payload["predicted_tokens"] == sum(len(u["tokens"]) for u in payload["units"])
    for unit in payload["units"]:
        assert unit["text"] == TEXT[unit["start"]:unit["end"]]
        assert len(unit["text"].split()) <= 2  # at most two words per span (max_span=2)
        assert unit["corruption"] in {"mask", "random", "kept"}
    again = _json(runner.invoke(app, [
        "masking", "preview", TEXT, "--strategy", "span", "--model", str(tiny_model_dir), "--seed", "3",
        "--ratio", "0.5", "masking.max_span=2", "masking.min_span=2", "--json",
    ]))
    assert again == payload  # deterministic for a seed


def test_preview_text_table_on_the_embedded_model():
    result = runner.invoke(app, ["masking", "preview", TEXT, "--strategy", "whole_word", "--ratio", "0.5",
                                 "--seed", "1"])
    assert result.exit_code == 0, result.output
    assert "whole_word on embedded" in result.stdout and "tokens predicted" in result.stdout
    assert "model input: [CLS]" in result.stdout
    assert any(kind in result.stdout for kind in ("mask", "random ->", "kept"))


def test_preview_corpus_stats_json(tiny_model_dir, corpus_file):
    payload = _json(runner.invoke(app, [
        "masking", "preview", "--corpus", str(corpus_file), "--stats", "--strategy", "content_word",
        "--model", str(tiny_model_dir), "--block-size", "64", "--json", "masking.function_weight=0.1",
    ]))
    assert payload["documents"] == 200 and payload["corpus"] == str(corpus_file)
    assert payload["realized_ratio"] == pytest.approx(0.15, abs=0.02)
    assert payload["content_share_predicted"] > payload["content_share_corpus"] + 0.1
    assert sum(payload["unit_words_histogram"].values()) == payload["units"]
    assert payload["unit_words_histogram"]["1"] == payload["units"]


def test_preview_corpus_stats_table(tiny_model_dir, corpus_file):
    result = runner.invoke(app, ["masking", "preview", "--corpus", str(corpus_file), "--stats", "--strategy", "span",
                                 "--model", str(tiny_model_dir)])
    assert result.exit_code == 0, result.output
    for label in ("realized ratio", "unit length histogram", "content words among predicted tokens"):
        assert label in result.stdout


def test_build_weights_then_preview_token_weighted(tmp_path, tiny_model_dir, corpus_file):
    out = tmp_path / "weights.safetensors"
    summary = _json(runner.invoke(app, ["masking", "build-weights", str(corpus_file), "--model", str(tiny_model_dir),
                                        "-o", str(out), "--window", "32", "--json"]))
    assert out.is_file() and summary["output"] == str(out) and summary["window"] == 32
    assert len(summary["most_weighted"]) == 10 and summary["documents"] == 200
    assert summary["most_weighted"][0]["weight"] >= summary["least_weighted"][0]["weight"]
    payload = _json(runner.invoke(app, ["masking", "preview", TEXT, "--strategy", "token_weighted", "--model",
                                        str(tiny_model_dir), f"masking.weights_file={out}", "--json"]))
    assert payload["strategy"] == "token_weighted" and payload["maskable_tokens"] > 0
    table = runner.invoke(app, ["masking", "build-weights", str(corpus_file), "--model", str(tiny_model_dir),
                                "-o", str(tmp_path / "w.json")])
    assert table.exit_code == 0 and "most weighted" in table.stdout and (tmp_path / "w.json").is_file()


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["masking", "preview", "--strategy", "span"], "give a TEXT"),
        (["masking", "preview", "--stats"], "--stats needs --corpus"),
        (["masking", "preview", TEXT, "--strategy", "spam"], "Did you mean 'span'"),
        (["masking", "preview", TEXT, "masking.nope=1"], "unknown parameter(s) nope"),
        (["masking", "preview", TEXT, "one more text"], "give one TEXT"),
        (["masking", "preview", TEXT, "--strategy", "token_weighted"], "masking.weights_file"),
        (["masking", "preview", TEXT, "--ratio", "1.5"], "--ratio"),
        (["masking", "build-weights", "embedded", "-o", "weights.pkl"], ".json or .safetensors"),
        (["masking", "build-weights", "/no/such/corpus.txt", "-o", "w.json"], "no such file"),
    ],
)
def test_user_errors_are_one_line(args, fragment):
    _assert_one_line_error(runner.invoke(app, args), fragment)
