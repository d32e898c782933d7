"""Three pre-training steps on the tiny model with whole_word, span, content_word, token_weighted and mixture."""

import math

import pytest
import yaml

from mlmkit.config import PretrainConfig, load_config
from mlmkit.io.outputs import read_metrics
from mlmkit.masking.token_weighted import build_weights_file
from mlmkit.training.pretrain import pretrain


def write_recipe(path, model_dir, corpus_file, out, masking: dict) -> str:
    recipe = {
        "model": {"name_or_path": str(model_dir)},
        "data": {"source": str(corpus_file), "max_seq_length": 32, "eval_fraction": 0.2},
        "masking": masking,
        "train": {"max_steps": 3, "batch_size": 8, "lr": 3.0e-3, "log_every": 1},
        "output": {"dir": str(out)},
    }
    path.write_text("# test recipe: mlmkit pretrain --recipe " + path.name + "\n" + yaml.safe_dump(recipe))
    return str(path)


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory, tiny_model_dir, corpus_file):
    path = tmp_path_factory.mktemp("weights") / "tiny-weights.json"
    summary = build_weights_file(str(corpus_file), path, model=str(tiny_model_dir))
    assert summary["output"] == str(path) and summary["tokens"] > 1000
    return path


MASKINGS = {
    "whole_word": {"name": "whole_word", "ratio": 0.2},
    "span": {"name": "span", "max_span": 5, "schedule": {"name": "linear", "start": 0.3, "end": 0.15}},
    "content_word": {"name": "content_word", "function_weight": 0.1},
    "token_weighted": {"name": "token_weighted", "whole_words": True},
    "mixture": {"name": "mixture", "strategies": [{"name": "span", "weight": 0.5},
                                                  {"name": "random", "weight": 0.5}]},
}


@pytest.mark.parametrize("name", sorted(MASKINGS))
def test_pretrain_three_steps_from_a_recipe(name, tmp_path, tiny_model_dir, corpus_file, weights_file):
    masking = dict(MASKINGS[name])
    if name == "token_weighted":
        masking["weights_file"] = str(weights_file)
    out = tmp_path / "run"
    recipe = write_recipe(tmp_path / f"{name}.yaml", tiny_model_dir, corpus_file, out, masking)
    overrides = ["masking.max_span=3", "masking.geometric_p=0.5"] if name == "span" else []
    cfg = load_config(PretrainConfig, recipe, overrides)
    assert cfg.masking == {"ratio": 0.15, **masking, **({"max_span": 3, "geometric_p": 0.5} if name == "span" else {})}
    result = pretrain(cfg)
    assert result.steps == 3 and math.isfinite(result.final_loss) and result.final_loss > 0
    assert (out / "model.safetensors").is_file()
    train = [r for r in read_metrics(out / "metrics.jsonl") if r["split"] == "train"]
    assert [r["step"] for r in train] == [1, 2, 3]
    if name == "span":  # the schedule follows the optimizer step: linear 0.30 -> 0.15 over 3 steps
        assert [r["mask_ratio"] for r in train] == pytest.approx([0.3, 0.25, 0.2])
    elif name == "mixture":
        assert train[-1]["mixture/0_span/share"] + train[-1]["mixture/1_random/share"] == pytest.approx(1.0)
    else:
        assert all(r["mask_ratio"] == masking.get("ratio", 0.15) for r in train)

