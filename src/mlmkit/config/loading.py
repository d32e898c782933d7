"""Recipe YAML + ``section.key=value`` overrides -> one validated dataclass config.

OmegaConf structured configs do the merging and type checking; this module adds
recipe lookup (path first, then packaged name), error messages that name the valid
keys, and :func:`validate_config`: the field constraints declared in
:mod:`mlmkit.config.constraints` plus the rules below that tie fields together or to
the model and data they name. Loading a config checks everything that needs no file;
a run checks the rest (model directory, corpus files, masking strategy, sequence length
against the model's positions) as its first act, before any model or data is touched.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from mlmkit.config.constraints import FIELD_CHECKS
from mlmkit.config.durations import parse_duration
from mlmkit.config.schema import FinetuneConfig, PretrainConfig
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
        except Exception as exc:  # yaml errors come in several types (and span several lines)
            detail = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
            raise UserError(f"cannot read recipe {path}: {detail or type(exc).__name__}") from exc
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
        config = OmegaConf.to_object(merged)
    except OmegaConfBaseException as exc:
        message = str(exc).splitlines()[0]
        key = getattr(exc, "full_key", None)
        raise UserError(f"invalid config{f' value for {key}' if key else ''}: {message}") from exc
    validate_config(config)
    return config


def _check_fields(node: Any, where: str) -> None:
    """Apply :data:`~mlmkit.config.constraints.FIELD_CHECKS` to a config dataclass and its sections."""
    checks = FIELD_CHECKS.get(type(node), {})
    for f in dataclasses.fields(node):
        value = getattr(node, f.name)
        if dataclasses.is_dataclass(value):
            _check_fields(value, f"{where}{f.name}.")
        elif f.name in checks and not checks[f.name].passes(value):
            raise UserError(f"{where}{f.name}={value!r} is not valid: it must be {checks[f.name].allowed()}")


def _pretrain_steps(cfg: PretrainConfig) -> None:
    if cfg.train.max_steps < 1:
        raise UserError(f"train.max_steps={cfg.train.max_steps} is not valid for pre-training: it must be at least 1")


def _finetune_steps(cfg: FinetuneConfig) -> None:
    if cfg.train.max_steps == -1 and cfg.train.num_epochs <= 0:
        raise UserError(f"train.num_epochs={cfg.train.num_epochs!r} is not valid with train.max_steps=-1: it must be "
                        "greater than 0 (or set train.max_steps to at least 1)")
    tcfg = cfg.train
    if tcfg.checkpoint_every or tcfg.checkpoint_minutes or tcfg.resume:
        raise UserError("checkpoints and resume (train.checkpoint_every, train.checkpoint_minutes, train.resume) "
                        "are for pre-training; fine-tuning runs are short and start over")


def _time_budget(cfg: PretrainConfig | FinetuneConfig) -> None:
    parse_duration(cfg.train.max_time)


#: rules that involve several fields, per command
CROSS_CHECKS: dict[type, tuple[Callable[[Any], None], ...]] = {
    PretrainConfig: (_pretrain_steps, _time_budget),
    FinetuneConfig: (_finetune_steps, _time_budget),
}


def validate_config(config: Any) -> None:
    """Check a resolved config: every field's declared range or choices, then the cross-field rules.

    What the config names (the model directory, corpus files, the masking strategy) is checked
    by :func:`mlmkit.training.validation.validate_run_config` as a run's first act.

    Raises:
        UserError: One line naming the key, the bad value and what is allowed.
    """
    _check_fields(config, "")
    for rule in CROSS_CHECKS.get(type(config), ()):
        rule(config)


def config_to_yaml(config: Any) -> str:
    """Render a resolved config as YAML (what ``config.yaml`` in a run directory holds)."""
    return OmegaConf.to_yaml(OmegaConf.structured(config))


def config_to_dict(config: Any) -> dict[str, Any]:
    """A resolved config as plain containers."""
    return OmegaConf.to_container(OmegaConf.structured(config), resolve=True)
