"""``mlmkit score`` through the CLI: exact PLL values, --rank, per-token JSON, files, and user errors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from constructed_lm import neighbour_log_prob, neighbour_model, word_tokenizer
from mlmkit.cli.app import app

runner = CliRunner()
pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny models: threads only contend

GRAMMATICAL = ["the cat sat on the mat .", "a dog ran to the park ."]
SENTENCE = "The cat sat on the mat."
SHUFFLED = "mat the on The sat cat."  # the same words in another order
DEMO_MODEL = Path(__file__).resolve().parents[2] / "runs" / "demo" / "mlm"


def _invoke(*args, **kwargs):
    return runner.invoke(app, ["score", *map(str, args)], **kwargs)


def _json(result):
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def bigram_model_dir(tmp_path_factory):
    """A saved model that knows which word follows which in two sentences (nothing else), and its tokenizer.

    Why constructed logits rather than a briefly trained tiny model: the order "grammatical before shuffled"
    must hold by construction, not by how much a tiny model happened to learn in a few steps. This model
    scores the token at each position from its two neighbours (``left[previous] + right[next]``), with 3.0
    for every neighbour pair seen in the sentences and 0 elsewhere, so every PLL is known exactly.
    """
    words = sorted({w for s in GRAMMATICAL for w in s.split()})
    tokenizer = word_tokenizer(words)
    left: dict[str, dict[str, float]] = {}
    right: dict[str, dict[str, float]] = {}
    for sentence in GRAMMATICAL:
        tokens = ["[CLS]", *sentence.split(), "[SEP]"]
        for a, b in zip(tokens, tokens[1:], strict=False):
            left.setdefault(a, {})[b] = 3.0
            right.setdefault(b, {})[a] = 3.0
    model = neighbour_model(tokenizer, left, right, floor=0.0)
    path = tmp_path_factory.mktemp("bigram-lm")
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path, model, tokenizer


def _expected_pll(model, tokenizer, text):
    ids = tokenizer(text)["input_ids"]
    return [neighbour_log_prob(model, ids, p, ids[p]) for p in range(1, len(ids) - 1)]


def test_rank_puts_the_sentence_before_its_shuffled_copy(bigram_model_dir):
    path, model, tokenizer = bigram_model_dir
    payload = _json(_invoke(SHUFFLED, SENTENCE, "The dog sat on the park.", "-m", path, "--rank", "--json"))
    expected = {text: _expected_pll(model, tokenizer, text) for text in (SHUFFLED, SENTENCE,
                                                                         "The dog sat on the park.")}
    assert [p["text"] for p in payload] == sorted(expected, key=lambda t: -math.fsum(expected[t]))
    assert payload[0]["text"] == SENTENCE and payload[-1]["text"] == SHUFFLED
    assert [p["index"] for p in payload] == [1, 2, 0]
    for entry in payload:
        values = expected[entry["text"]]
        assert entry["pll"] == pytest.approx(math.fsum(values), abs=1e-5)
        assert entry["num_tokens"] == len(values) == 7
        assert [t["log_prob"] for t in entry["tokens"]] == pytest.approx(values, abs=1e-5)
        assert entry["pseudo_perplexity"] == pytest.approx(math.exp(-math.fsum(values) / 7), rel=1e-5)
    assert [t["token"] for t in payload[0]["tokens"]] == ["the", "cat", "sat", "on", "the", "mat", "."]


def test_table_keeps_input_order_without_rank(bigram_model_dir, tmp_path):
    path, model, tokenizer = bigram_model_dir
    texts = tmp_path / "texts.txt"
    texts.write_text(f"{SHUFFLED}\n\n{SENTENCE}\n", encoding="utf-8")
    result = _invoke("--file", texts, "-m", path)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    first = next(i for i, line in enumerate(lines) if SHUFFLED in line)
    second = next(i for i, line in enumerate(lines) if SENTENCE in line)
    assert first < second
    pll = math.fsum(_expected_pll(model, tokenizer, SENTENCE))
    assert f"{pll:.2f}" in lines[second] and f"{math.exp(-pll / 7):.2f}" in lines[second]
    ranked = _invoke("--file", texts, "-m", path, "--rank")
    rows = [line for line in ranked.stdout.splitlines() if SENTENCE in line or SHUFFLED in line]
    assert SENTENCE in rows[0] and rows[0].split("│")[1].strip() == "1"


def test_batches_do_not_change_scores(bigram_model_dir):
    path, _, _ = bigram_model_dir
    one = _json(_invoke(SENTENCE, SHUFFLED, "-m", path, "--json", "--batch-size", 1))
    many = _json(_invoke(SENTENCE, SHUFFLED, "-m", path, "--json", "--batch-size", 64))
    assert [p["pll"] for p in one] == pytest.approx([p["pll"] for p in many], abs=1e-5)


@pytest.mark.slow
@pytest.mark.skipif(not (DEMO_MODEL / "config.json").is_file(), reason="runs/demo/mlm not built (make demo)")
def test_demo_model_ranks_a_sentence_before_its_shuffled_copy():
    sentence = "I love my new electric car, it drives so smoothly."
    shuffled = "smoothly car, my drives new so love it electric I."
    payload = _json(_invoke(shuffled, sentence, "-m", DEMO_MODEL, "--rank", "--json"))
    assert [p["text"] for p in payload] == [sentence, shuffled]


def _assert_user_error(result, fragment):
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], result.stderr


def test_user_errors(bigram_model_dir, tmp_path, monkeypatch):
    path, _, _ = bigram_model_dir
    _assert_user_error(_invoke("-m", path), "give one or more TEXTs")
    _assert_user_error(_invoke("a text", "--file", tmp_path / "x.txt", "-m", path), "not both")
    _assert_user_error(_invoke("--file", tmp_path / "absent.txt", "-m", path), "no such file")
    _assert_user_error(_invoke("fine", "  ", "-m", path), "text 2 has no token to score")
    _assert_user_error(_invoke("a text", "-m", tmp_path / "absent"), "no such model directory")
    monkeypatch.chdir(tmp_path)
    _assert_user_error(_invoke("a text"), "no such model directory: runs/demo/mlm")
