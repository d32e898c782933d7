"""``--num-processes``: the command line handed to Accelerate's launcher, and a real two-process (gloo) run."""

import json
import os
import subprocess
import sys

from typer.testing import CliRunner

from conftest import free_port
from mlmkit.cli import pretrain as pretrain_cli
from mlmkit.cli.app import app
from mlmkit.io.outputs import read_metrics
from mlmkit.training.checkpoint import list_checkpoints
from mlmkit.training.launch import launch_command, strip_launch_flags

STEPS = 16


def _args(model_dir, corpus_file, out, batch, *extra):
    return [f"model.name_or_path={model_dir}", f"data.source={corpus_file}", "data.max_seq_length=32",
            f"train.max_steps={STEPS}", f"train.batch_size={batch}", "train.lr=5e-3", "train.log_every=4",
            "train.checkpoint_every=8", "train.keep_checkpoints=0", f"output.dir={out}", "--json"]


def _run(args, processes):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "mlmkit", "pretrain", *args]
    if processes > 1:
        cmd += ["--num-processes", str(processes), "--main-process-port", str(free_port())]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout[proc.stdout.index("{"):])


def test_two_processes_train_and_only_the_main_process_writes(tiny_model_dir, corpus_file, tmp_path):
    """The launched command runs; one metrics line per logging step and one JSON report, from rank 0 only.

    That two processes compute what one process would is checked weight for weight, with a control
    that switches gradient synchronisation off, in tests/teeth/test_multiprocess_equivalence.py.
    """
    two = _run(_args(tiny_model_dir, corpus_file, tmp_path / "two", 4), 2)
    assert two["steps"] == STEPS
    steps = [r["step"] for r in read_metrics(tmp_path / "two" / "metrics.jsonl") if r["split"] == "train"]
    assert steps == [1, 4, 8, 12, 16]
    assert [c.name for c in list_checkpoints(tmp_path / "two")] == ["step-00000008", "step-00000016"]


def test_launcher_is_injectable_and_builds_accelerate_command(monkeypatch, tmp_path):
    seen = []
    monkeypatch.setattr(pretrain_cli, "LAUNCHER", lambda cmd: seen.append(cmd) or 0)
    result = CliRunner().invoke(app, ["pretrain", "--num-processes", "4", "--num-machines", "2",
                                      "--machine-rank", "1", "--main-process-ip", "10.1.2.3",
                                      "train.max_steps=5", f"output.dir={tmp_path}"])
    assert result.exit_code == 0, result.output
    (cmd,) = seen
    assert cmd[1:3] == ["-m", "mlmkit.training.launcher"]
    assert cmd[cmd.index("--num_processes") + 1] == "4" and cmd[cmd.index("--machine_rank") + 1] == "1"
    assert cmd[cmd.index("--main_process_ip") + 1] == "10.1.2.3"
    assert cmd[-5:] == ["-m", "mlmkit", "pretrain", "train.max_steps=5", f"output.dir={tmp_path}"]


def test_accelerate_config_file_is_passed_through():
    cmd = launch_command(["pretrain"], _options(config="fsdp.yaml"))
    assert cmd[cmd.index("--config_file") + 1] == "fsdp.yaml" and "--multi_gpu" not in cmd
    assert strip_launch_flags(["pretrain", "--num-processes", "2", "--accelerate-config=x.yaml", "a=b"]) == \
        ["pretrain", "a=b"]


def _options(config=None):
    from mlmkit.training.launch import LaunchOptions

    return LaunchOptions(num_processes=8, config_file=config)
