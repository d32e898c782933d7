"""The one exception type for mistakes a user can make.

The CLI turns a :class:`UserError` into a single red line and exit code 2; any other
exception is an internal bug and keeps its traceback.
"""


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type name when the message is empty)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class UserError(Exception):
    """A problem the user can fix: bad path, unknown key, missing column, no mask token, ..."""


class TrainingInterrupted(UserError):
    """Raised after a signal-triggered checkpoint; the message says how to resume."""

    def __init__(self, message: str, signal_number: int) -> None:
        super().__init__(message)
        self.signal_number = signal_number
