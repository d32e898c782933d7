"""Crash safety: kill -9 at a random step, resume, and end bitwise equal to an uninterrupted run."""

import os
import random
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from mlmkit.config import PretrainConfig, load_config
from mlmkit.errors import UserError
from mlmkit.training.checkpoint import list_checkpoints, resolve_resume, verify_checkpoint
from mlmkit.training.pretrain import pretrain
from mlmkit.training.stopping import parse_duration

STEPS = 60


def _overrides(model_dir, corpus_file, out, *extra):
    return [f"model.name_or_path={model_dir}", f"data.source={corpus_file}", "data.max_seq_length=32",
            f"train.max_steps={STEPS}", "train.batch_size=8", "train.lr=2e-3", "train.log_every=50",
            "train.checkpoint_every=2", "train.keep_checkpoints=2", f"output.dir={out}", *extra]


def _weights(path):
    return load_file(path / "model.safetensors")


def _env():
    env = dict(os.environ)
    # same thread count as this process so floating-point reductions happen in the same order
    env["OMP_NUM_THREADS"] = str(torch.get_num_threads())
    env["MLMKIT_TEST_THREADS"] = str(torch.get_num_threads())
    return env


def test_kill_9_then_resume_is_bitwise_identical(tiny_model_dir, corpus_file, tmp_path):
    reference = tmp_path / "reference"  # checkpointing reads RNG states but never draws from them
    pretrain(load_config(PretrainConfig, None, _overrides(tiny_model_dir, corpus_file, reference,
                                                          "train.checkpoint_every=0")))

    run = tmp_path / "killed"
    target = random.Random(os.getpid()).randrange(4, STEPS // 2, 2)
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlmkit", "pretrain", *_overrides(tiny_model_dir, corpus_file, run)],
        env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        done = list_checkpoints(run)
        if done and int(done[-1].name.split("-")[1]) >= target:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.002)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    assert not (run / "model.safetensors").exists()
    latest = resolve_resume("auto", run)
    assert latest is not None and int(latest.name.split("-")[1]) >= target

    result = pretrain(load_config(PretrainConfig, None, _overrides(tiny_model_dir, corpus_file, run,
                                                                   "train.resume=auto")))
    assert result.steps == STEPS
    assert result.resumed_from == str(latest)  # it really continued, not restarted
    expected, got = _weights(reference), _weights(run)
    assert expected.keys() == got.keys()
    for name in expected:
        assert torch.equal(expected[name], got[name]), f"{name} differs after resume"


def test_corrupt_checkpoint_is_reported_and_auto_falls_back(tiny_model_dir, corpus_file, tmp_path):
    run = tmp_path / "run"
    pretrain(load_config(PretrainConfig, None, _overrides(tiny_model_dir, corpus_file, run, "train.max_steps=6",
                                                          "train.keep_checkpoints=0")))
    checkpoints = list_checkpoints(run)
    assert [c.name for c in checkpoints] == ["step-00000002", "step-00000004", "step-00000006"]
    newest = checkpoints[-1]
    weights = next(newest.glob("model*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:-16] + b"\0" * 16)  # same size, wrong bytes
    with pytest.raises(UserError, match="checksum"):
        verify_checkpoint(newest)
    with pytest.raises(UserError, match="corrupt"):
        resolve_resume(str(newest), run)
    assert resolve_resume("auto", run) == checkpoints[-2]  # the previous one is intact and used

    # a run resumed with auto says so, and trains on from the intact checkpoint
    import io

    from rich.console import Console

    (run / "model.safetensors").unlink()
    out = io.StringIO()
    overrides = _overrides(tiny_model_dir, corpus_file, run, "train.max_steps=6", "train.keep_checkpoints=0",
                           "train.resume=auto")
    result = pretrain(load_config(PretrainConfig, None, overrides), console=Console(file=out, width=400,
                                                                                    color_system=None))
    assert result.resumed_from == str(checkpoints[-2]) and result.steps == 6
    assert f"resuming from {checkpoints[-2]}, the newest intact checkpoint" in " ".join(out.getvalue().split())


def test_keep_last_k_and_no_partial_directories(tiny_model_dir, corpus_file, tmp_path):
    run = tmp_path / "run"
    pretrain(load_config(PretrainConfig, None, _overrides(tiny_model_dir, corpus_file, run, "train.max_steps=9")))
    names = sorted(p.name for p in (run / "checkpoints").iterdir())
    # every 2 steps, plus the final state at step 9; only the newest two are kept
    assert names == ["step-00000008", "step-00000009"]
    for checkpoint in list_checkpoints(run):
        verify_checkpoint(checkpoint)


def test_time_budget_stops_cleanly_with_checkpoint(tiny_model_dir, corpus_file, tmp_path):
    run = tmp_path / "run"
    result = pretrain(load_config(PretrainConfig, None, _overrides(
        tiny_model_dir, corpus_file, run, "train.max_steps=100000", "train.max_time=0.5s",
        "train.checkpoint_every=0")))
    assert 0 < result.steps < 100000
    assert (run / "model.safetensors").is_file()
    assert int(list_checkpoints(run)[-1].name.split("-")[1]) == result.steps
    assert result.after["eval_tokens"] > 0


def _text(path):
    return path.read_text() if path.exists() else ""


def test_sigterm_saves_a_checkpoint_and_says_how_to_resume(tiny_model_dir, corpus_file, tmp_path):
    run = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlmkit", "pretrain",
         *_overrides(tiny_model_dir, corpus_file, run, "train.max_steps=100000", "train.checkpoint_every=0")],
        env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    # the first training line is written inside the loop, where SIGTERM is caught (the deadline only
    # guards against a run that never gets there)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None and '"split": "train"' not in _text(run / "metrics.jsonl"):
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "--resume auto" in err and "Traceback" not in err
    assert len(list_checkpoints(run)) == 1


@pytest.mark.parametrize("text, seconds", [("2h", 7200), ("1h30m", 5400), ("90s", 90), ("45", 45), ("0.5m", 30)])
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


def test_parse_duration_rejects_nonsense():
    with pytest.raises(UserError):
        parse_duration("soon")


def test_resume_auto_without_a_checkpoint_starts_fresh_but_a_named_one_must_exist(tiny_model_dir, corpus_file,
                                                                                tmp_path):
    """`train.resume=auto` is safe to put in every job script: with nothing to resume it simply starts."""
    run = tmp_path / "run"
    result = pretrain(load_config(PretrainConfig, None, _overrides(tiny_model_dir, corpus_file, run,
                                                                   "train.max_steps=2", "train.resume=auto")))
    assert result.resumed_from is None and result.steps == 2 and (run / "model.safetensors").is_file()
    with pytest.raises(UserError, match="step-00000099"):
        pretrain(load_config(PretrainConfig, None, _overrides(
            tiny_model_dir, corpus_file, tmp_path / "other", "train.max_steps=2",
            f"train.resume={tmp_path / 'other' / 'checkpoints' / 'step-00000099'}")))
