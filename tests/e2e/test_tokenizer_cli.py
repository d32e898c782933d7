"""``mlmkit tokenizer train|extend`` through the CLI."""

import json

import pytest
from typer.testing import CliRunner

from mlmkit.cli.app import app

runner = CliRunner()


def _assert_one_line_error(result, fragment):
    assert result.exit_code == 2, result.output
    text = result.output.strip()
    assert "Traceback" not in text
    lines = [line for line in text.splitlines() if line.strip()]
    assert "error" in lines[0] and fragment in text
    assert len(lines) <= 2  # one message (may soft-wrap)


def test_train_json_and_load(corpus_file, tmp_path):
    from transformers import AutoTokenizer

    out = tmp_path / "tok"
    result = runner.invoke(app, ["tokenizer", "train", str(corpus_file), "--type", "unigram", "--vocab-size", "70",
                                 "--family", "roberta", "-o", str(out), "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["type"] == "unigram" and payload["family"] == "roberta"
    assert payload["requested_vocab_size"] == 70 and payload["target_vocab_size"] == 128
    tok = AutoTokenizer.from_pretrained(out)
    assert len(tok) == payload["vocab_size"] and tok.mask_token == "<mask>" and tok.pad_token_id == 1
    assert payload["special_token_ids"] == {"pad": 1, "unk": 3, "cls": 0, "sep": 2, "mask": 4, "bos": 0, "eos": 2}


def test_train_table_no_round_and_cased(corpus_file, tmp_path):
    from transformers import AutoTokenizer

    result = runner.invoke(app, ["tokenizer", "train", str(corpus_file), "--vocab-size", "100", "--no-round",
                                 "--no-lowercase", "-o", str(tmp_path / "t")])
    assert result.exit_code == 0, result.output
    assert "wordpiece / bert" in result.stdout and "target 100" in result.stdout
    tok = AutoTokenizer.from_pretrained(tmp_path / "t")
    assert len(tok) == 100
    assert tok.tokenize("The") != tok.tokenize("the")  # --no-lowercase kept case


def test_smaller_vocabulary_is_reported(corpus_file, tmp_path):
    result = runner.invoke(app, ["tokenizer", "train", str(corpus_file), "--vocab-size", "5000",
                                 "-o", str(tmp_path / "t")])
    assert result.exit_code == 0, result.output
    assert "note:" in result.output and "fewer than the 5,056" in result.output


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--type", "sentencepiece"], "unknown tokenizer type"),
        (["--family", "gpt2"], "unknown tokenizer family"),
        (["--vocab-size", "2", "--no-round"], "no room"),
    ],
)
def test_train_option_errors(corpus_file, tmp_path, args, fragment):
    result = runner.invoke(app, ["tokenizer", "train", str(corpus_file), "-o", str(tmp_path / "t"), *args])
    _assert_one_line_error(result, fragment)


def test_train_corpus_errors(tmp_path):
    missing = runner.invoke(app, ["tokenizer", "train", str(tmp_path / "nope.txt"), "-o", str(tmp_path / "a")])
    _assert_one_line_error(missing, "no such file")
    empty = tmp_path / "empty.txt"
    empty.write_text("\n   \n\n", encoding="utf-8")
    result = runner.invoke(app, ["tokenizer", "train", str(empty), "-o", str(tmp_path / "b")])
    _assert_one_line_error(result, "no non-empty text")


def test_train_refuses_a_non_empty_output(corpus_file, tmp_path):
    (tmp_path / "keep.txt").write_text("x")
    result = runner.invoke(app, ["tokenizer", "train", str(corpus_file), "-o", str(tmp_path)])
    _assert_one_line_error(result, "not empty")


def test_extend_table_and_json(tiny_model_dir, tmp_path):
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    corpus = tmp_path / "domain.txt"
    corpus.write_text("\n".join(["the cat likes photosynthesis"] * 5 + ["chlorophyll and photosynthesis"] * 3),
                      encoding="utf-8")
    result = runner.invoke(app, ["tokenizer", "extend", "--model", str(tiny_model_dir), "--corpus", str(corpus),
                                 "--add", "2", "-o", str(tmp_path / "ext")])
    assert result.exit_code == 0, result.output
    assert "photosynthesis" in result.stdout and "chlorophyll" in result.stdout
    assert "mlmkit pretrain model.name_or_path=" in result.stdout
    tok = AutoTokenizer.from_pretrained(tmp_path / "ext")
    model = AutoModelForMaskedLM.from_pretrained(tmp_path / "ext")
    assert model.config.vocab_size == len(tok) == len(AutoTokenizer.from_pretrained(tiny_model_dir)) + 2

    result = runner.invoke(app, ["tokenizer", "extend", "-m", str(tiny_model_dir), "-c", str(corpus), "-n", "5",
                                 "-o", str(tmp_path / "ext2"), "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert [w["word"] for w in payload["words"]][:2] == ["photosynthesis", "chlorophyll"]
    assert payload["new_vocab_size"] == payload["old_vocab_size"] + len(payload["words"])
    assert "only" in result.stderr  # fewer split words than asked for are reported


def test_extend_errors(tiny_model_dir, corpus_file, tmp_path):
    _assert_one_line_error(runner.invoke(app, ["tokenizer", "extend", "-m", str(tmp_path / "nomodel"), "-c",
                                               str(corpus_file), "-n", "2", "-o", str(tmp_path / "a")]),
                           "no such model directory")
    _assert_one_line_error(runner.invoke(app, ["tokenizer", "extend", "-m", str(tiny_model_dir), "-c",
                                               str(tmp_path / "none.txt"), "-n", "2", "-o", str(tmp_path / "b")]),
                           "no such file")
    _assert_one_line_error(runner.invoke(app, ["tokenizer", "extend", "-m", str(tiny_model_dir), "-c",
                                               str(corpus_file), "-n", "0", "-o", str(tmp_path / "c")]),
                           "at least 1")
