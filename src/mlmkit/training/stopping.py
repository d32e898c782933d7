"""When to stop early: time budgets and SIGINT / SIGTERM.

Signals do not interrupt a step: the handler only raises a flag, the loop saves a
checkpoint at the next optimizer-step boundary and exits with a resume hint.
"""

from __future__ import annotations

import enum
import signal
import threading
import time
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

import torch

from mlmkit.config.durations import parse_duration
from mlmkit.errors import TrainingInterrupted

__all__ = ["LogWindow", "Stop", "StopReason", "StopSignals", "TrainingInterrupted", "agreed_stop", "parse_duration"]


class StopSignals:
    """Context manager that records SIGINT / SIGTERM instead of dying mid-step."""

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, object] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.received is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C means "now"
        self.received = signum

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


class StopReason(enum.Enum):
    """Why a loop stops before its last step."""

    TIME = "time"
    SIGNAL = "signal"


@dataclass(frozen=True)
class Stop:
    """An early stop every process agreed on: the reason and, for a signal, which one."""

    reason: StopReason
    signal_number: int = 0

    @property
    def signal_name(self) -> str:
        """``SIGINT`` / ``SIGTERM`` for a signal stop."""
        return signal.Signals(self.signal_number).name


def agreed_stop(signals: StopSignals | None, budget: float | None, seconds: float, accelerator: Any) -> Stop | None:
    """Whether to stop now — a signal received, or the time budget spent — agreed by all processes.

    Processes see signals and clocks differently; reducing with ``max`` makes them all stop at
    the same step (a signal wins over time), so their collectives stay in step.
    """
    code = 0
    if signals is not None and signals.received is not None:
        code = 1000 + int(signals.received)
    elif budget is not None and seconds >= budget:
        code = 1
    if accelerator.num_processes > 1:
        code = int(accelerator.reduce(torch.tensor(code, device=accelerator.device), reduction="max").item())
    if code >= 1000:
        return Stop(StopReason.SIGNAL, code - 1000)
    return Stop(StopReason.TIME) if code == 1 else None


@dataclass
class LogWindow:
    """What happened since the last log line: units trained on (tokens or examples) and losses.

    Args:
        log_every: Log every this many optimizer steps (and at the first and the last step).
        last_step: The loop's last step.
    """

    log_every: int
    last_step: int
    start: float = field(default_factory=time.perf_counter)
    units: int = 0
    losses: list[torch.Tensor] = field(default_factory=list)

    def due(self, step: int) -> bool:
        """Whether ``step`` gets a log line."""
        return step % self.log_every == 0 or step == self.last_step or step == 1

    def close(self, accelerator: Any, now: float) -> tuple[float | None, float]:
        """The window's mean loss over all processes (None when no loss was recorded) and units per second; reset."""
        total = torch.stack(self.losses).float().sum() if self.losses else torch.zeros((), device=accelerator.device)
        pair = accelerator.reduce(torch.stack([total, torch.tensor(float(len(self.losses)), device=total.device)]),
                                  reduction="sum")
        loss_sum, count = pair.tolist()
        rate = self.units / max(now - self.start, 1e-9)
        self.units, self.start, self.losses = 0, now, []
        return (loss_sum / count if count else None), rate
