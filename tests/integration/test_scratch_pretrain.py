"""Pre-training from scratch: a tokenizer trained on the corpus, a preset model, a falling loss."""

import math

import pytest

from mlmkit.config import PretrainConfig, load_config
from mlmkit.config.schema import ModelConfig, TokenizerTrainConfig
from mlmkit.errors import UserError
from mlmkit.io.outputs import read_metrics
from mlmkit.tokenization.train import needs_trained_tokenizer, tokenizer_for_run
from mlmkit.training.pretrain import pretrain

# bert-tiny made smaller still, so a few dozen steps take seconds
SMALLER = ("model.config_overrides={hidden_size: 32, num_attention_heads: 2, intermediate_size: 64, "
           "num_hidden_layers: 1}")


def scratch_config(corpus_file, out, *extra):
    return load_config(PretrainConfig, None, [
        "model.preset=bert-tiny", SMALLER, f"data.source={corpus_file}", "data.max_seq_length=32",
        "data.eval_fraction=0.2", "tokenizer.vocab_size=200", "train.max_steps=25", "train.batch_size=8",
        "train.lr=5e-3", "train.warmup_ratio=0.1", "train.log_every=5", f"output.dir={out}", *extra,
    ])


@pytest.fixture(scope="module")
def scratch_run(corpus_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("scratch") / "run"
    return pretrain(scratch_config(corpus_file, out)), out


def test_loss_is_finite_and_falls(scratch_run):
    result, out = scratch_run
    losses = [r["loss"] for r in read_metrics(out / "metrics.jsonl") if r["split"] == "train"]
    assert len(losses) == 6 and all(math.isfinite(x) for x in losses)
    assert losses[0] > math.log(150)  # starts near uniform over the vocabulary
    assert sum(losses[-2:]) / 2 < losses[0] - 1.0
    assert result.after["eval_loss"] < result.before["eval_loss"] - 1.0


def test_most_frequent_token_baseline_is_reported(scratch_run):
    import torch

    from mlmkit.training.mlm_eval import most_frequent_token_baseline

    result, out = scratch_run
    first = read_metrics(out / "metrics.jsonl")[0]
    assert first["split"] == "eval" and 0 < first["most_frequent_accuracy"] < 0.5
    assert first["most_frequent_accuracy"] == result.before["most_frequent_accuracy"]
    assert "most_frequent_accuracy" not in result.after
    # an accuracy over the held-out tokens (a whole number of them right), and after training at least the trivial
    # predictor's: from scratch the model first learns the unigram distribution (here it matches it, 5 of 47 tokens)
    tokens = result.after["eval_tokens"]
    assert tokens == result.before["eval_tokens"] > 0
    assert result.after["masked_accuracy"] * tokens == pytest.approx(round(result.after["masked_accuracy"] * tokens))
    assert result.after["masked_accuracy"] >= first["most_frequent_accuracy"] > result.before["masked_accuracy"]
    # the function itself, on hand-made labels: token 7 is 3 of the 5 targets
    batches = [{"labels": torch.tensor([[-100, 7, 3], [7, -100, -100]])}, {"labels": torch.tensor([[7, 5, -100]])}]
    assert most_frequent_token_baseline(batches) == {"most_frequent_accuracy": 0.6, "most_frequent_token": 7}


def test_run_directory_keeps_the_trained_tokenizer(scratch_run):
    from transformers import AutoConfig, AutoModelForMaskedLM, AutoTokenizer

    _, out = scratch_run
    own = AutoTokenizer.from_pretrained(out / "tokenizer")
    saved = AutoTokenizer.from_pretrained(out)
    assert own.get_vocab() == saved.get_vocab() and own.mask_token == "[MASK]"
    config = AutoConfig.from_pretrained(out)
    assert config.vocab_size == len(own) <= 256 and config.pad_token_id == own.pad_token_id == 0
    assert (config.hidden_size, config.num_hidden_layers) == (32, 1)
    model = AutoModelForMaskedLM.from_pretrained(out)
    assert model.get_input_embeddings().num_embeddings == len(own)


def test_roberta_preset_from_scratch(corpus_file, tmp_path):
    from transformers import AutoConfig, AutoTokenizer

    out = tmp_path / "rb"
    result = pretrain(scratch_config(corpus_file, out, "model.preset=roberta-tiny", "train.max_steps=4",
                                     "tokenizer.vocab_size=320"))
    assert result.steps == 4 and math.isfinite(result.after["eval_loss"])
    tok = AutoTokenizer.from_pretrained(out)
    config = AutoConfig.from_pretrained(out)
    assert tok.convert_ids_to_tokens([0, 1, 2]) == ["<s>", "<pad>", "</s>"]
    assert config.model_type == "roberta" and config.pad_token_id == 1 and config.vocab_size == len(tok)
    assert "Ġ" in "".join(tok.get_vocab())  # RoBERTa family defaults to byte-level BPE


def test_when_a_tokenizer_is_trained(tiny_model_dir, tmp_path):
    auto = TokenizerTrainConfig()
    assert needs_trained_tokenizer(ModelConfig(preset="bert-mini"), auto)
    assert not needs_trained_tokenizer(ModelConfig(preset="bert-mini", tokenizer=str(tiny_model_dir)), auto)
    # from scratch with a checkpoint's architecture keeps that checkpoint's tokenizer unless told otherwise
    assert not needs_trained_tokenizer(ModelConfig(name_or_path=str(tiny_model_dir), from_scratch=True), auto)
    assert needs_trained_tokenizer(ModelConfig(name_or_path=str(tiny_model_dir), from_scratch=True),
                                   TokenizerTrainConfig(train=True))
    (tmp_path / "config.json").write_text((tiny_model_dir / "config.json").read_text())
    assert needs_trained_tokenizer(ModelConfig(name_or_path=str(tmp_path / "config.json"), from_scratch=True), auto)
    assert not needs_trained_tokenizer(ModelConfig(), auto)
    with pytest.raises(UserError, match="from scratch"):
        needs_trained_tokenizer(ModelConfig(), TokenizerTrainConfig(train=True))


def test_an_existing_run_tokenizer_is_reused(corpus_file, tmp_path):
    cfg = scratch_config(corpus_file, tmp_path)
    first = tokenizer_for_run(cfg, tmp_path)
    assert first.tokenizer == str(tmp_path / "tokenizer") and first.preset == "bert-tiny"
    stamp = (tmp_path / "tokenizer" / "tokenizer.json").stat().st_mtime_ns
    cfg.tokenizer.vocab_size = 999  # a resumed run must keep the vocabulary its checkpoints were trained with
    assert tokenizer_for_run(cfg, tmp_path).tokenizer == first.tokenizer
    assert (tmp_path / "tokenizer" / "tokenizer.json").stat().st_mtime_ns == stamp
