"""The evaluation before training is remembered in the prepared corpus: the same weights on the same
held-out blocks are evaluated once, and anything the numbers depend on makes a run evaluate again."""

from __future__ import annotations

import json

import pytest

from conftest import build_tiny_bert
from mlmkit.config import PretrainConfig, load_config
from mlmkit.training import pretrain as pretrain_module
from mlmkit.training.mlm_eval import EVALUATIONS_DIR
from mlmkit.training.pretrain import pretrain


@pytest.fixture
def evaluations(monkeypatch) -> list[int]:
    """One entry per held-out evaluation the loop runs (before training, after training)."""
    calls: list[int] = []
    real = pretrain_module.evaluate_mlm

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(pretrain_module, "evaluate_mlm", counting)
    return calls


@pytest.fixture
def run(tiny_model_dir, corpus_file, tmp_path):
    def run(name: str, *extra: str):
        cfg = load_config(PretrainConfig, None, [
            f"model.name_or_path={tiny_model_dir}", f"data.source={corpus_file}", "data.max_seq_length=32",
            "data.eval_fraction=0.2", "train.max_steps=1", "train.batch_size=8", "train.log_every=1",
            f"data.cache_dir={tmp_path / 'prepared'}", f"output.dir={tmp_path / name}", *extra])
        return pretrain(cfg)
    return run


def records(tmp_path) -> list:
    return sorted((tmp_path / "prepared").glob(f"*/{EVALUATIONS_DIR}/*.json"))


def test_a_second_run_from_the_same_weights_reuses_the_evaluation(run, evaluations, tmp_path):
    first = run("a")
    assert len(evaluations) == 2 and len(records(tmp_path)) == 1  # before and after training; one record
    # another strategy and learning rate: the same prepared corpus, weights and held-out blocks
    second = run("b", "masking.name=whole_word", "train.lr=1e-2")
    assert len(evaluations) == 3  # only the evaluation after training ran
    assert second.before == first.before
    assert json.loads(records(tmp_path)[0].read_text()) == first.before
    # and the remembered numbers are what evaluating gives: a run without the prepared corpus evaluates
    fresh = run("c", "data.cache=false")
    assert len(evaluations) == 5 and fresh.before == first.before


def test_other_weights_blocks_or_seeds_evaluate_again(run, evaluations, tmp_path, wordpiece_tokenizer):
    first = run("a")
    other_model = tmp_path / "other-model"
    build_tiny_bert(wordpiece_tokenizer, seed=1).save_pretrained(other_model)
    wordpiece_tokenizer.save_pretrained(other_model)
    changes = [(f"model.name_or_path={other_model}",), ("data.eval_max_blocks=5",), ("train.seed=7",),
               ("model.sparse_head=false",)]
    befores = []
    for number, change in enumerate(changes):
        befores.append(run(f"changed-{number}", *change).before)
        assert len(evaluations) == 2 * (number + 2), change  # evaluated before and after again
    assert len(records(tmp_path)) == 1 + len(changes)
    assert befores[0] != first.before and befores[1]["eval_tokens"] < first.before["eval_tokens"]


def test_an_unreadable_record_is_evaluated_again(run, evaluations, tmp_path):
    first = run("a")
    record = records(tmp_path)[0]
    record.write_text("{ half a rec")
    again = run("b")
    assert len(evaluations) == 4 and again.before == first.before
    assert json.loads(record.read_text()) == first.before  # and written whole again


def test_a_resumed_run_keeps_its_own_before(run, evaluations, tmp_path):
    first = run("a", "train.max_steps=2", "train.checkpoint_every=1")
    resumed = run("a", "train.max_steps=3", "train.resume=auto")
    assert resumed.before == first.before and len(evaluations) == 3  # the resume evaluated only at its end
