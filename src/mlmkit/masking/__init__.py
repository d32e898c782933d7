"""Masking strategies, ratio schedules and the collator that applies them."""

from mlmkit.masking.base import IGNORE_INDEX, MaskingStrategy, Selection, run_starts, run_unit_ids
from mlmkit.masking.registry import build_strategy, get_strategy_class, register_strategy, strategy_names
from mlmkit.masking.schedules import RatioSchedule, build_schedule

__all__ = [
    "IGNORE_INDEX",
    "MaskingStrategy",
    "RatioSchedule",
    "Selection",
    "build_schedule",
    "build_strategy",
    "get_strategy_class",
    "register_strategy",
    "run_starts",
    "run_unit_ids",
    "strategy_names",
]
