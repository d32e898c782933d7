"""Promises of the pre-training loop that had no test: gradient accumulation, AdamW parameter groups,
clipping, the LR schedule, SIGINT, ``--resume PATH``, dataloader workers, ``train.compile`` and
mixed precision on CPU. Each comes with a control run that breaks the promise and must differ."""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import signal
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file
from teeth_helpers import predicted, record_masked_batches, run_config, run_overrides, save_tiny_model
from typer.testing import CliRunner

from mlmkit.cli.app import app
from mlmkit.errors import UserError
from mlmkit.io.outputs import read_metrics
from mlmkit.masking.collator import MaskingCollator
from mlmkit.training import pretrain as pretrain_module
from mlmkit.training.checkpoint import list_checkpoints
from mlmkit.training.optim import build_optimizer, resolve_mixed_precision
from mlmkit.training.pretrain import pretrain

#: float32 weights after a few AdamW steps whose gradients differ only by summation order
REASSOCIATION_ATOL = 1e-5


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, wordpiece_tokenizer):
    return save_tiny_model(tmp_path_factory.mktemp("teeth-model"), wordpiece_tokenizer)


def weights(run_dir) -> dict[str, torch.Tensor]:
    return load_file(run_dir / "model.safetensors")


def max_weight_difference(a, b) -> float:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    return max(float((wa[k] - wb[k]).abs().max()) for k in wa)


def train_records(run_dir) -> list[dict]:
    return [r for r in read_metrics(run_dir / "metrics.jsonl") if r["split"] == "train"]


# ---------------------------------------------------------------------------------------------- grad_accum
class HalvesLikeAccumulation(MaskingCollator):
    """Masks the two halves of a 16-row batch as a grad_accum=2 run masks its two micro-batches of 8."""

    def mask(self, batch, step, micro_step=0):
        half = batch["input_ids"].shape[0] // 2
        parts = [super(HalvesLikeAccumulation, self).mask({k: v[rows] for k, v in batch.items()}, step, 2 * step + i)
                 for i, rows in enumerate((slice(0, half), slice(half, None)))]
        return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}


@pytest.mark.slow
def test_grad_accum_2x8_equals_batch_16_with_the_same_masks(model_dir, corpus_file, tmp_path, monkeypatch):
    # exactly one predicted token per row (4% of at most 32 tokens, at least 1): both runs average the loss over
    # equal counts, so the accumulated gradient (mean of two micro-batch means) equals the big batch's mean
    common = ("masking.exact=true", "masking.ratio=0.04", "masking.min_predictions=1", "train.max_steps=3",
              "train.lr=1e-2")
    accumulated = record_masked_batches(monkeypatch)
    pretrain(run_config(model_dir, corpus_file, tmp_path / "accum", "train.grad_accum=2", *common))
    accumulated = list(accumulated)

    class Recording(HalvesLikeAccumulation):
        def mask(self, batch, step, micro_step=0):
            out = super().mask(batch, step, micro_step)
            big.append({"step": step, "input_ids": out["input_ids"], "labels": out["labels"]})
            return out

    big: list[dict] = []
    monkeypatch.setattr(pretrain_module, "MaskingCollator", Recording)
    pretrain(run_config(model_dir, corpus_file, tmp_path / "big", "train.batch_size=16", *common))
    assert [r["micro_step"] for r in accumulated] == list(range(6)) and [r["step"] for r in big] == [0, 1, 2]
    for step, record in enumerate(big):
        pair = accumulated[2 * step: 2 * step + 2]
        assert [r["step"] for r in pair] == [step, step]
        assert torch.equal(record["input_ids"], torch.cat([r["input_ids"] for r in pair]))
        assert torch.equal(record["labels"], torch.cat([r["labels"] for r in pair]))
    assert all(bool((predicted(r).sum(dim=1) == 1).all()) for r in accumulated)  # the premise above
    assert [r["lr"] for r in train_records(tmp_path / "accum")] == [r["lr"] for r in train_records(tmp_path / "big")]
    assert max_weight_difference(tmp_path / "accum", tmp_path / "big") <= REASSOCIATION_ATOL

    # control: the same batch of 16 masked with its own masks (as a loop ignoring micro steps would) differs
    monkeypatch.setattr(pretrain_module, "MaskingCollator", MaskingCollator)
    pretrain(run_config(model_dir, corpus_file, tmp_path / "own-masks", "train.batch_size=16", *common))
    assert max_weight_difference(tmp_path / "accum", tmp_path / "own-masks") > 100 * REASSOCIATION_ATOL


# ---------------------------------------------------------------------------------------------- optimizer
def test_adamw_decays_matrices_but_not_biases_or_norms(wordpiece_tokenizer):
    from conftest import build_tiny_bert
    from mlmkit.modeling.sparse_head import SparseMLM

    model = SparseMLM(build_tiny_bert(wordpiece_tokenizer, dropout=0.0))
    optimizer = build_optimizer(model, lr=0.1, weight_decay=0.5)
    decay, no_decay = optimizer.param_groups
    assert decay["weight_decay"] == 0.5 and no_decay["weight_decay"] == 0.0
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = {names[id(p)] for p in decay["params"]}
    kept = {names[id(p)] for p in no_decay["params"]}
    assert decayed | kept == set(names.values()) and not decayed & kept
    assert kept and all(n.endswith(".bias") or "LayerNorm" in n for n in kept)
    assert all(n.endswith(".weight") and "LayerNorm" not in n for n in decayed)
    assert any("word_embeddings" in n for n in decayed) and any("LayerNorm.weight" in n for n in kept)
    # behaviour, not only bookkeeping: with zero gradients one step shrinks exactly the decayed tensors
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    optimizer.step()
    for name, param in model.named_parameters():
        factor = 1 - 0.1 * 0.5 if name in decayed else 1.0
        torch.testing.assert_close(param.detach(), before[name] * factor)


def test_gradient_clipping_bounds_the_norm_the_optimizer_sees(model_dir, corpus_file, tmp_path):
    from torch.optim.optimizer import register_optimizer_step_pre_hook

    norms: list[float] = []

    def record(optimizer, args, kwargs):
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        norms.append(float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))))

    handle = register_optimizer_step_pre_hook(record)
    try:
        pretrain(run_config(model_dir, corpus_file, tmp_path / "clipped", "train.max_grad_norm=0.05"))
        clipped = list(norms)
        norms.clear()
        pretrain(run_config(model_dir, corpus_file, tmp_path / "free", "train.max_grad_norm=0"))
    finally:
        handle.remove()
    assert len(clipped) == len(norms) == 4
    assert all(n <= 0.05 * (1 + 1e-4) for n in clipped)
    assert min(norms) > 0.05  # the control: unclipped gradients are larger, so the bound did something


@pytest.mark.parametrize("name", ["cosine", "linear"])
def test_lr_follows_the_warmup_and_schedule_shape(name, model_dir, corpus_file, tmp_path):
    steps, warmup, lr = 8, 2, 1e-3
    pretrain(run_config(model_dir, corpus_file, tmp_path / "run", f"train.max_steps={steps}", f"train.lr={lr}",
                        f"train.lr_scheduler={name}", f"train.warmup_ratio={warmup / steps}"))
    logged = [r["lr"] for r in train_records(tmp_path / "run")]
    expected = []
    for t in range(1, steps + 1):  # the rate after t scheduler steps (that of optimizer step t + 1)
        if t < warmup:
            expected.append(lr * t / warmup)
        else:
            progress = (t - warmup) / (steps - warmup)
            expected.append(lr * (0.5 * (1 + math.cos(math.pi * progress)) if name == "cosine" else 1 - progress))
    assert logged == pytest.approx(expected, abs=1e-12)


# ---------------------------------------------------------------------------------------------- interrupts and resume
@pytest.mark.slow
def test_sigint_exits_130_with_a_resumable_checkpoint(model_dir, corpus_file, tmp_path):
    out = tmp_path / "run"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlmkit", "pretrain",
         *run_overrides(model_dir, corpus_file, out, "train.max_steps=100000", "train.log_every=1")],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lines = []
    try:
        for line in proc.stderr:  # plain progress lines: the loop is stepping once one names step 2
            lines.append(line)
            if "pretrain 2/" in line:
                break
        proc.send_signal(signal.SIGINT)
        _, rest = proc.communicate(timeout=300)  # a failure guard, not a wait
    finally:
        if proc.poll() is None:
            proc.kill()
    err = "".join(lines) + rest
    assert proc.returncode == 130, err[-2000:]
    assert "stopped by SIGINT" in err and "--resume auto" in err and "Traceback" not in err
    (checkpoint,) = list_checkpoints(out)
    step = int(checkpoint.name.split("-")[1])
    assert step >= 2 and not (out / "model.safetensors").exists()
    result = pretrain(run_config(model_dir, corpus_file, out, f"train.max_steps={step + 1}", "train.resume=auto"))
    assert result.resumed_from == str(checkpoint) and result.steps == step + 1


def test_resume_from_a_named_checkpoint_continues_exactly(model_dir, corpus_file, tmp_path):
    full = tmp_path / "full"
    extra = ("train.max_steps=6", "train.checkpoint_every=2", "train.keep_checkpoints=0")
    pretrain(run_config(model_dir, corpus_file, full, *extra))
    assert [c.name for c in list_checkpoints(full)] == ["step-00000002", "step-00000004", "step-00000006"]
    run = tmp_path / "resumed"
    shutil.copytree(full, run)
    (run / "model.safetensors").unlink()
    named = run / "checkpoints" / "step-00000002"  # not the newest: --resume PATH must take this one
    result = CliRunner().invoke(app, ["pretrain", *run_overrides(model_dir, corpus_file, run, *extra),
                                      "--resume", str(named), "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout[result.stdout.index("{"):])
    assert payload["resumed_from"] == str(named) and payload["steps"] == 6
    assert max_weight_difference(full, run) == 0.0
    # it continued from step 2, not from the newest checkpoint (step 4): steps 3 and 4 were logged a second time
    steps_logged = [r["step"] for r in train_records(run)]
    assert [steps_logged.count(s) for s in range(1, 7)] == [1, 1, 2, 2, 2, 2]


# ------------------------------------------------------------------------------ workers, compile, precision
@pytest.mark.slow
def test_dataloader_workers_keep_masks_and_weights_exact(model_dir, corpus_file, tmp_path, monkeypatch):
    seen = record_masked_batches(monkeypatch)
    pretrain(run_config(model_dir, corpus_file, tmp_path / "inline", "train.max_steps=3"))
    inline = list(seen)
    seen.clear()
    pretrain(run_config(model_dir, corpus_file, tmp_path / "workers", "train.max_steps=3", "train.num_workers=2"))
    assert len(seen) == len(inline) == 3
    for a, b in zip(inline, seen, strict=True):
        assert torch.equal(a["input_ids"], b["input_ids"]) and torch.equal(a["labels"], b["labels"])
    assert max_weight_difference(tmp_path / "inline", tmp_path / "workers") == 0.0


def test_compile_turns_the_last_layer_shortcut_and_cheap_dropout_off(model_dir, corpus_file, tmp_path, monkeypatch):
    built, swapped, compiled = [], [], []
    real_sparse, real_dropout = pretrain_module.SparseMLM, pretrain_module.use_fast_dropout

    def sparse(model, sparse=True, last_layer=False):
        built.append(last_layer)
        return real_sparse(model, sparse=sparse, last_layer=last_layer)

    monkeypatch.setattr(pretrain_module, "SparseMLM", sparse)
    monkeypatch.setattr(pretrain_module, "use_fast_dropout", lambda m: swapped.append(1) or real_dropout(m))
    # compiling takes minutes on CPU; what matters is what the loop hands to torch.compile
    monkeypatch.setattr(torch, "compile", lambda module, **kw: compiled.append(module) or module)
    pretrain(run_config(model_dir, corpus_file, tmp_path / "eager", "train.max_steps=1"))
    assert built == [True] and swapped == [1] and not compiled  # the control: both shortcuts on by default
    built.clear(), swapped.clear()
    pretrain(run_config(model_dir, corpus_file, tmp_path / "compiled", "train.max_steps=1", "train.compile=true"))
    assert built == [False] and swapped == [] and len(compiled) == 1
    assert isinstance(compiled[0], real_sparse)


def fresh_accelerate_state() -> None:
    """Forget Accelerate's process-wide state, which keeps the first run's precision for the whole process."""
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU resolution of mixed precision")
def test_mixed_precision_on_cpu_resolves_as_documented(model_dir, corpus_file, tmp_path, monkeypatch):
    assert resolve_mixed_precision("auto") == "no" and resolve_mixed_precision("bf16") == "bf16"
    assert resolve_mixed_precision("false") == "no"
    with pytest.raises(UserError, match="fp16 needs a CUDA GPU"):
        resolve_mixed_precision("fp16")
    dtypes: list[torch.dtype] = []
    real_load = pretrain_module.load_mlm_model

    def load(*args, **kwargs):
        model, tokenizer, fresh = real_load(*args, **kwargs)
        first = next(m for m in model.modules() if isinstance(m, torch.nn.Linear))
        first.register_forward_hook(lambda module, inputs, output: dtypes.append(output.dtype))
        return model, tokenizer, fresh

    monkeypatch.setattr(pretrain_module, "load_mlm_model", load)
    fresh_accelerate_state()
    pretrain(run_config(model_dir, corpus_file, tmp_path / "auto", "train.max_steps=1",
                        "train.mixed_precision=auto"))
    assert dtypes and set(dtypes) == {torch.float32}
    dtypes.clear()
    fresh_accelerate_state()
    try:
        pretrain(run_config(model_dir, corpus_file, tmp_path / "bf16", "train.max_steps=1",
                            "train.mixed_precision=bf16"))
    finally:
        fresh_accelerate_state()
    assert torch.bfloat16 in dtypes  # the training step ran under bf16 autocast
    assert weights(tmp_path / "bf16")["bert.embeddings.word_embeddings.weight"].dtype == torch.float32


@pytest.mark.parametrize("minutes, expected", [(1e-9, [1, 2, 3, 4]), (60, [4])])
def test_checkpoint_minutes_saves_when_the_interval_has_passed(minutes, expected, model_dir, corpus_file, tmp_path):
    # 1e-9 minutes have always passed by the end of a step: a checkpoint after every step (and the final state);
    # an hour never has in this run: only the final state
    out = tmp_path / "run"
    pretrain(run_config(model_dir, corpus_file, out, f"train.checkpoint_minutes={minutes}", "train.keep_checkpoints=0"))
    assert [int(c.name.split("-")[1]) for c in list_checkpoints(out)] == expected


@pytest.mark.slow
def test_sigint_to_a_two_process_run_stops_every_process_with_a_checkpoint(model_dir, corpus_file, tmp_path):
    """Ctrl-C reaches the command the user typed; it passes the signal to the launcher and waits, so both
    workers stop at a step boundary with one checkpoint, one notice, exit code 130, no traceback and no
    process left."""
    import psutil

    from conftest import free_port

    out = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlmkit", "pretrain", "--num-processes", "2", "--main-process-port", str(free_port()),
         *run_overrides(model_dir, corpus_file, out, "train.max_steps=100000", "train.log_every=1")],
        env=dict(os.environ, OMP_NUM_THREADS="1"), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    family = []
    lines = []
    try:
        for line in proc.stderr:
            lines.append(line)
            if "pretrain 2/" in line:
                family = psutil.Process(proc.pid).children(recursive=True)
                break
        proc.send_signal(signal.SIGINT)
        _, rest = proc.communicate(timeout=300)  # a failure guard, not a wait
    finally:
        for member in [*family, proc]:
            with contextlib.suppress(psutil.NoSuchProcess):
                psutil.Process(member.pid).kill()
    err = "".join(lines) + rest
    assert proc.returncode == 130, err[-3000:]
    assert len(family) >= 3  # the launcher and its two workers
    assert not [p for p in family if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert err.count("stopped by SIGINT") == 1 and "--resume auto" in err
    assert "Traceback" not in err and "SignalException" not in err  # the launcher stops quietly too
    (checkpoint,) = list_checkpoints(out)
    assert int(checkpoint.name.split("-")[1]) >= 2 and not (out / "model.safetensors").exists()
