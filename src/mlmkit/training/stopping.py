"""When to stop early: time budgets and SIGINT / SIGTERM.

Signals do not interrupt a step: the handler only raises a flag, the loop saves a
checkpoint at the next optimizer-step boundary and exits with a resume hint.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType

from mlmkit.config.durations import parse_duration
from mlmkit.errors import TrainingInterrupted

__all__ = ["StopSignals", "TrainingInterrupted", "parse_duration"]


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
