import io

from rich.console import Console
from rich.progress import Progress

from mlmkit.io.progress import PlainProgress, training_progress


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def _console(terminal: bool) -> tuple[Console, io.StringIO]:
    buffer = io.StringIO()
    return Console(file=buffer, force_terminal=terminal, width=60), buffer


def test_a_terminal_gets_the_rich_bar_and_a_pipe_gets_plain_lines():
    assert isinstance(training_progress(_console(True)[0]), Progress)
    assert isinstance(training_progress(_console(False)[0]), PlainProgress)
    assert isinstance(training_progress(_console(False)[0], enabled=False), Progress)  # other processes: silent


def test_one_line_per_statistics_update_with_its_step_elapsed_and_eta():
    console, buffer = _console(False)
    clock = FakeClock()
    with PlainProgress(console, clock=clock) as progress:
        task = progress.add_task("pretrain", total=120, stats="")
        for step in range(1, 121):
            clock.now += 2.0  # two seconds per step
            if step % 50 == 0 or step == 120:  # the loop: statistics first, then the step count
                progress.update(task, stats=f"loss {10 / step:.3f}  lr 1.00e-04  1,000 tok/s")
            progress.update(task, completed=step)
    lines = buffer.getvalue().splitlines()
    assert lines == [
        "pretrain 50/120 (42%) | loss 0.200  lr 1.00e-04  1,000 tok/s | elapsed 0:01:40 | eta 0:02:20",
        "pretrain 100/120 (83%) | loss 0.100  lr 1.00e-04  1,000 tok/s | elapsed 0:03:20 | eta 0:00:40",
        "pretrain 120/120 (100%) | loss 0.083  lr 1.00e-04  1,000 tok/s | elapsed 0:04:00",
    ]


def test_a_resumed_run_estimates_from_its_own_pace():
    console, buffer = _console(False)
    clock = FakeClock()
    with PlainProgress(console, clock=clock) as progress:
        task = progress.add_task("pretrain", total=100, completed=90, stats="")
        clock.now += 5.0
        progress.update(task, stats="loss 1.000")
        progress.update(task, completed=95)
    assert buffer.getvalue().splitlines() == ["pretrain 95/100 (95%) | loss 1.000 | elapsed 0:00:05 | eta 0:00:05"]


def test_tasks_without_statistics_get_one_line_at_the_end():
    """The tokenizer trainer's tasks: counted by advance, an open-ended one completed at the end."""
    console, buffer = _console(False)
    clock = FakeClock()
    with PlainProgress(console, clock=clock) as progress:
        reading = progress.add_task("reading corpus", total=None, stats="")
        for _ in range(3):
            progress.advance(reading, 1000)
        progress.update(reading, total=progress.tasks[reading].completed)
        progress.add_task("learning vocabulary", total=None, stats="")
        for task in progress.tasks:
            if task.total is None:
                progress.update(task.id, total=1, completed=1)
        assert buffer.getvalue() == ""
    assert buffer.getvalue().splitlines() == ["reading corpus 3,000/3,000 (100%) | elapsed 0:00:00",
                                              "learning vocabulary 1/1 (100%) | elapsed 0:00:00"]
