"""Progress of long loops: a rich bar on a terminal, plain lines everywhere else.

Under SLURM, ``nohup``, CI or ``make demo > log`` stderr is not a terminal, and a live bar
would show nothing until the end. There each statistics update of the loop (one every
``train.log_every`` steps) becomes one flushed line::

    pretrain 50/120 (42%) | loss 2.345  lr 4.10e-04  1,234 tok/s | elapsed 0:01:23 | eta 0:01:56
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


@dataclass
class PlainTask:
    """What :class:`PlainProgress` keeps per task (the attributes of rich's ``Task`` that callers read)."""

    id: int
    description: str
    total: float | None
    completed: float
    fields: dict[str, Any]
    start: float = 0.0
    start_completed: float = 0.0
    pending: bool = False
    """Statistics changed since the last printed line."""
    printed: bool = False


class PlainProgress:
    """The part of :class:`rich.progress.Progress` that mlmkit uses, printed as plain lines.

    A line is printed when the count advances after the ``stats`` field changed (the training
    loops update the statistics, then the step), so each line shows the step its statistics
    belong to. Tasks that never had statistics get one line when the block ends.
    """

    def __init__(self, console: Console, clock: Callable[[], float] = time.monotonic) -> None:
        self.console = console
        self.clock = clock
        self.tasks: list[PlainTask] = []

    def __enter__(self) -> PlainProgress:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        for task in self.tasks:
            if task.pending or (not task.printed and task.completed > task.start_completed):
                self._print(task)

    def add_task(self, description: str, total: float | None = None, completed: float = 0, **fields: Any) -> int:
        """Register a task; ``fields`` holds ``stats``."""
        self.tasks.append(PlainTask(id=len(self.tasks), description=description, total=total, completed=completed,
                                    start_completed=completed, fields=fields, start=self.clock()))
        return len(self.tasks) - 1

    def advance(self, task_id: int, advance: float = 1) -> None:
        """Add to the completed count."""
        self.update(task_id, completed=self.tasks[task_id].completed + advance)

    def update(self, task_id: int, total: float | None = None, completed: float | None = None, **fields: Any) -> None:
        """Record statistics, a total and/or a count; prints when the count moves past new statistics."""
        task = self.tasks[task_id]
        if total is not None:
            task.total = total
        if "stats" in fields and fields["stats"] != task.fields.get("stats"):
            task.pending = True
        task.fields.update(fields)
        if completed is not None and completed != task.completed:
            task.completed = completed
            if task.pending:
                self._print(task)

    def line(self, task_id: int) -> str:
        """The progress line of a task as it stands."""
        task = self.tasks[task_id]
        done, total = task.completed, task.total
        elapsed = self.clock() - task.start
        parts = [f"{task.description} {done:,.0f}" + (f"/{total:,.0f} ({done / total:.0%})" if total else "")]
        if task.fields.get("stats"):
            parts.append(task.fields["stats"])
        parts.append(f"elapsed {_clock(elapsed)}")
        advanced = done - task.start_completed
        if total and advanced > 0 and done < total:
            parts.append(f"eta {_clock(elapsed / advanced * (total - done))}")
        return " | ".join(parts)

    def _print(self, task: PlainTask) -> None:
        task.pending, task.printed = False, True
        self.console.print(self.line(task.id), markup=False, highlight=False, soft_wrap=True)


def _clock(seconds: float) -> str:
    return str(timedelta(seconds=round(seconds)))


def training_progress(console: Console | None = None, enabled: bool = True) -> Progress | PlainProgress:
    """A bar with step count, elapsed/remaining time and a free-text ``stats`` field.

    When the console is not a terminal (nor a notebook), plain progress lines replace the bar.
    """
    console = console or Console(stderr=True)
    if enabled and not (console.is_terminal or console.is_jupyter):
        return PlainProgress(console)
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("<"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[stats]}"),
        console=console,
        disable=not enabled,
        transient=False,
    )
