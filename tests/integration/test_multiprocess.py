"""Two CPU processes (gloo) through Accelerate's launcher, against one process with the same global batch.

Pre-training draws different masks per process, so its held-out loss agrees only statistically
(within 5%); fine-tuning differs only in dropout draws (within 2%).
"""

import json
import os
import shutil
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from conftest import free_port
from mlmkit.cli import pretrain as pretrain_cli
from mlmkit.cli.app import app
from mlmkit.io.outputs import read_metrics
from mlmkit.training.checkpoint import list_checkpoints
from mlmkit.training.launch import launch_command, strip_launch_flags

STEPS = 16
#: after 16 steps the two runs see the same samples in the same order but different random masks
#: (masks are drawn per process), so held-out loss agrees only statistically: within 5%.
TOLERANCE = 0.05


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


@pytest.fixture(scope="module")
def runs(tiny_model_dir, corpus_file, tmp_path_factory):
    root = tmp_path_factory.mktemp("mp")
    one = _run(_args(tiny_model_dir, corpus_file, root / "one", 8), 1)
    two = _run(_args(tiny_model_dir, corpus_file, root / "two", 4), 2)
    return root, one, two


def test_two_processes_match_one_process_with_same_global_batch(runs):
    root, one, two = runs
    assert one["steps"] == two["steps"] == STEPS
    assert one["before"] == two["before"]  # same fixed evaluation masks, same starting weights
    drop_one = one["before"]["eval_loss"] - one["after"]["eval_loss"]
    drop_two = two["before"]["eval_loss"] - two["after"]["eval_loss"]
    assert drop_one > 0.2 and drop_two > 0.2
    assert abs(one["after"]["eval_loss"] - two["after"]["eval_loss"]) <= TOLERANCE * one["after"]["eval_loss"]
    # only the main process writes: one metrics line per logging step, no duplicates
    steps = [r["step"] for r in read_metrics(root / "two" / "metrics.jsonl") if r["split"] == "train"]
    assert steps == [1, 4, 8, 12, 16]


def test_resume_two_process_checkpoint_with_one_process(runs, tiny_model_dir, corpus_file):
    root, _, two = runs
    run = root / "two-resumed"
    shutil.copytree(root / "two", run)
    for checkpoint in list_checkpoints(run)[1:]:
        shutil.rmtree(checkpoint)  # keep only step 8
    (run / "model.safetensors").unlink()
    resumed = _run([*_args(tiny_model_dir, corpus_file, run, 8), "--resume", "auto"], 1)
    assert resumed["steps"] == STEPS
    assert resumed["resumed_from"].endswith("step-00000008")
    assert resumed["before"] == two["before"]
    assert abs(resumed["after"]["eval_loss"] - two["after"]["eval_loss"]) <= TOLERANCE * two["after"]["eval_loss"]


def test_launcher_is_injectable_and_builds_accelerate_command(monkeypatch, tmp_path):
    seen = []
    monkeypatch.setattr(pretrain_cli, "LAUNCHER", lambda cmd: seen.append(cmd) or 0)
    result = CliRunner().invoke(app, ["pretrain", "--num-processes", "4", "--num-machines", "2",
                                      "--machine-rank", "1", "--main-process-ip", "10.1.2.3",
                                      "train.max_steps=5", f"output.dir={tmp_path}"])
    assert result.exit_code == 0, result.output
    (cmd,) = seen
    assert cmd[1:3] == ["-m", "accelerate.commands.launch"]
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


def _finetune(model_dir, data, out, processes):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "mlmkit", "finetune", "sentiment", "--model", str(model_dir), "--dataset", str(data),
           "--output", str(out), "--max-steps", "12", "--json", f"train.batch_size={16 // processes}",
           "train.lr=1e-3"]
    if processes > 1:
        cmd += ["--num-processes", str(processes), "--main-process-port", "29534"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count('"eval_source"') == 1  # only the main process reports
    return json.loads(proc.stdout[proc.stdout.index("{"):])


def test_two_process_finetuning_matches_one_process(tiny_model_dir, tmp_path):
    import random

    rng = random.Random(0)
    rows = ["text,label"] + [f"the cat likes {'pancakes' if i % 2 else 'the station'} {rng.randint(0, 99)},"
                             f"{'good' if i % 2 else 'bad'}" for i in range(200)]
    data = tmp_path / "labelled.csv"
    data.write_text("\n".join(rows) + "\n")
    one = _finetune(tiny_model_dir, data, tmp_path / "one", 1)
    two = _finetune(tiny_model_dir, data, tmp_path / "two", 2)
    assert one["steps"] == two["steps"] == 12
    # same global batch and data order; only dropout draws differ between the runs: eval loss within 2%
    assert abs(one["eval_loss"] - two["eval_loss"]) <= 0.02 * one["eval_loss"]
    from transformers import pipeline

    assert pipeline("text-classification", model=str(tmp_path / "two"))("the cat likes pancakes")[0]["label"] in \
        {"good", "bad"}
