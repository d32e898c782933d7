"""Every packaged recipe must load into its command's config."""

import pytest

from mlmkit.config import FinetuneConfig, PretrainConfig, load_config, recipes_root
from mlmkit.masking.registry import get_strategy_class

SCHEMAS = {"pretrain": PretrainConfig, "finetune": FinetuneConfig}
RECIPES = sorted(p for p in recipes_root().rglob("*.y*ml") if p.parent.name in SCHEMAS)


def test_there_are_recipes():
    assert any(p.parent.name == "pretrain" for p in RECIPES)


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_recipe_loads(path):
    text = path.read_text()
    assert text.lstrip().startswith("#"), "recipes open with a comment showing how to run them"
    cfg = load_config(SCHEMAS[path.parent.name], str(path))
    if path.parent.name == "pretrain":
        get_strategy_class(cfg.masking.get("name", "random"))
        assert cfg.train.max_steps > 0


ACCELERATE = sorted((recipes_root() / "accelerate").glob("*.yaml"))


@pytest.mark.parametrize("path", ACCELERATE, ids=lambda p: p.name)
def test_accelerate_configs_are_valid(path):
    import yaml
    from accelerate.utils import DistributedType

    text = path.read_text()
    assert text.startswith("#") and "mlmkit pretrain --accelerate-config" in text
    config = yaml.safe_load(text)
    assert config["distributed_type"] in {t.value for t in DistributedType}
    assert config["num_processes"] >= 1 and config["mixed_precision"] in {"no", "bf16", "fp16"}
