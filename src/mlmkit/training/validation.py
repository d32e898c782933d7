"""Checks of what a config names, run as a training command's first act.

:func:`mlmkit.config.validate_config` checks the values of a config when it is loaded; the
rules here read what those values name — the model directory (intact, a fitting architecture,
enough positions for ``data.max_seq_length``), local corpus files (present and text) and the
masking strategy — before any model or data is loaded. They read headers, never load a model.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mlmkit.config.loading import validate_config
from mlmkit.config.schema import FinetuneConfig, PretrainConfig
from mlmkit.data.sources import check_local_source
from mlmkit.errors import UserError
from mlmkit.masking.registry import build_strategy
from mlmkit.masking.schedules import ConstantSchedule, build_schedule
from mlmkit.modeling.loading import check_masked_lm_source, model_config_dict, usable_positions


def _masking_predicts(cfg: PretrainConfig) -> None:
    """The strategy builds from its parameters, and a constant ratio is not 0 (nothing would be learned)."""
    strategy = build_strategy(cfg.masking)
    schedule = build_schedule(cfg.masking.get("schedule"), strategy.ratio, cfg.train.max_steps)
    if isinstance(schedule, ConstantSchedule) and strategy.ratio == 0:
        raise UserError("masking.ratio=0 with a constant schedule predicts no token, so nothing would be learned: "
                        "it must be in (0, 1]")


def _sequence_fits_model(cfg: PretrainConfig | FinetuneConfig) -> None:
    """``data.max_seq_length`` within the model's positions; a damaged local model directory stops here."""
    config = model_config_dict(cfg.model)
    if config is None:
        return
    if isinstance(cfg, PretrainConfig) and not cfg.model.from_scratch and not cfg.model.preset:
        check_masked_lm_source(cfg.model.name_or_path, config)
    limit = usable_positions(config)
    if limit is not None and cfg.data.max_seq_length > limit:
        raise UserError(f"data.max_seq_length={cfg.data.max_seq_length} exceeds the {limit} positions of model "
                        f"{cfg.model.preset or cfg.model.name_or_path!r}: it must be at most {limit}")


def _corpus_readable(cfg: PretrainConfig | FinetuneConfig) -> None:
    check_local_source(cfg.data.source if isinstance(cfg, PretrainConfig) else cfg.data.dataset)


#: rules that read what a config names (model directory, corpus files, masking strategy data), per command
SOURCE_CHECKS: dict[type, tuple[Callable[[Any], None], ...]] = {
    PretrainConfig: (_masking_predicts, _sequence_fits_model, _corpus_readable),
    FinetuneConfig: (_sequence_fits_model, _corpus_readable),
}


def validate_run_config(config: Any) -> None:
    """Check a config's values (:func:`~mlmkit.config.validate_config`), then what it names.

    Raises:
        UserError: One line naming the key or file and what is wrong with it.
    """
    validate_config(config)
    for rule in SOURCE_CHECKS.get(type(config), ()):
        rule(config)
