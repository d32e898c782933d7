"""Masking-ratio schedules: the ratio as a function of the optimizer step.

A schedule is composed with any strategy. It holds no hidden counter: the training
loop passes the optimizer step, so the ratio is the same whatever the number of
dataloader workers, and after a resume. ``state_dict`` records the parameters so a
resumed run can check it continues with the same schedule.

* ``constant`` – the strategy's ratio at every step.
* ``linear`` – from ``start`` to ``end`` over ``total_steps``; defaults to Masking Ratio
  Decay's 2p -> 0 (Yang, Zhang and Zhao, ACL 2023); Ankner et al. (EACL 2024) decay
  0.30 -> 0.15.
* ``cosine`` – MRD's cosine form: ``p * (1 + cos(pi * t / T)) + floor`` (floor 0.02).
* ``step`` – piecewise constant: ``ratios[i]`` from ``milestones[i-1]`` on.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from mlmkit.errors import UserError


class RatioSchedule:
    """Base class: ``schedule(step) -> ratio`` in [0, 1]."""

    name: ClassVar[str] = ""

    def __init__(self, base_ratio: float, total_steps: int) -> None:
        self.base_ratio = float(base_ratio)
        self.total_steps = max(int(total_steps), 1)

    def ratio(self, step: int) -> float:
        """The masking ratio at optimizer step ``step``."""
        raise NotImplementedError

    def __call__(self, step: int) -> float:
        return min(max(self.ratio(int(step)), 0.0), 1.0)

    def progress(self, step: int) -> float:
        """Fraction of training done, clipped to [0, 1]."""
        return min(max(step / self.total_steps, 0.0), 1.0)

    def state_dict(self) -> dict[str, Any]:
        """Parameters of the schedule, saved with checkpoints."""
        return {k: v for k, v in vars(self).items() if not k.startswith("_")} | {"name": self.name}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore parameters saved by :meth:`state_dict`."""
        for key, value in state.items():
            if key != "name":
                setattr(self, key, value)


class ConstantSchedule(RatioSchedule):
    """The strategy's own ratio at every step."""

    name = "constant"

    def ratio(self, step: int) -> float:
        return self.base_ratio


class LinearSchedule(RatioSchedule):
    """Linear from ``start`` (default 2p) to ``end`` (default 0) over training."""

    name = "linear"

    def __init__(self, base_ratio: float, total_steps: int, start: float | None = None, end: float = 0.0) -> None:
        super().__init__(base_ratio, total_steps)
        self.start = 2 * self.base_ratio if start is None else float(start)
        self.end = float(end)

    def ratio(self, step: int) -> float:
        return self.start + (self.end - self.start) * self.progress(step)


class CosineSchedule(RatioSchedule):
    """Masking Ratio Decay, cosine: ``p * (1 + cos(pi * t / T)) + floor``."""

    name = "cosine"

    def __init__(self, base_ratio: float, total_steps: int, floor: float = 0.02) -> None:
        super().__init__(base_ratio, total_steps)
        self.floor = float(floor)

    def ratio(self, step: int) -> float:
        return self.base_ratio * (1 + math.cos(math.pi * self.progress(step))) + self.floor


class StepSchedule(RatioSchedule):
    """Piecewise constant: ``ratios[0]`` before ``milestones[0]``, ``ratios[i]`` from ``milestones[i-1]``."""

    name = "step"

    def __init__(
        self, base_ratio: float, total_steps: int, milestones: Sequence[int] = (), ratios: Sequence[float] = ()
    ) -> None:
        super().__init__(base_ratio, total_steps)
        self.milestones = [int(m) for m in milestones]
        self.ratios = [float(r) for r in ratios] or [self.base_ratio]
        if len(self.ratios) != len(self.milestones) + 1:
            raise ValueError("a step schedule needs exactly one more ratio than milestones")
        if self.milestones != sorted(self.milestones):
            raise ValueError("step schedule milestones must be increasing")

    def ratio(self, step: int) -> float:
        index = sum(step >= m for m in self.milestones)
        return self.ratios[index]


SCHEDULES: dict[str, type[RatioSchedule]] = {
    cls.name: cls for cls in (ConstantSchedule, LinearSchedule, CosineSchedule, StepSchedule)
}


def build_schedule(spec: str | Mapping[str, Any] | None, base_ratio: float, total_steps: int) -> RatioSchedule:
    """Build a schedule from ``masking.schedule`` (a name or a mapping with ``name`` and parameters)."""
    if spec is None:
        spec = {"name": "constant"}
    elif isinstance(spec, str):
        spec = {"name": spec}
    params = dict(spec)
    name = params.pop("name", "constant")
    cls = SCHEDULES.get(name)
    if cls is None:
        raise UserError(f"unknown masking schedule {name!r}; available: {', '.join(sorted(SCHEDULES))}")
    try:
        return cls(base_ratio, total_steps, **params)
    except (TypeError, ValueError) as exc:
        raise UserError(f"masking schedule {name!r}: {exc}") from exc
