"""Batches in which the masking strategy predicts nothing: counted, skipped, never a NaN or a fake zero loss."""

import json
import math

import pytest
import torch
from safetensors.torch import load_file

from mlmkit.config import PretrainConfig, load_config
from mlmkit.io.outputs import read_metrics
from mlmkit.training.checkpoint import list_checkpoints
from mlmkit.training.pretrain import pretrain

#: 0.15 for steps 0-1, then nothing to predict for steps 2-3 (the schedule reads the step index)
SCHEDULE = json.dumps({"name": "step", "milestones": [2], "ratios": [0.15, 0.0]})


@pytest.mark.slow
def test_empty_batches_are_skipped_and_counted(tiny_model_dir, corpus_file, tmp_path, one_torch_thread):
    run = tmp_path / "run"
    result = pretrain(load_config(PretrainConfig, None, [
        f"model.name_or_path={tiny_model_dir}", f"data.source={corpus_file}", "data.max_seq_length=32",
        "train.max_steps=4", "train.batch_size=8", "train.grad_accum=2", "train.log_every=1",
        "train.checkpoint_every=2", "train.keep_checkpoints=0", f"output.dir={run}",
        f"masking.schedule={SCHEDULE}",
    ]))
    assert result.steps == 4
    assert result.skipped_batches == 4  # steps 2 and 3, two micro-batches each
    train = [r for r in read_metrics(run / "metrics.jsonl") if r["split"] == "train"]
    assert [r["step"] for r in train] == [1, 2, 3, 4]
    # steps 1-2 learned from masked tokens; steps 3-4 predicted nothing: no loss rather than NaN or 0
    assert all(r["loss"] is not None and math.isfinite(r["loss"]) and r["loss"] > 0 for r in train[:2])
    assert [r["loss"] for r in train[2:]] == [None, None]
    assert [r.get("skipped_batches", 0) for r in train] == [0, 0, 2, 4]
    assert result.final_loss == train[1]["loss"]
    # skipped steps change no weight: the final model equals the checkpoint written after step 2
    step_two = next(c for c in list_checkpoints(run) if c.name == "step-00000002")
    # the checkpoint holds the training wrapper's state: the model's tensors under "model."
    saved = {name.removeprefix("model."): t for name, t in load_file(next(step_two.glob("model*.safetensors"))).items()}
    final = load_file(run / "model.safetensors")
    shared = [name for name in final if name in saved]
    assert len(shared) > 10
    for name in shared:
        assert torch.equal(saved[name], final[name]), name
    state = json.loads((list_checkpoints(run)[-1] / "trainer_state.json").read_text())
    assert state["skipped_batches"] == 4
