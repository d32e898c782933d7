import json
import math

import pytest
import torch

from mlmkit.config import PretrainConfig, load_config
from mlmkit.io.outputs import read_metrics
from mlmkit.training.pretrain import pretrain


def tiny_config(model_dir, corpus_file, out, *extra):
    return load_config(PretrainConfig, None, [
        f"model.name_or_path={model_dir}", f"data.source={corpus_file}", "data.max_seq_length=32",
        "data.eval_fraction=0.2", "train.max_steps=25", "train.batch_size=8", "train.lr=3e-3",
        "train.log_every=5", "train.eval_every=10", f"output.dir={out}", *extra,
    ])


@pytest.fixture(scope="module")
def trained(tiny_model_dir, corpus_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "mlm"
    result = pretrain(tiny_config(tiny_model_dir, corpus_file, out))
    return result, out


def test_training_lowers_held_out_loss(trained):
    result, _ = trained
    assert result.steps == 25
    # 25 steps of a 2-layer, 32-wide model: the held-out loss falls by 0.42-0.45 nats over model seeds 0-3
    assert result.after["eval_loss"] < result.before["eval_loss"] - 0.25
    assert result.after["masked_accuracy"] > result.before["masked_accuracy"]
    assert math.isclose(result.after["perplexity"], math.exp(result.after["eval_loss"]), rel_tol=1e-6)
    assert result.tokens_per_second > 0


def test_run_directory_is_a_standard_model_dir(trained):
    from transformers import AutoModelForMaskedLM, AutoTokenizer, pipeline

    _, out = trained
    assert (out / "model.safetensors").is_file() and (out / "config.yaml").is_file()
    assert not list(out.glob(".staging-*"))
    model = AutoModelForMaskedLM.from_pretrained(out)
    tokenizer = AutoTokenizer.from_pretrained(out)
    fill = pipeline("fill-mask", model=model, tokenizer=tokenizer)
    assert len(fill(f"the cat {tokenizer.mask_token} the morning train.", top_k=3)) == 3


def test_metrics_file_records_training_and_evaluation(trained):
    _, out = trained
    records = read_metrics(out / "metrics.jsonl")
    evals = [r for r in records if r["split"] == "eval"]
    assert [r["step"] for r in evals] == [0, 10, 20, 25]
    train = [r for r in records if r["split"] == "train"]
    assert [r["step"] for r in train] == [1, 5, 10, 15, 20, 25]
    assert all(r["mask_ratio"] == 0.15 and r["lr"] >= 0 and r["tokens_per_s"] > 0 for r in train)
    json.dumps(records)


def test_eval_masks_do_not_depend_on_training_strategy(tiny_model_dir, corpus_file, tmp_path):
    """Before training, two runs with different strategies see identical eval numbers."""
    a = pretrain(tiny_config(tiny_model_dir, corpus_file, tmp_path / "a", "train.max_steps=1"))
    b = pretrain(tiny_config(tiny_model_dir, corpus_file, tmp_path / "b", "train.max_steps=1",
                             "masking.ratio=0.4", "masking.exact=true"))
    assert a.before == b.before


def _same_weights(a, b):
    from safetensors.torch import load_file

    wa, wb = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    assert wa.keys() == wb.keys()
    return all(torch.allclose(wa[k], wb[k], atol=1e-5) for k in wa)


def test_sparse_and_full_head_train_identically(tiny_model_dir, corpus_file, tmp_path):
    # (the last-layer shortcut draws dropout masks for fewer positions, so it is compared without dropout below)
    sparse = pretrain(tiny_config(tiny_model_dir, corpus_file, tmp_path / "s", "train.max_steps=3",
                                  "model.sparse_last_layer=false"))
    full = pretrain(tiny_config(tiny_model_dir, corpus_file, tmp_path / "f", "train.max_steps=3",
                                "model.sparse_head=false"))
    assert sparse.after["eval_loss"] == pytest.approx(full.after["eval_loss"], rel=1e-4)
    assert _same_weights(tmp_path / "s", tmp_path / "f")


def test_last_layer_at_predicted_positions_trains_like_the_full_layer(wordpiece_tokenizer, corpus_file, tmp_path):
    from conftest import build_tiny_bert

    model_dir = tmp_path / "no-dropout"
    build_tiny_bert(wordpiece_tokenizer, dropout=0.0).save_pretrained(model_dir)
    wordpiece_tokenizer.save_pretrained(model_dir)
    pruned = pretrain(tiny_config(model_dir, corpus_file, tmp_path / "p", "train.max_steps=3"))
    whole = pretrain(tiny_config(model_dir, corpus_file, tmp_path / "w", "train.max_steps=3",
                                 "model.sparse_last_layer=false"))
    assert pruned.before == pytest.approx(whole.before, rel=1e-5)
    assert pruned.after["eval_loss"] == pytest.approx(whole.after["eval_loss"], rel=1e-4)
    assert _same_weights(tmp_path / "p", tmp_path / "w")


def test_data_notices_print_paths_verbatim_and_the_result_names_the_run(tiny_model_dir, corpus_file, tmp_path):
    """A path with brackets is printed as it is (not read as rich markup) in the prepared-corpus notice."""
    import io

    from rich.console import Console

    prepared = tmp_path / "cache [v2]"
    outputs = []
    for run in ("first", "second"):
        out = io.StringIO()
        result = pretrain(tiny_config(tiny_model_dir, corpus_file, tmp_path / run, "train.max_steps=1",
                                      "train.eval_every=0", f"data.cache_dir={prepared}"),
                          console=Console(file=out, width=1000, color_system=None))
        assert result.output_dir == str(tmp_path / run)
        outputs.append(out.getvalue())
    assert "data: reusing the prepared corpus" not in outputs[0]
    (line,) = [line for line in outputs[1].splitlines() if line.startswith("data: reusing the prepared corpus in ")]
    assert line.endswith(result.data["prepared_path"]) and "cache [v2]" in line
