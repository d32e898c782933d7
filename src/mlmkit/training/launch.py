"""Multi-process launching through Accelerate's own launcher (never a home-made one).

``mlmkit pretrain --num-processes N ...`` re-runs the same command under
``accelerate launch --multi_gpu --num_processes N -m mlmkit ...``: torchrun-style
processes that use NCCL on GPUs and gloo on CPUs. Multi-node runs pass the
machine flags through; an Accelerate config file (``recipes/accelerate/*.yaml``)
selects FSDP or DeepSpeed. The launcher is injectable so tests run without GPUs.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from accelerate import Accelerator, PartialState
from accelerate.utils import ProjectConfiguration

from mlmkit.training.optim import resolve_mixed_precision


@dataclass
class LaunchOptions:
    """How many processes, on how many machines."""

    num_processes: int = 1
    """Total processes (all machines)."""
    num_machines: int = 1
    """Machines taking part."""
    machine_rank: int = 0
    """Rank of this machine."""
    main_process_ip: str | None = None
    """Address of machine 0 (multi-node)."""
    main_process_port: int | None = None
    """Port on machine 0 (multi-node)."""
    config_file: str | None = None
    """Accelerate config file (e.g. recipes/accelerate/fsdp.yaml)."""


def inside_launched_process() -> bool:
    """True in a process started by accelerate / torchrun / SLURM-launched torchrun."""
    return "LOCAL_RANK" in os.environ or int(os.environ.get("WORLD_SIZE", "1")) > 1


def wants_launch(options: LaunchOptions) -> bool:
    """Whether the command should re-launch itself under Accelerate."""
    return not inside_launched_process() and (
        options.num_processes > 1 or options.num_machines > 1 or options.config_file is not None)


def launch_command(argv: Sequence[str], options: LaunchOptions) -> list[str]:
    """The ``accelerate launch`` command line that runs ``mlmkit <argv>`` in every process."""
    cmd = [sys.executable, "-m", "mlmkit.training.launcher"]  # accelerate launch, quiet on Ctrl-C
    if options.config_file:
        cmd += ["--config_file", options.config_file]
    else:
        cmd += ["--multi_gpu", "--mixed_precision", "no", "--dynamo_backend", "no"]
    cmd += ["--num_processes", str(options.num_processes), "--num_machines", str(options.num_machines)]
    if options.num_machines > 1:
        cmd += ["--machine_rank", str(options.machine_rank)]
        if options.main_process_ip:
            cmd += ["--main_process_ip", options.main_process_ip]
    if options.main_process_port:
        cmd += ["--main_process_port", str(options.main_process_port)]
    return [*cmd, "-m", "mlmkit", *argv]


def strip_launch_flags(argv: Sequence[str]) -> list[str]:
    """Remove the launcher's own flags from a command line before handing it to the workers."""
    flags = {"--num-processes", "--num-machines", "--machine-rank", "--main-process-ip", "--main-process-port",
             "--accelerate-config"}
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        name = arg.split("=", 1)[0]
        if name in flags:
            skip = "=" not in arg
            continue
        out.append(arg)
    return out


def launch(argv: Sequence[str], options: LaunchOptions,
           runner: Callable[[list[str]], int] | None = None) -> int:
    """Run ``mlmkit <argv>`` under Accelerate's launcher; returns the exit code."""
    cmd = launch_command(strip_launch_flags(argv), options)
    if runner is not None:
        return runner(cmd)
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // max(options.num_processes, 1))))
    # The launcher runs in a session of its own and this process passes it SIGINT / SIGTERM, once
    # each time, instead of dying and leaving it orphaned (subprocess.run kills its child on Ctrl-C,
    # and SIGKILL never reaches the workers): the launcher hands the signal on and the workers stop
    # at a step boundary with a checkpoint.
    proc = subprocess.Popen(cmd, env=env, start_new_session=True)
    received: list[int] = []

    def forward(signum: int, frame: Any) -> None:
        received.append(signum)
        proc.send_signal(signum)

    previous = {}
    if threading.current_thread() is threading.main_thread():
        previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        code = proc.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 128 + received[0] if received and code != 0 else code


def _cpu_processes() -> bool:
    """True when launched on several processes without a GPU.

    Accelerate treats a torchrun-style launch as multi-GPU unless told cpu=True.
    """
    return not torch.cuda.is_available() and int(os.environ.get("WORLD_SIZE", "1")) > 1


def process_state() -> Any:
    """Accelerate's process state (rank, barrier) for code that runs before or between Accelerators.

    Built with the same device choice as :func:`build_accelerator`: the state is shared by every
    later Accelerator in the process, so one made with other settings would leave a launched
    process running alone.
    """
    return PartialState(cpu=_cpu_processes())


def build_accelerator(grad_accum: int, mixed_precision: str, log_with: list[str] | None = None,
                      logging_dir: str | None = None) -> Any:
    """An ``Accelerator`` for the current process; gloo on CPUs when launched with several processes.

    Args:
        grad_accum: Micro-batches per optimizer step.
        mixed_precision: 'auto', 'no', 'bf16' or 'fp16'.
        log_with: Accelerate tracker names (see :func:`mlmkit.training.tracking.reporting_options`).
        logging_dir: Where trackers that write locally (TensorBoard) put their files.
    """
    return Accelerator(gradient_accumulation_steps=grad_accum, cpu=_cpu_processes(),
                       mixed_precision=resolve_mixed_precision(mixed_precision), log_with=log_with or None,
                       project_config=ProjectConfiguration(logging_dir=logging_dir))
