"""Time budgets written the way people write them: ``2h``, ``90m``, ``1h30m``, ``45s`` or seconds."""

from __future__ import annotations

import re

from mlmkit.errors import UserError

_UNITS = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)([dhms])")


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
