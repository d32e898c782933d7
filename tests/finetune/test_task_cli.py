"""mlmkit finetune classify / ner / suite through Typer's CliRunner, on tiny models and files written here."""

import json
import random

import numpy as np
import pytest
from tiny_task_models import save_no_dropout_bert
from typer.testing import CliRunner

from mlmkit.cli.app import app

runner = CliRunner()
# the commands end to end, as in tests/e2e: slow
pytestmark = [pytest.mark.usefixtures("one_torch_thread"), pytest.mark.slow]

ANIMALS = ["cat", "dog"]
VEHICLES = [["morning", "train"], ["electric", "bus"], ["old", "car"]]
VERBS = ["likes", "hates", "chases", "ignores", "admires"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, wordpiece_tokenizer):
    return save_no_dropout_bert(tmp_path_factory.mktemp("tiny-bert-no-dropout"), wordpiece_tokenizer)


def entity_sentences(n, seed):
    """Animals are B-ANIMAL; two-word vehicles are B-VEHICLE I-VEHICLE; every other word is O."""
    rng = random.Random(seed)
    sentences = []
    for _ in range(n):
        vehicle = rng.choice(VEHICLES)
        words = ["the", rng.choice(ANIMALS), rng.choice(VERBS), "the", *vehicle, "."]
        tags = ["O", "B-ANIMAL", "O", "O", "B-VEHICLE", "I-VEHICLE", "O"]
        if rng.random() < 0.5:  # vary positions
            words, tags = ["the", *vehicle, rng.choice(VERBS), "a", rng.choice(ANIMALS)], \
                ["O", "B-VEHICLE", "I-VEHICLE", "O", "O", "B-ANIMAL"]
        sentences.append((words, tags))
    return sentences


@pytest.fixture(scope="module")
def conll_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("ner") / "train.conll"
    blocks = ["-DOCSTART- -X- -X- O\n"]
    for words, tags in entity_sentences(240, seed=0):
        blocks.append("".join(f"{w}\t{t}\n" for w, t in zip(words, tags, strict=True)))
    path.write_text("\n".join(blocks), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def pairs_csv(tmp_path_factory):
    rng = random.Random(0)
    lines = ["first,second,verdict"]
    for _ in range(120):
        verdict = rng.choice(["same", "other"])
        lines.append(f"the cat waits,{'the cat likes it' if verdict == 'same' else 'a dog hates it'},{verdict}")
    path = tmp_path_factory.mktemp("pairs") / "pairs.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def tiny(*extra):
    return ["train.batch_size=16", "train.lr=5e-3", "data.max_seq_length=32", "model.attn_implementation=null",
            "train.mixed_precision=no", "train.eval_batch_size=64", *extra]


@pytest.mark.slow
def test_ner_cli_model_works_in_the_token_classification_pipeline(model_dir, conll_file, tmp_path):
    from transformers import pipeline

    out = tmp_path / "ner"
    result = runner.invoke(app, ["finetune", "ner", "--model", str(model_dir), "--dataset", str(conll_file),
                                 "--output", str(out), "--max-steps", "150", "--json", *tiny()])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout[result.stdout.index("{"):])
    assert payload["task"] == "token" and payload["primary_metric"] == "f1"
    assert payload["label_names"] == ["O", "B-ANIMAL", "B-VEHICLE", "I-VEHICLE"]
    assert payload["metrics"]["f1"] == 1.0 and payload["baseline"]["f1"] == 0.0  # 'O' everywhere finds nothing
    assert {row["label"] for row in payload["per_class"]} == {"ANIMAL", "VEHICLE"}
    config = json.loads((out / "config.json").read_text())
    assert config["id2label"]["1"] == "B-ANIMAL" and config["architectures"] == ["BertForTokenClassification"]

    tagger = pipeline("token-classification", model=str(out), aggregation_strategy="simple", device="cpu")
    groups = [(g["entity_group"], g["word"]) for g in tagger("the dog chases the electric bus .")]
    assert groups == [("ANIMAL", "dog"), ("VEHICLE", "electric bus")]


def test_classify_cli_pairs_tables(model_dir, pairs_csv, tmp_path):
    out = tmp_path / "pairs"
    result = runner.invoke(app, ["finetune", "classify", "--model", str(model_dir), "--dataset", str(pairs_csv),
                                 "--text-column", "first", "--text-pair-column", "second", "--label-column",
                                 "verdict", "--output", str(out), "--max-steps", "3", *tiny()])
    assert result.exit_code == 0, result.output
    for heading in ("majority baseline", "accuracy", "per-class report", "confusion matrix", "model saved to"):
        assert heading in result.stdout
    saved = json.loads((out / "config.json").read_text())
    assert saved["id2label"] == {"0": "other", "1": "same"}


def test_classify_cli_user_errors(model_dir, pairs_csv, tmp_path):
    base = ["finetune", "classify", "--model", str(model_dir), "--dataset", str(pairs_csv), "--text-column", "first",
            "--label-column", "verdict", "--output", str(tmp_path / "x"), "--max-steps", "1", *tiny()]
    for extra, fragment in ((["--text-pair-column", "third"], "text pair column 'third' not found"),
                            (["--task", "regression"], "numeric labels"),
                            (["--task", "ranking"], "data.task='ranking' is not valid"),
                            (["--threshold", "1.5"], "data.threshold=1.5 is not valid")):
        result = runner.invoke(app, [*base, *extra])
        assert result.exit_code == 2, result.output
        assert "Traceback" not in result.output and fragment in result.output, result.output
    assert not (tmp_path / "x").exists()


def suite_recipe(tmp_path, pairs_csv, conll_file):
    pairs = tmp_path / "pairs.yaml"
    pairs.write_text(f"# pairs\ndata:\n  dataset: {pairs_csv}\n  text_column: first\n  text_pair_column: second\n"
                     "  label_column: verdict\ntrain:\n  max_steps: 2\n", encoding="utf-8")
    ner = tmp_path / "ner.yaml"
    ner.write_text(f"# ner\ndata:\n  task: token\n  dataset: {conll_file}\ntrain:\n  max_steps: 2\n", encoding="utf-8")
    overrides = json.dumps(tiny())
    suite = tmp_path / "suite.yaml"
    suite.write_text(f"# two tasks\nseeds: [0, 1]\ntasks:\n  - name: pairs\n    recipe: {pairs}\n"
                     f"    overrides: {overrides}\n  - name: ner\n    recipe: {ner}\n    overrides: {overrides}\n"
                     "    metric: accuracy\n", encoding="utf-8")
    return suite


@pytest.mark.slow
def test_suite_of_two_recipes_writes_its_table_and_reuses_finished_runs(model_dir, pairs_csv, conll_file, tmp_path,
                                                                         monkeypatch):
    suite = suite_recipe(tmp_path, pairs_csv, conll_file)
    out = tmp_path / "suite-out"
    result = runner.invoke(app, ["finetune", "suite", "--recipe", str(suite), "--model", str(model_dir),
                                 "--output", str(out)])
    assert result.exit_code == 0, result.output
    assert "fine-tuning suite on" in result.stdout and "pairs" in result.stdout and "ner" in result.stdout
    summary = json.loads((out / "suite.json").read_text())
    assert summary["model"] == str(model_dir) and summary["seeds"] == [0, 1]
    assert [row["task"] for row in summary["rows"]] == ["pairs", "ner"]
    assert [row["metric"] for row in summary["rows"]] == ["accuracy", "accuracy"]
    for row in summary["rows"]:
        values = [row["values"]["0"], row["values"]["1"]]
        assert row["mean"] == pytest.approx(np.mean(values)) and row["std"] == pytest.approx(np.std(values, ddof=1))
    runs = {(r["task"], r["seed"]): r for r in summary["runs"]}
    assert len(runs) == 4
    for (task, seed), run in runs.items():
        saved = json.loads((out / task / f"seed-{seed}" / "eval_results.json").read_text())
        assert saved["metrics"]["accuracy"] == run["value"]
        assert f"seed: {seed}" in (out / task / f"seed-{seed}" / "config.yaml").read_text()

    import mlmkit.training.finetune as finetune_module

    def no_training(cfg, console=None):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(finetune_module, "finetune_classifier", no_training)
    again = runner.invoke(app, ["finetune", "suite", "--recipe", str(suite), "--model", str(model_dir),
                                "--output", str(out), "--json"])
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout[again.stdout.index("{"):])["rows"] == summary["rows"]


def test_suite_refuses_a_foreign_directory(model_dir, pairs_csv, conll_file, tmp_path):
    out = tmp_path / "busy"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    result = runner.invoke(app, ["finetune", "suite", "--recipe", str(suite_recipe(tmp_path, pairs_csv, conll_file)),
                                 "--model", str(model_dir), "--output", str(out)])
    assert result.exit_code == 2 and "not empty" in result.output, result.output
    assert (out / "notes.txt").read_text() == "mine"


def test_classify_cli_multi_label_and_regression_tables(model_dir, tmp_path):
    rows = [{"text": f"the cat saw {w}", "tags": tags, "score": float(len(tags))}
            for w, tags in (("the train", ["train"]), ("a street", ["street"]), ("both", ["street", "train"]),
                            ("nothing", []))] * 10
    data = tmp_path / "rows.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    common = ["finetune", "classify", "--model", str(model_dir), "--dataset", str(data), "--max-steps", "3", *tiny()]
    multi = runner.invoke(app, [*common, "--label-column", "tags", "--task", "multi_label", "--output",
                                str(tmp_path / "multi")])
    assert multi.exit_code == 0, multi.output
    for heading in ("micro-F1", "macro-F1", "threshold (tuned on this set)", "per-label report", "street", "train"):
        assert heading in multi.stdout
    assert "confusion matrix" not in multi.stdout
    scores = runner.invoke(app, [*common, "--label-column", "score", "--task", "regression", "--output",
                                 str(tmp_path / "scores"), "--json"])
    assert scores.exit_code == 0, scores.output
    # strict JSON: no NaN (a regression run has no accuracy)
    payload = json.loads(scores.stdout[scores.stdout.index("{"):], parse_constant=lambda name: pytest.fail(name))
    assert payload["accuracy"] is None and payload["task"] == "regression" and payload["label_names"] == ["score"]
    assert set(payload["metrics"]) >= {"pearson", "spearman", "mse", "mae"}
    assert payload["baseline"]["label"].startswith("mean ")
