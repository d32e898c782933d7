"""The launcher process of a multi-process run: ``accelerate launch``, without a traceback on Ctrl-C.

``python -m mlmkit.training.launcher ARGS`` takes the arguments of ``accelerate launch``. On
SIGINT or SIGTERM, torch's elastic agent passes the signal to the workers (each stops at a step
boundary with a checkpoint and says so), then raises ``SignalException``; under ``accelerate
launch`` that exception reaches the user's terminal as a traceback. Here it ends the launcher
with exit code 128 + the signal's number instead.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from accelerate.commands.launch import launch_command, launch_command_parser
from torch.distributed.elastic.multiprocessing.api import SignalException


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``accelerate launch`` with ``argv``; 128 + signal when a stop signal ended it."""
    args = launch_command_parser().parse_args(argv)
    try:
        launch_command(args)
    except SignalException as exc:
        return 128 + int(exc.sigval)
    return 0


if __name__ == "__main__":
    sys.exit(main())
