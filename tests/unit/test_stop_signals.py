"""Signals during training: the first SIGINT / SIGTERM only raises a flag, a second Ctrl-C stops at once."""

from __future__ import annotations

import os
import signal

import pytest
import typer

from mlmkit.cli.common import user_errors
from mlmkit.training.stopping import StopSignals


def deliver(signum: int) -> None:
    """Send ``signum`` to this process; CPython runs the handler in the main thread right after."""
    os.kill(os.getpid(), signum)


@pytest.mark.parametrize("first", [signal.SIGINT, signal.SIGTERM])
def test_the_first_signal_is_recorded_and_a_second_ctrl_c_interrupts(first):
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    with StopSignals() as signals:
        assert signals.received is None
        deliver(first)
        assert signals.received == first  # recorded: the step in progress goes on
        deliver(signal.SIGTERM)  # a later SIGTERM changes nothing and does not raise
        assert signals.received == signal.SIGTERM
        with pytest.raises(KeyboardInterrupt):
            deliver(signal.SIGINT)  # Ctrl-C after a signal: now
    assert {sig: signal.getsignal(sig) for sig in before} == before  # the previous handlers are back


def test_an_interrupt_ends_a_command_with_exit_code_130():
    @user_errors
    def command():
        raise KeyboardInterrupt

    with pytest.raises(typer.Exit) as info:
        command()
    assert info.value.exit_code == 130
