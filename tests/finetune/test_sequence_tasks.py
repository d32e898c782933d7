"""classify beyond single texts: sentence pairs, multi-label and regression loops on tiny BERTs built here.

Each synthetic task puts its whole signal in a few keywords, so a 2-layer, 32-wide BERT without dropout
trained a fixed number of steps with a fixed seed gets it; the label encodings and model heads are checked
exactly.
"""

import json
import random

import pytest
from tiny_task_models import save_no_dropout_bert

from mlmkit.config.schema import FinetuneConfig, FinetuneDataConfig, ModelConfig, OutputConfig, TrainConfig
from mlmkit.data.labelled import encode_multi_labels, encode_scores, load_labelled_splits, tokenize_labelled
from mlmkit.errors import UserError
from mlmkit.training.finetune import finetune_classifier

SUBJECTS = ["the cat", "a dog", "my neighbour", "our team", "the weather", "this phone"]
OBJECTS = ["the morning train", "a quiet street", "the new station", "rainy afternoons"]
TOPICS = ["train", "street", "station"]  # multi-label: each present word is a label

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, wordpiece_tokenizer):
    return save_no_dropout_bert(tmp_path_factory.mktemp("tiny-bert-no-dropout"), wordpiece_tokenizer)


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def config(model_dir, data, out, steps=150, **data_options):
    return FinetuneConfig(
        model=ModelConfig(name_or_path=str(model_dir), attn_implementation=None),
        data=FinetuneDataConfig(dataset=str(data), max_seq_length=32, eval_fraction=0.25, **data_options),
        train=TrainConfig(max_steps=steps, batch_size=16, lr=5e-3, warmup_ratio=0.1, log_every=50,
                          eval_batch_size=64, mixed_precision="no"),
        output=OutputConfig(dir=str(out)),
    )


def pair_rows(n, seed):
    """The first text carries no signal; the label is whether the second says 'likes' or 'hates'."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        label = rng.choice(["agree", "disagree"])
        verb = "likes" if label == "agree" else "hates"
        rows.append({"premise": f"{rng.choice(SUBJECTS)} talks about {rng.choice(OBJECTS)}",
                     "hypothesis": f"{rng.choice(SUBJECTS)} {verb} it", "label": label})
    return rows


def test_pair_tokenization_keeps_both_texts(wordpiece_tokenizer, tmp_path):
    data = write_jsonl(tmp_path / "pairs.jsonl", pair_rows(40, seed=1))
    cfg = FinetuneDataConfig(dataset=str(data), text_column="premise", text_pair_column="hypothesis",
                             eval_fraction=0.25)
    splits = load_labelled_splits(cfg, seed=0)
    assert splits.train.column_names == ["text", "text_pair", "label"]
    encoded = tokenize_labelled(splits.train, wordpiece_tokenizer, max_length=8)
    sep = wordpiece_tokenizer.sep_token_id
    for ids in encoded["input_ids"]:
        first, last = ids.index(sep), len(ids) - 1
        assert len(ids) == 8 and ids[last] == sep and ids.count(sep) == 2
        assert first >= 2 and last - first >= 2  # cut to 8 tokens, yet both texts keep some


@pytest.mark.slow
def test_pair_classification_learns_from_the_second_text(model_dir, tmp_path):
    data = write_jsonl(tmp_path / "pairs.jsonl", pair_rows(320, seed=0))
    result = finetune_classifier(config(model_dir, data, tmp_path / "out", text_column="premise",
                                        text_pair_column="hypothesis"))
    assert result.task == "single_label" and result.label_names == ["agree", "disagree"]
    assert result.accuracy == 1.0 and result.baseline["accuracy"] < 0.6
    assert result.primary_metric == "accuracy" and result.metrics["accuracy"] == result.accuracy


def topic_rows(n, seed):
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        present = sorted(t for t in TOPICS if rng.random() < 0.4)
        words = [f"the {t}" for t in present] or ["nothing"]
        rng.shuffle(words)
        rows.append({"text": f"{rng.choice(SUBJECTS)} talks about {' and '.join(words)}", "labels": ";".join(present)})
    return rows


def test_multi_label_encoding_from_lists_and_separator():
    import datasets

    listed = datasets.Dataset.from_dict({"text": ["a", "b", "c", "d"],
                                         "labels": [["x", "y"], [], ["y"], None]})
    joined = datasets.Dataset.from_dict({"text": ["a", "b", "c", "d"], "labels": ["x;y", "", "y", None]})
    from_lists, names = encode_multi_labels(listed, "text", "labels", "lists")
    from_strings, same_names = encode_multi_labels(joined, "text", "labels", "strings", separator=";")
    assert names == same_names == ["x", "y"]
    assert from_lists["label"] == from_strings["label"] == [[1.0, 1.0], [0.0, 0.0], [0.0, 1.0]]  # None dropped
    with pytest.raises(UserError, match="label_separator"):
        encode_multi_labels(joined, "text", "labels", "strings")


@pytest.mark.slow
def test_multi_label_loop_tunes_its_threshold(model_dir, tmp_path):
    data = write_jsonl(tmp_path / "topics.jsonl", topic_rows(320, seed=0))
    result = finetune_classifier(config(model_dir, data, tmp_path / "out", steps=300, label_column="labels",
                                        task="multi_label", label_separator=";"))
    assert result.task == "multi_label" and result.label_names == sorted(TOPICS)
    # fixed seed, fixed steps: the keywords are found (all but the odd decision), a constant guess is far off
    assert result.metrics["micro_f1"] > 0.95 and result.metrics["macro_f1"] > 0.95
    assert result.baseline["micro_f1"] < 0.6
    assert result.data["threshold_tuned"] is True and 0 < result.metrics["threshold"] < 1
    assert [row["label"] for row in result.per_class] == sorted(TOPICS)
    saved = json.loads((tmp_path / "out" / "config.json").read_text())
    assert saved["problem_type"] == "multi_label_classification"
    assert saved["id2label"] == {str(i): name for i, name in enumerate(sorted(TOPICS))}


@pytest.mark.slow
def test_multi_label_fixed_threshold_is_used(model_dir, tmp_path):
    data = write_jsonl(tmp_path / "topics.jsonl", topic_rows(80, seed=2))
    result = finetune_classifier(config(model_dir, data, tmp_path / "out", steps=2, label_column="labels",
                                        task="multi_label", label_separator=";", threshold=0.3))
    assert result.metrics["threshold"] == 0.3 and result.data["threshold_tuned"] is False


def score_rows(n, seed):
    """The score is the number of 'great' among three adjective slots (0..3); the rest is noise."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        slots = [rng.choice(["great", "quiet"]) for _ in range(3)]
        rows.append({"sentence1": f"{rng.choice(SUBJECTS)} saw a {slots[0]} street",
                     "sentence2": f"a {slots[1]} and {slots[2]} station", "score": float(slots.count("great"))})
    return rows


def test_scores_must_be_numeric():
    import datasets

    data = datasets.Dataset.from_dict({"text": ["a", "b", "c"], "score": ["1.5", None, "2"]})
    encoded, names = encode_scores(data, "text", "score", "scores")
    assert names == ["score"] and encoded["label"] == [1.5, 2.0]
    with pytest.raises(UserError, match="numeric labels"):
        encode_scores(datasets.Dataset.from_dict({"text": ["a"], "score": ["high"]}), "text", "score", "x")


@pytest.mark.slow
def test_regression_loop_ranks_the_scores(model_dir, tmp_path):
    data = write_jsonl(tmp_path / "scores.jsonl", score_rows(320, seed=0))
    result = finetune_classifier(config(model_dir, data, tmp_path / "out", steps=200, text_column="sentence1",
                                        text_pair_column="sentence2", label_column="score", task="regression"))
    assert result.task == "regression" and result.primary_metric == "pearson"
    assert result.accuracy is None and result.macro_f1 is None and result.confusion_matrix == []
    # fixed seed and steps: the scores are ranked well; a constant guess (the training mean) errs far more
    assert result.metrics["pearson"] > 0.85 and result.metrics["spearman"] > 0.85, result.metrics
    assert result.metrics["mse"] < result.baseline["mse"] / 3, (result.metrics, result.baseline)
    saved = json.loads((tmp_path / "out" / "config.json").read_text())
    assert saved["problem_type"] == "regression" and saved["id2label"] == {"0": "score"}


def test_extra_eval_splits_reuse_the_tuned_threshold(model_dir, tmp_path, monkeypatch):
    """A Hub-style dataset (stood in for by in-memory splits): evaluation split plus one more, scored after training."""
    import datasets

    import mlmkit.data.labelled as labelled

    splits = {name: topic_rows(n, seed) for name, n, seed in (("train", 64, 0), ("validation", 24, 1),
                                                              ("validation_other", 20, 2))}

    def read_split(cfg, split):
        rows = splits[split]
        return datasets.Dataset.from_dict({key: [row[key] for row in rows] for key in rows[0]})

    monkeypatch.setattr(labelled, "_read_split", read_split)
    cfg = config(model_dir, "toy/topics", tmp_path / "out", steps=2, label_column="labels", task="multi_label",
                 label_separator=";", eval_split="validation", extra_eval_splits=["validation_other"])
    result = finetune_classifier(cfg)
    assert result.eval_source == "validation" and result.data["eval_examples"] == 24
    extra = result.extra_evals["validation_other"]
    assert extra["examples"] == 20 and extra["threshold"] == result.metrics["threshold"]
    assert set(extra) >= {"micro_f1", "macro_f1", "accuracy", "eval_loss"}
