"""mlmkit.modeling.presets: sizes, overrides, and model configs that agree with the tokenizer."""

import json

import pytest

from conftest import make_corpus
from mlmkit.config.schema import ModelConfig
from mlmkit.errors import UserError
from mlmkit.modeling.loading import load_mlm_model
from mlmkit.modeling.presets import PRESETS, get_preset, model_family, preset_names, scratch_config
from mlmkit.tokenization.train import train_tokenizer


@pytest.fixture(scope="module")
def tokenizer_dirs(tmp_path_factory):
    dirs = {}
    for family, kind in (("bert", "wordpiece"), ("roberta", "bpe")):
        out = tmp_path_factory.mktemp(family)
        train_tokenizer(make_corpus(300), kind=kind, family=family, vocab_size=320).tokenizer.save_pretrained(out)
        dirs[family] = str(out)
    return dirs


def test_preset_table():
    assert preset_names() == [f"{f}-{s}" for f in ("bert", "roberta") for s in ("tiny", "mini", "small", "medium",
                                                                                  "base")]
    sizes = {name: (p.layers, p.hidden, p.heads, p.ffn) for name, p in PRESETS.items() if p.family == "bert"}
    assert sizes == {"bert-tiny": (2, 128, 2, 512), "bert-mini": (4, 256, 4, 1024), "bert-small": (4, 512, 8, 2048),
                     "bert-medium": (8, 512, 8, 2048), "bert-base": (12, 768, 12, 3072)}
    for name, preset in PRESETS.items():
        twin = PRESETS[name.replace(preset.family, "bert")]
        assert (preset.layers, preset.hidden, preset.heads, preset.ffn) == (twin.layers, twin.hidden, twin.heads,
                                                                           twin.ffn)


def test_unknown_preset_lists_the_presets():
    with pytest.raises(UserError, match="unknown model preset 'bert-huge'.*bert-tiny.*roberta-base"):
        get_preset("bert-huge")


@pytest.mark.parametrize("family", ["bert", "roberta"])
def test_special_token_ids_and_vocab_match_the_tokenizer(tokenizer_dirs, family, tmp_path):
    from transformers import AutoConfig, AutoTokenizer

    model, tokenizer, fresh = load_mlm_model(ModelConfig(preset=f"{family}-tiny", tokenizer=tokenizer_dirs[family]))
    assert fresh == [name for name, _ in model.named_parameters()]  # every weight starts fresh
    cfg = model.config
    assert cfg.vocab_size == len(tokenizer) == model.get_input_embeddings().num_embeddings
    assert (cfg.num_hidden_layers, cfg.hidden_size, cfg.num_attention_heads, cfg.intermediate_size) == (2, 128, 2,
                                                                                                        512)
    assert cfg.pad_token_id == tokenizer.pad_token_id
    assert cfg.bos_token_id == tokenizer.cls_token_id and cfg.eos_token_id == tokenizer.sep_token_id
    assert tokenizer.mask_token_id < cfg.vocab_size
    if family == "roberta":
        assert model.config.model_type == "roberta"
        assert (cfg.pad_token_id, cfg.bos_token_id, cfg.eos_token_id) == (1, 0, 2)
        # RoBERTa positions start after the padding id: 512 usable positions need 514 rows
        assert cfg.max_position_embeddings == 514 and cfg.type_vocab_size == 1 and cfg.layer_norm_eps == 1e-5
        assert model.roberta.embeddings.position_embeddings.padding_idx == 1
    else:
        assert model.config.model_type == "bert" and cfg.pad_token_id == 0 and cfg.max_position_embeddings == 512
    # the saved pair agrees too
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["vocab_size"] == len(AutoTokenizer.from_pretrained(tmp_path))
    assert AutoConfig.from_pretrained(tmp_path).pad_token_id == tokenizer.pad_token_id


def test_overrides_and_config_files(tokenizer_dirs, tmp_path):
    from transformers import AutoTokenizer, BertConfig

    tok = AutoTokenizer.from_pretrained(tokenizer_dirs["bert"])
    cfg = scratch_config(ModelConfig(preset="bert-mini", config_overrides={"num_hidden_layers": 1,
                                                                           "hidden_dropout_prob": 0.0,
                                                                           "vocab_size": 384}), tok)
    assert (cfg.num_hidden_layers, cfg.hidden_size, cfg.hidden_dropout_prob, cfg.vocab_size) == (1, 256, 0.0, 384)
    with pytest.raises(UserError, match="num_layers.*num_hidden_layers"):
        scratch_config(ModelConfig(preset="bert-tiny", config_overrides={"num_layers": 1}), tok)
    with pytest.raises(UserError, match="smaller than the tokenizer"):
        scratch_config(ModelConfig(preset="bert-tiny", config_overrides={"vocab_size": 10}), tok)
    # a plain config file instead of a preset
    BertConfig(hidden_size=48, num_attention_heads=3, num_hidden_layers=1, intermediate_size=96,
               vocab_size=99).save_pretrained(tmp_path)
    model, _, _ = load_mlm_model(ModelConfig(name_or_path=str(tmp_path / "config.json"), from_scratch=True,
                                             tokenizer=tokenizer_dirs["bert"]))
    assert model.config.hidden_size == 48 and model.config.vocab_size == len(tok)
    assert model_family(ModelConfig(name_or_path=str(tmp_path), from_scratch=True)) == "bert"
    with pytest.raises(UserError, match="heads"):
        load_mlm_model(ModelConfig(preset="bert-tiny", tokenizer=tokenizer_dirs["bert"],
                                   config_overrides={"num_attention_heads": 3}))


def test_preset_without_tokenizer_is_a_user_error():
    with pytest.raises(UserError, match="preset has no tokenizer"):
        load_mlm_model(ModelConfig(preset="roberta-tiny"))
    with pytest.raises(UserError, match="unknown model preset"):
        load_mlm_model(ModelConfig(preset="tiny"))
