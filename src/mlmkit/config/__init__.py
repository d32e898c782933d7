"""Typed configs, recipes and overrides."""

from mlmkit.config.loading import (
    config_to_dict,
    config_to_yaml,
    find_recipe,
    load_config,
    recipes_root,
    validate_config,
)
from mlmkit.config.schema import EMBEDDED, FinetuneConfig, PretrainConfig

__all__ = [
    "EMBEDDED",
    "FinetuneConfig",
    "PretrainConfig",
    "config_to_dict",
    "config_to_yaml",
    "find_recipe",
    "load_config",
    "recipes_root",
    "validate_config",
]
