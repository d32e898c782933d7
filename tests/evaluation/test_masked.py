"""`mlmkit evaluate`: metric families, whole-word scoring, POS tags of held-out documents, the CLI."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from mlmkit.cli.app import app
from mlmkit.config.schema import PretrainDataConfig
from mlmkit.evaluation.masked import FAMILIES, _FeatureSet, build_held_out, word_accuracy


def test_word_accuracy_counts_whole_words():
    # row 0: word at unit 1 has two tokens (one wrong), word at unit 3 one token (right);
    # row 1: word at unit 1 two tokens (both right); a token with unit -1 is ignored
    rows = torch.tensor([0, 0, 0, 1, 1, 1])
    units = torch.tensor([1, 1, 3, 1, 1, -1])
    correct = torch.tensor([True, False, True, True, True, False])
    words, accuracy = word_accuracy(rows, units, correct)
    assert words == 3 and accuracy == pytest.approx(2 / 3)
    assert word_accuracy(rows[:0], units[:0], correct[:0])[0] == 0


@pytest.mark.slow
def test_pos_tags_of_held_out_documents_equal_tagging_everything(wordpiece_tokenizer, corpus_file):
    pytest.importorskip("spacy")
    from mlmkit.config.schema import PretrainConfig
    from mlmkit.masking.pos_weighted import PosWeightedMasking
    from mlmkit.training.pretrain import build_pretrain_data

    try:
        tagger = PosWeightedMasking()
    except Exception as exc:  # noqa: BLE001 - the packaged pipeline is optional
        pytest.skip(f"no spaCy pipeline: {exc}")
    tagger.bind(wordpiece_tokenizer)
    data = PretrainDataConfig(source=str(corpus_file), max_seq_length=32, eval_fraction=0.2)
    held = build_held_out(wordpiece_tokenizer, data, seed=7, word_classes=True, pos=True)
    cfg = PretrainConfig(data=data)
    cfg.train.seed = 7
    _, everything, _ = build_pretrain_data(cfg, wordpiece_tokenizer, _FeatureSet([tagger]))
    assert held.pos_tags and held.blocks["input_ids"] == everything["input_ids"]
    assert held.blocks["pos_ids"] == everything["pos_ids"]
    assert any(t >= 0 for row in held.blocks["pos_ids"] for t in row)


@pytest.mark.slow
def test_evaluate_cli_reports_every_family(tiny_model_dir, tmp_path):
    from conftest import make_corpus

    corpus_file = tmp_path / "corpus.txt"
    corpus_file.write_text("\n".join(make_corpus(3000, seed=5)) + "\n")
    labelled = tmp_path / "labels.csv"
    rows = ["text,label"] + [f"\"{t}\",{'pos' if 'likes' in t or 'admires' in t else 'neg'}"
                             for t in corpus_file.read_text().splitlines()[:120]]
    labelled.write_text("\n".join(rows) + "\n")
    result = CliRunner().invoke(app, ["evaluate", str(tiny_model_dir), "--corpus", str(corpus_file),
                                      "--max-seq-length", "32", "--max-sentences", "3", "--probe", str(labelled),
                                      "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output[result.output.index("{"):])
    metrics, families = report["metrics"], report["families"]
    for name in ("masked_accuracy", "perplexity", "whole_word_accuracy", "pseudo_perplexity", "pll_per_token",
                 "content_word_accuracy", "function_word_accuracy", "probe_accuracy", "probe_macro_f1"):
        assert name in metrics and families[name] in FAMILIES
    assert report["family_descriptions"]["random"]["bias"] == "favours random-token training"
    assert report["details"]["held_out_blocks"] >= 10 and metrics["pll_sequences"] == 3
    assert metrics["eval_tokens"] > 50 and metrics["whole_words"] > 30
    assert 0.0 <= metrics["whole_word_accuracy"] <= 1.0
    assert report["details"]["probe"]["labels"] == ["neg", "pos"]


def test_evaluate_cli_table_and_errors(tiny_model_dir, corpus_file, tmp_path, monkeypatch):
    from rich.console import Console

    monkeypatch.setattr("mlmkit.cli.evaluate.out_console", Console(width=250))
    runner = CliRunner()
    table = runner.invoke(app, ["evaluate", str(tiny_model_dir), "--corpus", str(corpus_file),
                                "--max-seq-length", "32", "--metrics", "random,pll", "--max-sentences", "2"])
    assert table.exit_code == 0, table.output
    assert "masked_accuracy" in table.output and "favours random-token training" in table.output
    assert "whole_word_accuracy" not in table.output
    bad = runner.invoke(app, ["evaluate", str(tiny_model_dir), "--metrics", "random,bleu"])
    assert bad.exit_code == 2 and "unknown metric family 'bleu'" in bad.output
    missing = runner.invoke(app, ["evaluate", str(tmp_path / "nope")])
    assert missing.exit_code == 2 and "error" in missing.output.lower()
    long = runner.invoke(app, ["evaluate", str(tiny_model_dir), "--corpus", str(corpus_file),
                               "--max-seq-length", "4096"])
    assert long.exit_code == 2 and "exceeds the model's 128 positions" in long.output
