"""The valid values of every config field, declared next to the schema.

:data:`FIELD_CHECKS` maps each config dataclass to ``{field: Check}``; rules that tie
several fields together (or a field to the model it configures) are listed in
:mod:`mlmkit.config.loading`, which applies both when a config is loaded, before any
model or data is touched. A field without an entry takes any value of its type.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from mlmkit.config.presets import preset_names
from mlmkit.config.schema import (
    FinetuneDataConfig,
    ModelConfig,
    OutputConfig,
    PretrainDataConfig,
    TokenizerTrainConfig,
    TrainConfig,
)

#: largest seed NumPy accepts
MAX_SEED = 2**32 - 1


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


@dataclass(frozen=True)
class Check:
    """The valid values of one field: a numeric range, or a list of choices.

    ``None`` always passes (optional fields); ``also`` lists special values accepted
    outside the range (such as -1 for "derive from the number of epochs").
    """

    low: float | None = None
    high: float | None = None
    low_inclusive: bool = True
    high_inclusive: bool = True
    choices: Sequence[str] | Callable[[], Sequence[str]] | None = None
    also: tuple[Any, ...] = ()
    nonempty: bool = False

    def allowed(self) -> str:
        """The valid values in words, e.g. 'at least 1' or 'one of linear, cosine'."""
        if self.choices is not None:
            return f"one of {', '.join(self._choices())}"
        if self.nonempty:
            return "a non-empty string"
        if self.low is not None and self.high is not None:
            left, right = "[" if self.low_inclusive else "(", "]" if self.high_inclusive else ")"
            text = f"in {left}{_number(self.low)}, {_number(self.high)}{right}"
        elif self.low is not None:
            text = f"{'at least' if self.low_inclusive else 'greater than'} {_number(self.low)}"
        else:
            text = f"{'at most' if self.high_inclusive else 'less than'} {_number(self.high)}"
        return text + "".join(f" or {v}" for v in self.also)

    def _choices(self) -> Sequence[str]:
        return self.choices() if callable(self.choices) else self.choices

    def passes(self, value: Any) -> bool:
        """Whether ``value`` is valid."""
        if value is None or (value in self.also and not isinstance(value, bool)):
            return True
        if self.choices is not None:
            return str(value).lower() in self._choices()
        if self.nonempty:
            return isinstance(value, str) and value.strip() != ""
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return False
        low_ok = self.low is None or value > self.low or (self.low_inclusive and value == self.low)
        high_ok = self.high is None or value < self.high or (self.high_inclusive and value == self.high)
        return low_ok and high_ok


def at_least(low: float, also: tuple[Any, ...] = ()) -> Check:
    """``value >= low``."""
    return Check(low=low, also=also)


def above(low: float) -> Check:
    """``value > low``."""
    return Check(low=low, low_inclusive=False)


def between(low: float, high: float, low_inclusive: bool = True, high_inclusive: bool = True) -> Check:
    """``low <= value <= high`` (ends open where asked)."""
    return Check(low=low, high=high, low_inclusive=low_inclusive, high_inclusive=high_inclusive)


def one_of(*choices: str) -> Check:
    """One of ``choices`` (case-insensitive)."""
    return Check(choices=choices)


def lr_scheduler_names() -> list[str]:
    """The schedule names ``transformers.get_scheduler`` accepts."""
    from transformers import SchedulerType  # lazy: keeps `import mlmkit.config` free of torch and transformers

    return [kind.value for kind in SchedulerType]


#: Accelerate precisions; YAML reads a bare `no` as false, which the loop accepts too
PRECISION_SPELLINGS = ("auto", "no", "bf16", "fp16", "false", "fp32", "none")
#: shortest block or text: two special tokens and one token of text
MIN_SEQUENCE = 3

FIELD_CHECKS: dict[type, dict[str, Check]] = {
    ModelConfig: {
        "preset": Check(choices=preset_names),
        "name_or_path": Check(nonempty=True),
    },
    PretrainDataConfig: {
        "max_seq_length": at_least(MIN_SEQUENCE),
        "eval_fraction": between(0, 1, high_inclusive=False),
        "eval_max_blocks": at_least(1),
        "max_documents": at_least(1),
        "num_proc": at_least(1),
        "source": Check(nonempty=True),
    },
    FinetuneDataConfig: {
        "max_seq_length": at_least(MIN_SEQUENCE),
        "eval_fraction": between(0, 1, low_inclusive=False, high_inclusive=False),
        "max_train_samples": at_least(1),
        "max_eval_samples": at_least(1),
        "dataset": Check(nonempty=True),
        "task": one_of("single_label", "multi_label", "regression", "token"),
        "threshold": between(0, 1, low_inclusive=False, high_inclusive=False),
    },
    TrainConfig: {
        "max_steps": at_least(1, also=(-1,)),
        "num_epochs": at_least(0),
        "batch_size": at_least(1),
        "grad_accum": at_least(1),
        "lr": above(0),
        "weight_decay": at_least(0),
        "warmup_ratio": between(0, 1),
        "lr_scheduler": Check(choices=lr_scheduler_names),
        "max_grad_norm": at_least(0),
        "mixed_precision": one_of(*PRECISION_SPELLINGS),
        "seed": between(0, MAX_SEED),
        "eval_every": at_least(0),
        "log_every": at_least(1),
        "num_workers": at_least(0),
        "eval_batch_size": at_least(1),
        "checkpoint_every": at_least(0),
        "checkpoint_minutes": at_least(0),
        "keep_checkpoints": at_least(0),
    },
    OutputConfig: {
        "dir": Check(nonempty=True),
    },
    TokenizerTrainConfig: {
        "type": one_of("wordpiece", "bpe", "unigram"),
        "vocab_size": at_least(8),
        "round_to": at_least(1),
        "family": one_of("bert", "roberta"),
        "min_frequency": at_least(0),
        "max_documents": at_least(1),
    },
}
