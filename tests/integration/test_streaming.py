"""Streamed corpora: read lazily, trained over several passes, resumed from the saved stream position."""

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from mlmkit.config import PretrainConfig, load_config
from mlmkit.data.sources import load_text_corpus
from mlmkit.errors import UserError
from mlmkit.training.checkpoint import list_checkpoints
from mlmkit.training.pretrain import pretrain


@pytest.fixture(scope="module")
def jsonl_corpus(tmp_path_factory, corpus):
    path = tmp_path_factory.mktemp("stream") / "docs.jsonl"
    path.write_text("".join(json.dumps({"body": t, "id": i}) + "\n" for i, t in enumerate(corpus)))
    return path


def _cfg(model_dir, source, out, *extra):
    return load_config(PretrainConfig, None, [
        f"model.name_or_path={model_dir}", f"data.source={source}", "data.text_column=body", "data.streaming=true",
        "data.max_seq_length=32", "data.eval_max_blocks=8", "train.max_steps=16", "train.batch_size=8",
        "train.lr=3e-3", "train.checkpoint_every=8", "train.keep_checkpoints=0", f"output.dir={out}", *extra])


def test_streamed_corpus_is_lazy_and_keeps_columns(jsonl_corpus, corpus):
    import datasets

    stream = load_text_corpus(str(jsonl_corpus), "body", streaming=True)
    assert isinstance(stream, datasets.IterableDataset)
    assert [row["text"] for row in stream.take(3)] == corpus[:3]


def test_streaming_pretrain_runs_several_passes_and_resumes_exactly(tiny_model_dir, jsonl_corpus, tmp_path):
    reference = tmp_path / "reference"
    result = pretrain(_cfg(tiny_model_dir, jsonl_corpus, reference))
    # 200 short documents make ~80 blocks, 8 held out: 16 steps of 8 blocks need two passes
    assert result.steps == 16
    assert result.after["eval_loss"] < result.before["eval_loss"]
    state = json.loads((list_checkpoints(reference)[0] / "trainer_state.json").read_text())
    assert state["step"] == 8 and len(state["data_state"]) == 1 and state["data_state"][0]

    resumed = tmp_path / "resumed"
    shutil.copytree(reference, resumed)
    for later in list_checkpoints(resumed)[1:]:
        shutil.rmtree(later)
    (resumed / "model.safetensors").unlink()
    again = pretrain(_cfg(tiny_model_dir, jsonl_corpus, resumed, "train.resume=auto"))
    assert again.resumed_from == str(list_checkpoints(resumed)[0]) and again.steps == 16
    expected, got = load_file(reference / "model.safetensors"), load_file(resumed / "model.safetensors")
    assert all(torch.equal(expected[k], got[k]) for k in expected)


def test_streaming_errors(tiny_model_dir, tmp_path, jsonl_corpus):
    empty = tmp_path / "empty.jsonl"
    empty.write_text(json.dumps({"body": "  "}) + "\n")
    with pytest.raises(UserError, match="no non-empty text"):
        pretrain(_cfg(tiny_model_dir, empty, tmp_path / "a"))
    with pytest.raises(UserError, match="available columns"):
        pretrain(_cfg(tiny_model_dir, jsonl_corpus, tmp_path / "b", "data.text_column=title"))
    with pytest.raises(UserError, match="no training blocks"):
        pretrain(_cfg(tiny_model_dir, jsonl_corpus, tmp_path / "c", "data.eval_max_blocks=100000"))
