"""When to stop early: time budgets and SIGINT / SIGTERM.

Signals do not interrupt a step: the handler only raises a flag, the loop saves a
checkpoint at the next optimizer-step boundary and exits with a resume hint.
"""

from __future__ import annotations

import re
import signal
import threading
from types import FrameType

from mlmkit.errors import UserError

_UNITS = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)([dhms])")


class TrainingInterrupted(UserError):
    """Raised after a signal-triggered checkpoint; the message says how to resume."""

    def __init__(self, message: str, signal_number: int) -> None:
        super().__init__(message)
        self.signal_number = signal_number


def parse_duration(text: str | float | int | None) -> float | None:
    """Seconds in a budget like ``"2h"``, ``"1h30m"``, ``"90s"`` or a plain number of seconds."""
    if text is None or text == "":
        return None
    if isinstance(text, (int, float)):
        seconds = float(text)
    else:
        value = str(text).strip().lower().replace(" ", "")
        try:
            seconds = float(value)
        except ValueError:
            parts = _PART.findall(value)
            if not parts or "".join(n + u for n, u in parts) != value:
                raise UserError(
                    f"train.max_time must look like '2h', '90m', '1h30m' or seconds, got {text!r}") from None
            seconds = sum(float(n) * _UNITS[u] for n, u in parts)
    if seconds <= 0:
        raise UserError("train.max_time must be positive")
    return seconds


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
