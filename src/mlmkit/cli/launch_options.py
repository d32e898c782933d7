"""Options shared by the training commands for multi-process and multi-node runs.

They are declared once, here: :func:`with_launch_options` adds them to a command, which
receives them as one ``launch`` value. A command that asks for more processes than this
one hands the command line the user typed, without these options, to Accelerate's launcher.
"""

# Library imports (mlmkit's other layers and their dependencies) sit inside the functions that use them, so that
# `mlmkit --help` imports only this layer.

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import asdict, is_dataclass
from typing import Annotated, Any

import typer

from mlmkit.cli.common import is_main_process, print_json, quiet_libraries

NumProcesses = Annotated[int, typer.Option("--num-processes", min=1,
                                           help="Processes (GPUs) to launch through Accelerate.")]
NumMachines = Annotated[int, typer.Option("--num-machines", min=1, help="Machines in a multi-node run.")]
MachineRank = Annotated[int, typer.Option("--machine-rank", min=0, help="This machine's rank (multi-node).")]
MainProcessIp = Annotated[str | None, typer.Option("--main-process-ip", help="Address of machine 0 (multi-node).")]
MainProcessPort = Annotated[int | None, typer.Option("--main-process-port", help="Port of machine 0.")]
AccelerateConfig = Annotated[str | None, typer.Option(
    "--accelerate-config", help="Accelerate config file (DDP/FSDP/DeepSpeed), e.g. recipes/accelerate/*.")]


#: (parameter, type with its option, default), in the order ``LaunchOptions`` takes them
LAUNCH_OPTIONS: tuple[tuple[str, Any, Any], ...] = (
    ("num_processes", NumProcesses, 1),
    ("num_machines", NumMachines, 1),
    ("machine_rank", MachineRank, 0),
    ("main_process_ip", MainProcessIp, None),
    ("main_process_port", MainProcessPort, None),
    ("accelerate_config", AccelerateConfig, None),
)
#: where the top-level command keeps the arguments as typed (after ``mlmkit``), for the workers
ARGV_KEY = "mlmkit.argv"


def with_launch_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Add the launch options (and the typed command line) to a command; ``fn`` receives them as ``launch``.

    ``fn`` declares ``launch`` (a tuple of the six values, in :data:`LAUNCH_OPTIONS` order)
    and ``argv`` (the arguments after ``mlmkit`` as the user typed them, launch options
    removed, or None when the command was not run from a command line).
    """
    signature = inspect.signature(fn, eval_str=True)
    own = [p for p in signature.parameters.values() if p.name not in ("launch", "argv")]
    added = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=kind)
             for name, kind, default in LAUNCH_OPTIONS]
    context = inspect.Parameter("typer_context", inspect.Parameter.KEYWORD_ONLY, annotation=typer.Context)

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from mlmkit.training.launch import strip_launch_flags

        launch = tuple(kwargs.pop(name) for name, _, _ in LAUNCH_OPTIONS)
        typed = kwargs.pop("typer_context").meta.get(ARGV_KEY)
        argv = strip_launch_flags(typed) if typed is not None else None
        return fn(*args, launch=launch, argv=argv, **kwargs)

    wrapper.__signature__ = signature.replace(parameters=[*own, *added, context])  # type: ignore[attr-defined]
    return wrapper


def relaunch_if_needed(argv: list[str], num_processes: int, num_machines: int, machine_rank: int,
                       main_process_ip: str | None, main_process_port: int | None, accelerate_config: str | None,
                       launcher: Callable[[list[str]], int] | None) -> bool:
    """Hand ``mlmkit <argv>`` to Accelerate's launcher when more than this process is asked for.

    Returns True when the command ran under the launcher (the caller is done), False when
    the caller should do the work in this process.
    """
    from mlmkit.training.launch import LaunchOptions, launch, wants_launch

    options = LaunchOptions(num_processes, num_machines, machine_rank, main_process_ip, main_process_port,
                            accelerate_config)
    if not wants_launch(options):
        return False
    code = launch(argv, options, runner=launcher)
    if code:
        raise typer.Exit(code)
    return True


def run_here_or_launch(argv: list[str], launch: tuple, launcher: Callable[[list[str]], int] | None,
                       work: Callable[[], object], as_json: bool) -> object | None:
    """The shared body of the training commands.

    Hands the command to Accelerate's launcher when ``launch`` (the six launch options,
    in signature order) asks for more than this process; otherwise runs ``work`` here.
    Returns the result for the caller to print as tables, or None when there is nothing
    left to print (launched, a non-main process, or ``--json`` already printed).
    """
    if relaunch_if_needed(argv, *launch, launcher):
        return None
    quiet_libraries()
    result = work()
    if not is_main_process():
        return None
    if as_json:
        print_json(asdict(result) if is_dataclass(result) else result)
        return None
    return result
