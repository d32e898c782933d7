import json

import pytest

from made_runs import PRETRAIN_AFTER, PRETRAIN_BEFORE, make_finetune_run, make_pretrain_run
from mlmkit.errors import UserError
from mlmkit.training.run_summary import find_runs, read_run_metrics, summarize_run


def test_finished_pretrain_run(tmp_path):
    summary = summarize_run(make_pretrain_run(tmp_path / "mlm", strategy="whole_word"))
    assert (summary.kind, summary.strategy, summary.steps, summary.finished) == ("pretrain", "whole_word", 20, True)
    assert summary.before == PRETRAIN_BEFORE and summary.after == PRETRAIN_AFTER
    assert summary.model == "embedded" and summary.data == "embedded" and summary.downstream == {}


def test_unfinished_run_reads_the_metrics(tmp_path):
    summary = summarize_run(make_pretrain_run(tmp_path / "mlm", finished=False))
    assert not summary.finished and summary.steps == 20
    assert summary.before["masked_accuracy"] == 0.05 and summary.after["masked_accuracy"] == 0.2  # latest eval


def test_a_cut_line_from_a_killed_run_is_skipped(tmp_path):
    run = make_pretrain_run(tmp_path / "mlm")
    lines = (run / "metrics.jsonl").read_text().splitlines()
    lines[2] = lines[2][:15] + json.dumps({"step": 10, "split": "train", "loss": 4.0})  # resumed after a cut line
    (run / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    records = read_run_metrics(run / "metrics.jsonl")
    assert len(records) == len(lines) - 1 and all("step" in r for r in records)
    assert summarize_run(run).steps == 20


def test_finetune_run(tmp_path):
    summary = summarize_run(make_finetune_run(tmp_path / "ft", model="embedded", accuracy=0.75))
    assert (summary.kind, summary.strategy, summary.steps) == ("finetune", None, 30)
    assert summary.before == {"accuracy": 0.4, "macro_f1": 0.19}
    assert summary.after == {"accuracy": 0.75, "macro_f1": 0.7, "eval_loss": 0.5}
    assert summary.downstream == {"accuracy": 0.75, "macro_f1": 0.7}


def test_find_runs_newest_first_with_downstream_scores(tmp_path):
    mlm = make_pretrain_run(tmp_path / "a" / "mlm", timestamp=1_000_000)
    other = make_pretrain_run(tmp_path / "b" / "mlm", strategy="random", timestamp=3_000_000)
    make_finetune_run(tmp_path / "a" / "ft1", model=str(mlm), accuracy=0.7, timestamp=2_000_000)
    make_finetune_run(tmp_path / "a" / "ft2", model=str(mlm), accuracy=0.8, timestamp=4_000_000)
    make_finetune_run(tmp_path / "c" / "ft", model="embedded", accuracy=0.9, timestamp=5_000_000)
    (mlm / "checkpoints" / "step-00000010").mkdir(parents=True)  # checkpoints are not runs
    (mlm / "checkpoints" / "step-00000010" / "config.yaml").write_text((mlm / "config.yaml").read_text())
    runs = find_runs(tmp_path)
    assert [r.path for r in runs] == [str(tmp_path / p) for p in ("c/ft", "a/ft2", "b/mlm", "a/ft1", "a/mlm")]
    by_path = {r.path: r for r in runs}
    assert by_path[str(mlm)].downstream == {"accuracy": 0.8, "macro_f1": pytest.approx(0.75)}
    assert by_path[str(other)].downstream == {}


def test_find_runs_needs_a_folder(tmp_path):
    with pytest.raises(UserError, match="is not a directory"):
        find_runs(tmp_path / "missing")
    assert find_runs(tmp_path) == []
