"""Recipe YAML + ``section.key=value`` overrides -> one validated dataclass config.

OmegaConf structured configs do the merging and type checking; this module adds
recipe lookup (path first, then packaged name) and error messages that name the
valid keys.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from mlmkit.errors import UserError

T = TypeVar("T")

#: sections whose keys are free-form (validated later by the component they configure)
OPEN_SECTIONS = {"masking"}


def recipes_root() -> Path:
    """The packaged recipes folder (inside an installed wheel, or the source checkout's ``recipes/``)."""
    here = Path(__file__).resolve().parent.parent
    for candidate in (here / "recipes", here.parent.parent / "recipes"):
        if candidate.is_dir():
            return candidate
    return here / "recipes"


def find_recipe(recipe: str, kind: str) -> Path:
    """Resolve ``--recipe``: an existing path first, then a packaged recipe name under ``kind``."""
    path = Path(recipe).expanduser()
    if path.is_file():
        return path
    root = recipes_root() / kind
    for candidate in (root / recipe, root / f"{recipe}.yaml", root / f"{recipe}.yml"):
        if candidate.is_file():
            return candidate
    names = sorted(p.stem for p in root.glob("*.y*ml")) if root.is_dir() else []
    raise UserError(f"recipe {recipe!r} not found as a file or a packaged {kind} recipe; packaged: {', '.join(names)}")


def _check_keys(schema: Any, values: Mapping[str, Any], where: str) -> None:
    """Raise a UserError for keys the dataclass ``schema`` does not have, listing valid ones."""
    fields = {f.name: f for f in dataclasses.fields(schema)}
    for key, value in values.items():
        if key not in fields:
            valid = ", ".join(sorted(fields))
            scope = f" in {where.rstrip('.')}" if where else ""
            raise UserError(f"unknown config key '{where}{key}'; valid keys{scope}: {valid}")
        default = getattr(schema, key) if not isinstance(schema, type) else None
        if key in OPEN_SECTIONS and not where:
            continue
        if isinstance(value, Mapping):
            sub = default if dataclasses.is_dataclass(default) else None
            if sub is None:
                f = fields[key]
                sub = f.default_factory() if f.default_factory is not dataclasses.MISSING else None
            if dataclasses.is_dataclass(sub):
                _check_keys(sub, value, f"{where}{key}.")


def parse_overrides(overrides: Sequence[str]) -> DictConfig:
    """Parse ``section.key=value`` strings (values are YAML: numbers, booleans, lists, null)."""
    bad = [o for o in overrides if "=" not in o or o.startswith("=")]
    if bad:
        raise UserError(f"overrides must look like section.key=value, got {bad[0]!r}")
    try:
        return OmegaConf.from_dotlist(list(overrides))
    except OmegaConfBaseException as exc:
        raise UserError(f"cannot parse overrides: {exc}") from exc


def load_config(schema: type[T], recipe: str | None, overrides: Sequence[str] = (), kind: str = "pretrain") -> T:
    """Build the resolved config of a command.

    Args:
        schema: The dataclass of the command (e.g. ``PretrainConfig``).
        recipe: Recipe path or packaged name, or None for the defaults.
        overrides: ``section.key=value`` strings applied last.
        kind: Recipe folder to search for packaged names (``pretrain``, ``finetune``).
    """
    layers: list[DictConfig] = []
    if recipe:
        path = find_recipe(recipe, kind)
        try:
            loaded = OmegaConf.load(path)
        except Exception as exc:  # yaml errors come in several types
            raise UserError(f"cannot read recipe {path}: {exc}") from exc
        if not isinstance(loaded, DictConfig):
            raise UserError(f"recipe {path} must be a mapping of sections")
        layers.append(loaded)
    if overrides:
        layers.append(parse_overrides(overrides))
    instance = schema()
    for layer in layers:
        _check_keys(instance, OmegaConf.to_container(layer, resolve=True), "")
    base = OmegaConf.structured(instance)
    try:
        merged = OmegaConf.merge(base, *layers)
        return OmegaConf.to_object(merged)
    except OmegaConfBaseException as exc:
        message = str(exc).splitlines()[0]
        raise UserError(f"invalid config: {message}") from exc


def config_to_yaml(config: Any) -> str:
    """Render a resolved config as YAML (what ``config.yaml`` in a run directory holds)."""
    return OmegaConf.to_yaml(OmegaConf.structured(config))


def config_to_dict(config: Any) -> dict[str, Any]:
    """A resolved config as plain containers."""
    return OmegaConf.to_container(OmegaConf.structured(config), resolve=True)
