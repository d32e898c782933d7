"""Name -> masking strategy registry.

Three ways in:

* built-ins, listed below as lazy ``module:Class`` targets (imported on first use);
* ``@register_strategy("name")`` on a :class:`MaskingStrategy` subclass in code;
* the entry-point group ``mlmkit.masking`` of installed packages
  (``name = "package.module:Class"``), or a dotted ``package.module:Class`` given directly
  as the strategy name in a recipe.

Duplicate names are an error; unknown names get a "did you mean" suggestion.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Mapping
from importlib.metadata import entry_points
from typing import Any

from mlmkit.errors import UserError
from mlmkit.masking.base import MaskingStrategy

ENTRY_POINT_GROUP = "mlmkit.masking"

_BUILTINS: dict[str, str] = {
    "random": "mlmkit.masking.random_token:RandomMasking",
    "whole_word": "mlmkit.masking.whole_word:WholeWordMasking",
    "span": "mlmkit.masking.span:SpanMasking",
    "content_word": "mlmkit.masking.content_word:ContentWordMasking",
    "token_weighted": "mlmkit.masking.token_weighted:TokenWeightedMasking",
    "mixture": "mlmkit.masking.mixture:MixtureMasking",
    "pmi": "mlmkit.masking.pmi:PmiMasking",
    "pos_weighted": "mlmkit.masking.pos_weighted:PosWeightedMasking",
}

_REGISTRY: dict[str, type[MaskingStrategy] | str] = dict(_BUILTINS)
_entry_points_loaded = False
#: names that came from entry points (forgotten by reset_entry_points)
_entry_point_names: set[str] = set()


def register_strategy(name: str):
    """Class decorator that registers a strategy under ``name``.

    Raises:
        ValueError: if ``name`` is already taken by another class.
    """

    def decorate(cls: type[MaskingStrategy]) -> type[MaskingStrategy]:
        existing = _REGISTRY.get(name)
        target = f"{cls.__module__}:{cls.__qualname__}"
        if existing is not None and existing is not cls and existing != target:
            raise ValueError(f"masking strategy {name!r} is already registered ({_describe(existing)})")
        if not issubclass(cls, MaskingStrategy):
            raise TypeError(f"{cls.__name__} must subclass mlmkit.masking.MaskingStrategy")
        _REGISTRY[name] = cls
        return cls

    return decorate


def _describe(target: type | str) -> str:
    return target if isinstance(target, str) else f"{target.__module__}:{target.__qualname__}"


def _load_entry_points() -> None:
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in _REGISTRY and _describe(_REGISTRY[ep.name]) != ep.value:
            # an installed package, not this code, caused it: a user error naming both
            raise UserError(
                f"masking strategy {ep.name!r} from entry point {ep.value} clashes with "
                f"{_describe(_REGISTRY[ep.name])}"
            )
        if ep.name not in _REGISTRY:
            _entry_point_names.add(ep.name)
        _REGISTRY[ep.name] = ep.value


def reset_entry_points() -> None:
    """Forget strategies found through entry points so the next lookup scans installed packages again.

    For code that installs a plugin into the running interpreter (tests, notebooks).
    """
    global _entry_points_loaded
    for name in _entry_point_names:
        _REGISTRY.pop(name, None)
    _entry_point_names.clear()
    _entry_points_loaded = False


def _import_target(target: str) -> type[MaskingStrategy]:
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
        cls = getattr(module, attr)
    except (ImportError, AttributeError) as exc:
        raise UserError(f"cannot import masking strategy {target!r}: {exc}") from exc
    if not (isinstance(cls, type) and issubclass(cls, MaskingStrategy)):
        raise UserError(f"{target!r} is not a subclass of mlmkit.masking.MaskingStrategy")
    return cls


def strategy_names() -> list[str]:
    """All registered names, sorted."""
    _load_entry_points()
    return sorted(_REGISTRY)


def get_strategy_class(name: str) -> type[MaskingStrategy]:
    """Resolve a registered name or a ``package.module:Class`` path to a strategy class."""
    if ":" in name:
        return _import_target(name)
    _load_entry_points()
    target = _REGISTRY.get(name)
    if target is None:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise UserError(
            f"unknown masking strategy {name!r}.{hint} Available: {', '.join(sorted(_REGISTRY))}"
        )
    if isinstance(target, str):
        target = _import_target(target)
        _REGISTRY[name] = target
    return target


def build_strategy(spec: Mapping[str, Any]) -> MaskingStrategy:
    """Instantiate a strategy from a recipe's ``masking`` section.

    ``spec`` holds ``name`` plus the strategy's parameters; ``schedule`` (handled by the
    ratio schedule) is ignored here. Unknown parameters are a :class:`UserError` naming
    the valid ones.
    """
    spec = dict(spec)
    name = spec.pop("name", "random")
    spec.pop("schedule", None)
    cls = get_strategy_class(name)
    valid = cls.parameters()
    unknown = sorted(set(spec) - set(valid))
    if unknown:
        raise UserError(
            f"unknown parameter(s) {', '.join(unknown)} for masking strategy {name!r}; "
            f"valid: {', '.join(sorted(valid))}"
        )
    try:
        return cls(**spec)
    except (TypeError, ValueError) as exc:
        raise UserError(f"masking strategy {name!r}: {exc}") from exc
