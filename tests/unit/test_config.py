import pytest

from mlmkit.config import FinetuneConfig, PretrainConfig, config_to_yaml, find_recipe, load_config
from mlmkit.errors import UserError


def test_defaults_then_recipe_then_overrides(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("train:\n  lr: 0.002\n  max_steps: 7\nmasking:\n  name: random\n  ratio: 0.2\n")
    cfg = load_config(PretrainConfig, str(recipe), ["train.lr=0.003", "masking.exact=true"])
    assert cfg.train.lr == 0.003  # CLI beats recipe
    assert cfg.train.max_steps == 7  # recipe beats default
    assert cfg.train.batch_size == PretrainConfig().train.batch_size  # default kept
    assert cfg.masking == {"name": "random", "ratio": 0.2, "exact": True}


def test_unknown_key_names_valid_keys():
    with pytest.raises(UserError) as err:
        load_config(PretrainConfig, None, ["train.learning_rate=1"])
    message = str(err.value)
    assert "train.learning_rate" in message
    for key in ("lr", "max_steps", "batch_size"):
        assert key in message


def test_unknown_section_and_bad_type_and_bad_syntax():
    with pytest.raises(UserError, match="valid keys: data, masking, model, output, .*train"):
        load_config(PretrainConfig, None, ["optim.lr=1"])
    with pytest.raises(UserError, match="invalid config"):
        load_config(PretrainConfig, None, ["train.max_steps=many"])
    with pytest.raises(UserError, match="section.key=value"):
        load_config(PretrainConfig, None, ["train.lr"])


def test_unknown_key_in_recipe_file(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("data:\n  sauce: embedded\n")
    with pytest.raises(UserError, match="'data.sauce'.*source"):
        load_config(PretrainConfig, str(recipe))


def test_recipe_lookup_by_name_and_missing():
    assert find_recipe("demo", "pretrain").name == "demo.yaml"
    with pytest.raises(UserError, match="not found"):
        find_recipe("no-such-recipe", "pretrain")


def test_resolved_config_round_trips_through_yaml(tmp_path):
    cfg = load_config(PretrainConfig, None, ["train.max_steps=3", "masking.name=random"])
    path = tmp_path / "config.yaml"
    path.write_text(config_to_yaml(cfg))
    again = load_config(PretrainConfig, str(path))
    assert again == cfg


def test_finetune_defaults_differ_from_pretrain():
    cfg = load_config(FinetuneConfig, None, [])
    assert cfg.train.max_steps == -1 and cfg.train.lr == 5e-5
