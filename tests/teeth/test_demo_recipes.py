"""Every packaged ``demo*`` pre-training recipe runs two shortened steps with its own strategy.

The recipes are loaded as users load them (``--recipe NAME``), shortened by overrides (64 tweets,
batch 4, 2 steps); the files the PMI and token-weighted recipes expect under ``runs/demo/`` are
replaced by small ones written here. The masked batches are recorded to check that the loop used the
recipe's strategy, and that the run directory loads back as a standard masked-LM model.
"""

from __future__ import annotations

import json

import pytest
from teeth_helpers import predicted, record_masked_batches

from mlmkit.config import PretrainConfig, load_config, recipes_root
from mlmkit.io.outputs import read_metrics
from mlmkit.masking.pmi_vocab import PmiVocabulary
from mlmkit.training.pretrain import pretrain

DEMOS = sorted(p.stem for p in (recipes_root() / "pretrain").glob("demo*.yaml"))

pytestmark = pytest.mark.slow


def test_there_are_demo_recipes():
    assert {"demo", "demo-pmi", "demo-token-weighted", "demo-pos"} <= set(DEMOS)


def shortened(recipe: str, out, side_files) -> list[str]:
    overrides = ["data.max_documents=64", "data.eval_max_blocks=4", "train.max_steps=2", "train.batch_size=4",
                 "train.log_every=1", "train.eval_batch_size=4", f"output.dir={out}"]
    masking = load_config(PretrainConfig, recipe).masking
    if "vocab" in masking:
        overrides.append(f"masking.vocab={side_files / 'pmi-vocab.json'}")
    if "weights_file" in masking:
        overrides.append(f"masking.weights_file={side_files / 'token-weights.json'}")
    return overrides


@pytest.fixture(scope="module")
def side_files(tmp_path_factory):
    """A tiny PMI vocabulary and a token-weight table for the embedded model's tokenizer."""
    from transformers import AutoTokenizer

    from mlmkit.data.embedded import embedded_model_dir

    root = tmp_path_factory.mktemp("demo-side-files")
    tokenizer = AutoTokenizer.from_pretrained(embedded_model_dir())
    PmiVocabulary(ngrams={2: [(("self", "driving"), 6.0, 40), (("electric", "car"), 5.0, 40)]}, max_n=2,
                  min_count=1, word_splitter="embedded").save(root / "pmi-vocab.json")
    weights = [1.0] * len(tokenizer)
    (root / "token-weights.json").write_text(json.dumps({"format": "mlmkit-token-weights", "weights": weights}))
    return root


@pytest.mark.parametrize("recipe", DEMOS)
def test_demo_recipe_runs_two_steps_with_its_strategy(recipe, side_files, tmp_path, monkeypatch):
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    out = tmp_path / "run"
    cfg = load_config(PretrainConfig, recipe, shortened(recipe, out, side_files))
    records = record_masked_batches(monkeypatch)
    result = pretrain(cfg)
    assert result.steps == 2 and result.data["documents"] == 64
    assert {r["strategy"] for r in records} == {cfg.masking.get("name", "random")}
    assert [r["step"] for r in records] == [0, 1] and all(bool(predicted(r).any()) for r in records)
    train = [r for r in read_metrics(out / "metrics.jsonl") if r["split"] == "train"]
    assert [r["step"] for r in train] == [1, 2]
    model = AutoModelForMaskedLM.from_pretrained(out)  # a standard model directory, with its tokenizer
    assert model.config.vocab_size == len(AutoTokenizer.from_pretrained(out))
