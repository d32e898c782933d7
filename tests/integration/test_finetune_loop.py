"""The fine-tuning loop on a tiny BERT built in code and a keyword-labelled csv written here."""

import json
import random
from pathlib import Path

import pytest
import torch

from conftest import build_tiny_bert
from mlmkit.config.schema import FinetuneConfig, FinetuneDataConfig, ModelConfig, OutputConfig, TrainConfig
from mlmkit.io.outputs import read_metrics
from mlmkit.training.finetune import finetune_classifier

SUBJECTS = ["the cat", "a dog", "my neighbour", "our team", "the weather", "a young engineer", "this phone"]
OBJECTS = ["the morning train", "a quiet street", "the new station", "rainy afternoons", "autonomous vehicles"]
# the verb alone decides the label
VERBS = {"positive": ["likes", "admires"], "negative": ["hates", "ignores"], "neutral": ["waits for", "talks about"]}


def keyword_rows(n, seed):
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        label = rng.choice(sorted(VERBS))
        # pad some sentences so lengths vary and length grouping has work to do
        tail = " and then " + " ".join(rng.choice(OBJECTS) for _ in range(rng.randint(0, 3)))
        rows.append((f"{rng.choice(SUBJECTS)} {rng.choice(VERBS[label])} {rng.choice(OBJECTS)}{tail}", label))
    return rows


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def keyword_csv(tmp_path_factory):
    path = tmp_path_factory.mktemp("labelled") / "keywords.csv"
    lines = ["text,label"] + [f'"{text}",{label}' for text, label in keyword_rows(480, seed=0)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def tiny_config(model_dir, data_path, out, **train):
    defaults = dict(max_steps=150, batch_size=16, lr=5e-3, warmup_ratio=0.1, log_every=10, eval_batch_size=64,
                    mixed_precision="no")
    defaults.update(train)
    return FinetuneConfig(
        model=ModelConfig(name_or_path=str(model_dir), attn_implementation=None),
        data=FinetuneDataConfig(dataset=str(data_path), max_seq_length=32, eval_fraction=0.25),
        train=TrainConfig(**defaults),
        output=OutputConfig(dir=str(out)),
    )


@pytest.fixture(scope="module")
def no_dropout_model_dir(tmp_path_factory, wordpiece_tokenizer):
    """The tiny BERT without dropout: with 10% dropout, 150 steps at this width leave some model seeds stuck with
    two of the three classes separated (accuracy 0.67); without it, seeds 0-5 all reach 1.0."""
    path = tmp_path_factory.mktemp("tiny-bert-no-dropout")
    build_tiny_bert(wordpiece_tokenizer, dropout=0.0).save_pretrained(path)
    wordpiece_tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def trained(no_dropout_model_dir, keyword_csv, tmp_path_factory):
    out = tmp_path_factory.mktemp("sentiment")
    cfg = tiny_config(no_dropout_model_dir, keyword_csv, out)
    return cfg, finetune_classifier(cfg)


def test_accuracy_rises_above_chance(trained):
    _, result = trained
    assert result.steps == 150
    assert result.label_names == ["negative", "neutral", "positive"]
    assert result.data["eval_examples"] == 120 and result.data["train_examples"] == 360
    # three balanced classes: chance and the majority baseline are about 1/3
    assert result.baseline["accuracy"] < 0.45
    assert result.accuracy > 0.8, result
    assert result.macro_f1 > 0.8
    assert sum(sum(row) for row in result.confusion_matrix) == 120
    assert sum(row["support"] for row in result.per_class) == 120
    assert result.final_loss < 0.6


def test_output_directory_contents(trained):
    cfg, result = trained
    out = result.output_dir
    files = {p.name for p in Path(out).iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "config.yaml", "metrics.jsonl",
            "eval_results.json"} <= files
    config = json.loads((Path(out) / "config.json").read_text())
    assert config["id2label"] == {"0": "negative", "1": "neutral", "2": "positive"}
    assert config["label2id"] == {"negative": 0, "neutral": 1, "positive": 2}
    records = read_metrics(f"{out}/metrics.jsonl")
    train_steps = [r["step"] for r in records if r["split"] == "train"]
    assert train_steps == [1, *range(10, 151, 10)]
    assert all(r["examples_per_s"] > 0 and r["lr"] >= 0 for r in records if r["split"] == "train")
    final = [r for r in records if r["split"] == "eval"][-1]
    assert final["accuracy"] == pytest.approx(result.accuracy)
    assert final["baseline_accuracy"] == pytest.approx(result.baseline["accuracy"])
    saved = json.loads((Path(out) / "eval_results.json").read_text())
    assert saved["macro_f1"] == pytest.approx(result.macro_f1)


def test_pipeline_predicts_label_names(trained):
    from transformers import pipeline

    _, result = trained
    classifier = pipeline("text-classification", model=result.output_dir, device="cpu")
    predictions = classifier(["the cat admires the new station", "a dog hates rainy afternoons",
                              "our team waits for the morning train"])
    assert [p["label"] for p in predictions] == ["positive", "negative", "neutral"]
    assert all(0.0 < p["score"] <= 1.0 for p in predictions)


def test_batches_are_padded_to_multiples_of_eight(trained, monkeypatch):
    """Dynamic padding: every training batch is as long as its longest text, rounded up to 8."""
    from transformers import DataCollatorWithPadding

    cfg, _ = trained
    widths = []
    original = DataCollatorWithPadding.__call__

    def spy(self, features):
        batch = original(self, features)
        longest = max(len(f["input_ids"]) for f in features)
        widths.append((batch["input_ids"].shape[1], longest))
        return batch

    monkeypatch.setattr(DataCollatorWithPadding, "__call__", spy)
    cfg.train.max_steps = 4
    cfg.output.overwrite = True
    finetune_classifier(cfg)
    assert widths
    assert all(width % 8 == 0 and longest <= width < longest + 8 for width, longest in widths)


def test_integer_labels_and_accumulation(tiny_model_dir, tmp_path):
    """Integer labels keep their values as names; accumulation counts optimizer steps, not micro-batches."""
    names = {"negative": 0, "neutral": 1, "positive": 2}
    path = tmp_path / "ints.jsonl"
    path.write_text("\n".join(json.dumps({"review": t, "stars": names[y]}) for t, y in keyword_rows(120, seed=1)))
    cfg = tiny_config(tiny_model_dir, path, tmp_path / "out", max_steps=-1, num_epochs=2.0, grad_accum=2,
                      batch_size=15)
    cfg.data.text_column, cfg.data.label_column = "review", "stars"
    result = finetune_classifier(cfg)
    # 90 training examples / 15 = 6 micro-batches = 3 optimizer steps per epoch; 2 epochs
    assert result.steps == 6 and result.epochs == pytest.approx(2.0)
    assert result.label_names == ["0", "1", "2"]
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config["id2label"] == {"0": "0", "1": "1", "2": "2"}
    assert torch.isfinite(torch.tensor(result.final_loss))


def test_time_budget_stops_early_and_still_saves(tiny_model_dir, keyword_csv, tmp_path):
    cfg = tiny_config(tiny_model_dir, keyword_csv, tmp_path / "budget", max_steps=100_000, max_time="0.5")
    result = finetune_classifier(cfg)
    assert result.stopped_by_time and 0 < result.steps < 100_000
    assert result.train_seconds >= 0.5
    assert (tmp_path / "budget" / "model.safetensors").is_file()
    assert sum(map(sum, result.confusion_matrix)) == 120


def test_checkpoint_options_are_rejected(tiny_model_dir, keyword_csv, tmp_path):
    from mlmkit.errors import UserError

    cfg = tiny_config(tiny_model_dir, keyword_csv, tmp_path / "ck", checkpoint_every=10)
    with pytest.raises(UserError, match="pre-training"):
        finetune_classifier(cfg)
    assert not (tmp_path / "ck").exists()
