"""A workspace of good and broken inputs shared by the robustness tests.

Everything is built here in a few seconds: a tiny model directory and damaged copies of
it, corpora good and bad, recipes good and bad, a non-empty output directory, and run
directories whose checkpoints are damaged or interrupted.
"""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import pytest

LABELS = ["positive", "negative"]


def _edit_json(path: Path, **changes) -> None:
    data = json.loads(path.read_text())
    for key, value in changes.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    path.write_text(json.dumps(data))


def _truncate(path: Path) -> None:
    with open(path, "r+b") as handle:
        handle.truncate(path.stat().st_size // 2)


class FakeAccelerator:
    """Enough of Accelerator for save_checkpoint: one small weights file per checkpoint."""

    is_main_process = True

    def wait_for_everyone(self):
        pass

    def save_state(self, directory, safe_serialization=True):
        (Path(directory) / "model.safetensors").write_bytes(b"w" * 64)


def _runs(ws: Path) -> None:
    from mlmkit.training.checkpoint import TrainerState, save_checkpoint

    for name in ("run", "all-damaged"):
        run = ws / name
        run.mkdir()
        (run / "config.yaml").write_text("train:\n  max_steps: 8\n")
        (run / "metrics.jsonl").write_text('{"step": 0, "split": "eval"}\n')
        for step in (2, 4):
            save_checkpoint(FakeAccelerator(), run, TrainerState(step=step), "a: 1\n", keep=0)
    _truncate(ws / "run" / "checkpoints" / "step-00000004" / "model.safetensors")
    for step in (2, 4):
        _truncate(ws / "all-damaged" / "checkpoints" / f"step-{step:08d}" / "model.safetensors")
    interrupted = ws / "run" / "checkpoints" / "step-00000006"  # a checkpoint copied without its manifest
    interrupted.mkdir()
    (interrupted / "model.safetensors").write_bytes(b"w" * 10)
    manifest = ws / "run" / "checkpoints" / "step-00000002" / "manifest.json"
    shutil.copytree(manifest.parent, ws / "bad-manifest" / "checkpoints" / "step-00000002")
    (ws / "bad-manifest" / "checkpoints" / "step-00000002" / "manifest.json").write_text('{"files": [1, 2')


def _models(ws: Path, source: Path) -> None:
    damage = {
        "truncated": lambda d: _truncate(d / "model.safetensors"),
        "no-weights": lambda d: (d / "model.safetensors").unlink(),
        "bad-config": lambda d: (d / "config.json").write_text('{"model_type": "bert", "hidden_'),
        "no-model-type": lambda d: _edit_json(d / "config.json", model_type=None),
        "bad-tokenizer": lambda d: (d / "tokenizer.json").write_text('{"version": "1.0", "model": {'),
        "no-mask": lambda d: _edit_json(d / "tokenizer_config.json", mask_token=None),
        "classifier": lambda d: _edit_json(d / "config.json", architectures=["BertForSequenceClassification"]),
    }
    shutil.copytree(source, ws / "model")
    for name, fn in damage.items():
        shutil.copytree(source, ws / name)
        fn(ws / name)


def _files(ws: Path, corpus: list[str]) -> None:
    (ws / "corpus.txt").write_text("\n".join(corpus) + "\n")
    rows = "".join(f'"{text}",{LABELS[i % 2]}\n' for i, text in enumerate(corpus[:60]))
    (ws / "labelled.csv").write_text("text,label\n" + rows)
    (ws / "empty.txt").write_text("\n \n\n")
    (ws / "binary.bin").write_bytes(bytes(range(256)) * 8)
    (ws / "latin1.txt").write_bytes("caf\xe9 au lait, cr\xe8me br\xfbl\xe9e\n".encode("latin-1"))
    (ws / "fake.txt.gz").write_bytes(b"this was never compressed\n")
    (ws / "table.parquet.gz").write_bytes(gzip.compress(b"PAR1 not really parquet"))
    (ws / "a-file").write_text("a file where a directory is expected\n")
    (ws / "taken").mkdir()
    (ws / "taken" / "keep.txt").write_text("a result the user cares about\n")
    recipes = {
        "unsafe.yaml": 'train: !!python/object/apply:os.system ["echo pwned"]\n',
        "list.yaml": "- train\n- data\n",
        "broken.yaml": "train:\n  lr: [1e-4\n",
        "unknown-key.yaml": "train:\n  learning_rate: 0.1\n",
        "bad-value.yaml": "train:\n  weight_decay: -4\n",
    }
    (ws / "recipes").mkdir()
    for name, text in recipes.items():
        (ws / "recipes" / name).write_text(text)
    (ws / "images").mkdir()
    (ws / "images" / "a.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    (ws / "images" / "b.jpg").write_bytes(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00")
    (ws / "no-mask.txt").write_text("a line of text without any mask token\n")


@pytest.fixture(scope="session")
def workspace(tmp_path_factory, tiny_model_dir, corpus) -> Path:
    ws = tmp_path_factory.mktemp("robustness")
    _models(ws, Path(tiny_model_dir))
    _files(ws, corpus)
    _runs(ws)
    return ws
