"""Token-task evaluation over two CPU processes (gloo): every sentence scored once, as in one process.

Rows of different lengths are padded across processes and the duplicates Accelerate adds to even out
the last batch are dropped; with a learning rate too small to change the weights, two processes must
give exactly the scores of one.
"""

import json
import os
import subprocess
import sys

import pytest

from conftest import free_port


def _run(model_dir, data, out, processes):
    cmd = [sys.executable, "-m", "mlmkit", "finetune", "ner", "--model", str(model_dir), "--dataset", str(data),
           "--output", str(out), "--max-steps", "1", "--json", "train.lr=1e-12", "train.batch_size=4",
           "train.eval_batch_size=3", "data.eval_fraction=0.5", "data.max_seq_length=32",
           "model.attn_implementation=null", "train.mixed_precision=no"]
    if processes > 1:
        cmd += ["--num-processes", str(processes), "--main-process-port", str(free_port())]
    proc = subprocess.run(cmd, env=dict(os.environ, OMP_NUM_THREADS="1"), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout[proc.stdout.index("{"):])


@pytest.mark.slow
def test_two_processes_score_every_sentence_once(tiny_model_dir, tmp_path):
    words = ["the", "cat", "likes", "a", "quiet", "street", "today", "."]
    lines = []
    for i in range(34):  # 17 evaluation sentences: not a multiple of 2 processes x 3 per batch
        sentence = words[: 3 + i % 6]
        lines += [f"{w}\t{'B-ANIMAL' if w == 'cat' else 'O'}" for w in sentence] + [""]
    data = tmp_path / "tags.conll"
    data.write_text("\n".join(lines) + "\n", encoding="utf-8")
    one = _run(tiny_model_dir, data, tmp_path / "one", 1)
    two = _run(tiny_model_dir, data, tmp_path / "two", 2)
    assert one["data"]["eval_examples"] == two["data"]["eval_examples"] == 17
    assert sum(row["support"] for row in one["per_class"]) == 17  # one cat per sentence
    assert one["per_class"] == two["per_class"]
    for key in ("accuracy", "f1"):
        assert one["metrics"][key] == two["metrics"][key]
    assert two["eval_loss"] == pytest.approx(one["eval_loss"], rel=1e-4)
