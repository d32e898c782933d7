"""``mlmkit finetune sentiment`` through Typer's CliRunner: success, option precedence, user errors."""

import json
import random

import pytest
from typer.testing import CliRunner

from mlmkit.cli.app import app

runner = CliRunner()

WORDS = {"good": ["great", "lovely", "fine"], "bad": ["awful", "poor", "sad"]}
SUBJECTS = ["the cat", "a dog", "our team", "this phone", "the weather", "my neighbour"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def reviews_csv(tmp_path_factory):
    rng = random.Random(0)
    lines = ["review,verdict"]
    for _ in range(160):
        verdict = rng.choice(sorted(WORDS))
        lines.append(f'"{rng.choice(SUBJECTS)} is {rng.choice(WORDS[verdict])} today",{verdict}')
    path = tmp_path_factory.mktemp("reviews") / "reviews.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def assert_one_line_error(result, fragment):
    assert result.exit_code == 2, result.output
    text = result.output.strip()
    assert "Traceback" not in text
    assert "error" in text and fragment in text, text
    assert len([line for line in text.splitlines() if line.strip()]) <= 3  # one message (may soft-wrap)


def base_args(model_dir, data, out):
    return ["finetune", "sentiment", "--model", str(model_dir), "--dataset", str(data), "--text-column", "review",
            "--label-column", "verdict", "--output", str(out), "train.batch_size=16", "train.lr=1e-2",
            "data.max_seq_length=32", "model.attn_implementation=null"]


def test_success_with_json(tiny_model_dir, reviews_csv, tmp_path):
    out = tmp_path / "sentiment"
    # long enough to learn the keyword whatever vocabulary the (non-deterministic) WordPiece trainer gave
    result = runner.invoke(app, [*base_args(tiny_model_dir, reviews_csv, out), "--max-steps", "80", "--json",
                                 "train.lr=5e-3"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout[result.stdout.index("{"):])
    assert payload["steps"] == 80 and payload["output_dir"] == str(out)
    assert payload["label_names"] == ["bad", "good"]
    assert payload["data"]["eval_examples"] == 16 and payload["data"]["train_examples"] == 144
    assert payload["accuracy"] > payload["baseline"]["accuracy"]
    assert set(payload["baseline"]) == {"label", "accuracy", "macro_f1"}
    assert len(payload["confusion_matrix"]) == 2 and sum(map(sum, payload["confusion_matrix"])) == 16
    # the keyword decides the label: 80 steps learn it, every held-out review right and nothing off the diagonal
    assert payload["accuracy"] == 1.0 and payload["confusion_matrix"][0][1] == payload["confusion_matrix"][1][0] == 0
    config = json.loads((out / "config.json").read_text())
    assert config["id2label"] == {"0": "bad", "1": "good"}
    from transformers import pipeline

    classify = pipeline("text-classification", model=str(out))  # the saved model, loaded back
    assert [classify(f"a dog is {word} today")[0]["label"] for word in ("lovely", "awful", "fine", "sad")] == \
        ["good", "bad", "good", "bad"]


def test_tables_and_overwrite(tiny_model_dir, reviews_csv, tmp_path):
    out = tmp_path / "again"
    out.mkdir()
    (out / "old.txt").write_text("stale")
    refused = runner.invoke(app, [*base_args(tiny_model_dir, reviews_csv, out), "--max-steps", "2"])
    assert_one_line_error(refused, "not empty")
    result = runner.invoke(app, [*base_args(tiny_model_dir, reviews_csv, out), "--max-steps", "2", "--overwrite"])
    assert result.exit_code == 0, result.output
    for heading in ("majority baseline", "macro-F1", "per-class report", "confusion matrix", "support"):
        assert heading in result.stdout
    assert not (out / "old.txt").exists() and (out / "model.safetensors").is_file()


def test_options_override_recipe_and_positional_overrides_win(tmp_path, monkeypatch):
    import mlmkit.training.finetune as finetune_module

    seen = {}

    def fake_finetune(cfg, console=None):
        seen["cfg"] = cfg
        raise SystemExit(0)

    monkeypatch.setattr(finetune_module, "finetune_classifier", fake_finetune)
    recipe = tmp_path / "r.yaml"
    recipe.write_text("# test recipe\nmodel:\n  name_or_path: from-recipe\ndata:\n  dataset: a.csv\n"
                      "train:\n  max_steps: 500\n  lr: 1.0e-4\noutput:\n  dir: recipe-out\n")
    runner.invoke(app, ["finetune", "sentiment", "--recipe", str(recipe), "--model", "dir with spaces/m",
                        "--epochs", "2", "--output", "cli-out", "output.dir=positional-out", "train.lr=3e-5"])
    cfg = seen["cfg"]
    assert cfg.model.name_or_path == "dir with spaces/m"  # option beats recipe
    assert cfg.data.dataset == "a.csv"  # recipe beats default
    assert cfg.train.num_epochs == 2.0 and cfg.train.max_steps == -1  # --epochs alone: train by epochs
    assert cfg.output.dir == "positional-out"  # positional override beats option
    assert cfg.train.lr == 3e-5


def test_demo_recipe_is_found_by_name(monkeypatch):
    import mlmkit.training.finetune as finetune_module

    seen = {}
    monkeypatch.setattr(finetune_module, "finetune_classifier",
                        lambda cfg, console=None: (seen.setdefault("cfg", cfg), (_ for _ in ()).throw(SystemExit(0))))
    runner.invoke(app, ["finetune", "sentiment", "--recipe", "demo", "--model", "runs/demo/mlm", "--output",
                        "runs/demo/sentiment", "--overwrite"])
    cfg = seen["cfg"]
    assert cfg.data.dataset == "embedded" and cfg.output.overwrite is True
    assert cfg.model.name_or_path == "runs/demo/mlm" and cfg.output.dir == "runs/demo/sentiment"


@pytest.mark.parametrize(
    "change, fragment",
    [
        ({"--label-column": "stars"}, "available columns: review, verdict"),
        ({"--text-column": "body"}, "text column 'body' not found"),
        ({"--dataset": "/no/such/reviews.csv"}, "no such file"),
        ({"--model": "/no/such/model"}, "no such model directory"),
        ({"--model": "./missing-model-dir"}, "no such model directory"),
    ],
)
def test_user_errors(change, fragment, tiny_model_dir, reviews_csv, tmp_path):
    args = base_args(tiny_model_dir, reviews_csv, tmp_path / "x")
    for option, value in change.items():
        args[args.index(option) + 1] = value
    result = runner.invoke(app, [*args, "--max-steps", "1"])
    assert_one_line_error(result, fragment)
    assert not (tmp_path / "x").exists()  # nothing written before the inputs are known to be good


def test_single_class_is_an_error(tiny_model_dir, tmp_path):
    data = tmp_path / "one.csv"
    data.write_text("review,verdict\n" + "".join(f'"text {i}",good\n' for i in range(10)))
    result = runner.invoke(app, [*base_args(tiny_model_dir, data, tmp_path / "y"), "--max-steps", "1"])
    assert_one_line_error(result, "only one class")
