"""`mlmkit compare` end to end on a tiny model: fairness, skip/resume, shards, report files.

Runs are deterministic (masks, dropout and data order depend only on seed and step), so
a study that was interrupted and resumed, or run in two shards, must give exactly the
numbers of the same study run in one go.
"""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from mlmkit.cli.app import app
from mlmkit.study.recipe import load_study
from mlmkit.study.report import write_report
from mlmkit.study.runner import read_result, run_study
from mlmkit.training.stopping import TrainingInterrupted

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def recipe(tmp_path_factory, tiny_model_dir, corpus_file):
    root = tmp_path_factory.mktemp("study-recipe")
    base = root / "base.yaml"
    base.write_text(f"""# tiny base
model: {{name_or_path: {tiny_model_dir}, sparse_last_layer: false}}
data: {{source: {corpus_file}, max_seq_length: 32, eval_fraction: 0.2}}
masking: {{name: random, ratio: 0.15}}
train: {{max_steps: 4, batch_size: 8, lr: 3.0e-3, eval_every: 2, log_every: 1, max_time: 10m}}
""")
    study = root / "tiny.yaml"
    study.write_text(f"""# tiny study
base: {base}
overrides: [train.warmup_ratio=0.0]
seeds: [0, 1]
baseline: random
evaluate: {{metrics: [random, whole_word, pll, word_class], max_sentences: 4, probe: null}}
arms:
  random:
    masking: {{name: random, ratio: 0.15}}
  whole_word:
    masking: {{name: whole_word, ratio: 0.15}}
    overrides: [masking.ratio=0.2]
""")
    return study


@pytest.fixture(scope="module")
def reference(recipe, tmp_path_factory, one_torch_thread):
    """The whole study in one go."""
    study = load_study(str(recipe), study_dir=str(tmp_path_factory.mktemp("reference")))
    progress = run_study(study)
    results = write_report(study)
    return study, progress, results


def _values(results):
    return {arm: {m: s["values"] for m, s in per.items()} for arm, per in results["arms"].items()}


def test_study_runs_every_arm_and_seed(reference):
    study, progress, results = reference
    assert progress.executed == ["random/seed-0", "random/seed-1", "whole_word/seed-0", "whole_word/seed-1"]
    assert not progress.skipped and not progress.missing
    assert [r.config.masking for r in study.runs][2] == {"name": "whole_word", "ratio": 0.2}
    for run in study.runs:
        assert run.config.train.max_time is None and run.config.train.seed == run.seed
        assert run.config.train.checkpoint_every == 1  # a quarter of 4 steps
    assert set(results["arms"]) == {"random", "whole_word"}
    for metric in ("masked_accuracy", "whole_word_accuracy", "pseudo_perplexity", "content_word_accuracy"):
        summary = results["arms"]["random"][metric]
        assert summary["n"] == 2 and len(summary["values"]) == 2
        comparison = results["comparisons"]["whole_word"][metric]
        assert comparison["differences"] == pytest.approx(
            [a - b for a, b in zip(results["arms"]["whole_word"][metric]["values"], summary["values"], strict=True)])


def test_same_seed_means_same_start_and_evaluation(reference):
    """Arms share initial weights and held-out masks per seed: the before-training metrics agree exactly."""
    study, _, _ = reference
    before = {(r.arm, r.seed): read_result(r)["pretrain"]["before"] for r in study.runs}
    for seed in (0, 1):
        assert before[("random", seed)] == before[("whole_word", seed)]
    assert before[("random", 0)]["eval_loss"] != before[("random", 1)]["eval_loss"]


def test_evaluation_reproduces_the_runs_own_final_metrics(reference):
    study, _, _ = reference
    for run in study.runs:
        record = read_result(run)
        after, evaluated = record["pretrain"]["after"], record["evaluation"]["metrics"]
        assert evaluated["masked_accuracy"] == pytest.approx(after["masked_accuracy"], abs=1e-12)
        assert evaluated["eval_loss"] == pytest.approx(after["eval_loss"], rel=1e-5)
        assert evaluated["eval_tokens"] == after["eval_tokens"]


def test_report_files(reference):
    study, _, results = reference
    report = (study.dir / "report.md").read_text()
    assert "| whole_word | masked_accuracy |" in report and "## What the data say" in report
    saved = json.loads((study.dir / "results.json").read_text())
    assert _values(saved) == _values(results)
    for arm in saved["arms"].values():
        for summary in arm.values():
            assert set(summary) >= {"values", "mean", "sd", "ci95"}
    for name in ("learning_curves.png", "mask_ratio.png", "final_metrics.png"):
        data = (study.dir / name).read_bytes()
        assert data.startswith(PNG) and len(data) > 5_000


def test_rerun_skips_finished_runs(reference):
    study, _, _ = reference
    again = run_study(study)
    assert again.executed == [] and len(again.skipped) == 4


def test_interrupted_study_resumes_the_run_in_progress(recipe, reference, tmp_path, monkeypatch):
    """SIGTERM during the third run: rerunning trains only the two unfinished runs, the third from its checkpoint."""
    import signal

    import mlmkit.training.pretrain as pretrain_module
    from mlmkit.training.stopping import Stop, StopReason

    study = load_study(str(recipe), study_dir=str(tmp_path / "study"))
    real = pretrain_module.agreed_stop
    calls = {"n": 0}

    def stop_in_third_run(signals, budget, seconds, accelerator):
        calls["n"] += 1
        if calls["n"] == 4 * 2 + 2:
            return Stop(StopReason.SIGNAL, signal.SIGTERM)
        return real(signals, budget, seconds, accelerator)

    monkeypatch.setattr(pretrain_module, "agreed_stop", stop_in_third_run)
    with pytest.raises(TrainingInterrupted, match="run the same mlmkit compare command again"):
        run_study(study)
    monkeypatch.setattr(pretrain_module, "agreed_stop", real)
    assert [read_result(r) is not None for r in study.runs] == [True, True, False, False]
    progress = run_study(study)
    assert progress.skipped == ["random/seed-0", "random/seed-1"]
    assert progress.executed == ["whole_word/seed-0", "whole_word/seed-1"]
    assert progress.resumed == ["whole_word/seed-0"]
    assert read_result(study.runs[2])["pretrain"]["resumed_from"]
    assert _values(write_report(study)) == _values(reference[2])


def test_two_shards_and_report_equal_one_study(recipe, reference, tmp_path):
    runner = CliRunner()
    target = tmp_path / "sharded"
    first = runner.invoke(app, ["compare", "--recipe", str(recipe), "--dir", str(target), "--shard", "1/2"])
    assert first.exit_code == 0, first.output
    assert "not finished yet" in first.output
    assert not (target / "results.json").exists()
    early = runner.invoke(app, ["compare", "--recipe", str(recipe), "--dir", str(target), "--report"])
    assert early.exit_code == 2 and "2 of 4 runs are not finished" in early.output
    second = runner.invoke(app, ["compare", "--recipe", str(recipe), "--dir", str(target), "--shard", "0/2"])
    assert second.exit_code == 0, second.output
    report = runner.invoke(app, ["compare", "--recipe", str(recipe), "--dir", str(target), "--report", "--json"])
    assert report.exit_code == 0, report.output
    results = json.loads(report.output[report.output.index("{"):])
    assert _values(results) == _values(reference[2])


@pytest.mark.parametrize("args, message", [
    (["--shard", "2/2"], "--shard takes i/n"),
    (["seeds=[]"], "at least one seed"),
    (["baseline=nope"], "baseline 'nope' is not an arm"),
])
def test_bad_study_options(recipe, tmp_path, args, message):
    result = CliRunner().invoke(app, ["compare", "--recipe", str(recipe), "--dir", str(tmp_path / "s"), *args])
    assert result.exit_code == 2 and message in result.output
    assert not (tmp_path / "s").exists()


def test_arms_may_not_change_compute(tmp_path, recipe):
    bad = tmp_path / "bad.yaml"
    bad.write_text(recipe.read_text().replace("overrides: [masking.ratio=0.2]", "overrides: [train.max_steps=8]"))
    result = CliRunner().invoke(app, ["compare", "--recipe", str(bad), "--dir", str(tmp_path / "s")])
    assert result.exit_code == 2 and "changes train.max_steps" in result.output


def _tiny_finetune_recipe(tmp_path, corpus_file):
    """A two-step fine-tuning recipe on a labelled slice of the corpus (label: does the text say 'likes')."""
    labelled = tmp_path / "labels.csv"
    lines = corpus_file.read_text().splitlines()[:80]
    labelled.write_text("text,label\n" + "\n".join(f"\"{t}\",{'pos' if 'likes' in t else 'neg'}" for t in lines))
    finetune = tmp_path / "ft.yaml"
    finetune.write_text(f"""# tiny fine-tuning
model: {{name_or_path: placeholder, attn_implementation: null}}
data: {{dataset: {labelled}, max_seq_length: 32, eval_fraction: 0.25}}
train: {{max_steps: 2, batch_size: 8, lr: 1.0e-3, log_every: 1}}
""")
    return finetune


def test_finetune_downstream_check(recipe, tmp_path, corpus_file):
    finetune = _tiny_finetune_recipe(tmp_path, corpus_file)
    study = load_study(str(recipe), [f"finetune={finetune}", "seeds=[3]", "train.max_steps=2"],
                       study_dir=str(tmp_path / "study"))
    run_study(study)
    record = read_result(study.runs[0])
    assert set(record["finetune"]) == {"finetune_accuracy", "finetune_macro_f1"}
    assert 0.0 <= record["finetune"]["finetune_accuracy"] <= 1.0
    assert (study.runs[0].dir / "finetune" / "config.json").is_file()
    results = write_report(study)
    assert results["families"]["finetune_accuracy"] == "finetune"
    assert results["arms"]["whole_word"]["finetune_accuracy"]["n"] == 1
    assert "Only one seed" in (study.dir / "report.md").read_text()


def test_fingerprint_counts_what_makes_a_run(recipe, tmp_path):
    import dataclasses

    from mlmkit.study.recipe import _fingerprint

    run = load_study(str(recipe), study_dir=str(tmp_path / "a")).runs[0]
    moved = load_study(str(recipe), study_dir=str(tmp_path / "b")).runs[0]
    assert run.fingerprint == moved.fingerprint  # where a run lives does not count
    cfg = run.config
    same = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, resume="auto"))
    assert _fingerprint(same) == run.fingerprint
    other = dataclasses.replace(cfg, masking={**cfg.masking, "ratio": 0.3})
    assert _fingerprint(other) != run.fingerprint
    longer = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, max_steps=5))
    assert _fingerprint(longer) != run.fingerprint


def test_suite_downstream_check(recipe, tmp_path, corpus_file):
    """A study with a fine-tuning suite: each task's headline score per run, compared like the other metrics."""
    finetune = _tiny_finetune_recipe(tmp_path, corpus_file)
    suite = tmp_path / "suite.yaml"
    suite.write_text(f"# one task\ntasks:\n  - name: likes\n    recipe: {finetune}\n")
    study = load_study(str(recipe), [f"suite={suite}", "seeds=[5]", "train.max_steps=2"],
                       study_dir=str(tmp_path / "study"))
    run_study(study)
    for run in study.runs:
        record = read_result(run)
        assert set(record["finetune"]) == {"suite_likes_accuracy"}
        summary = json.loads((run.dir / "suite" / "suite.json").read_text())
        assert summary["seeds"] == [5] and summary["model"] == str(run.dir)  # the run's own encoder and seed
        assert record["finetune"]["suite_likes_accuracy"] == summary["rows"][0]["mean"]
    results = write_report(study)
    assert results["families"]["suite_likes_accuracy"] == "finetune"
    assert results["arms"]["random"]["suite_likes_accuracy"]["n"] == 1
