"""Preparation in several processes, written to disk as it goes, and prepared corpora read as a stream."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import make_corpus
from mlmkit.config.schema import PretrainDataConfig
from mlmkit.data import cache, packing
from mlmkit.masking.registry import build_strategy


@pytest.fixture
def corpus_path(tmp_path: Path) -> Path:
    path = tmp_path / "corpus.txt"
    path.write_text("\n".join(make_corpus(90, seed=11)) + "\n", encoding="utf-8")
    return path


def _data(corpus_path: Path, tmp_path: Path, **kwargs) -> PretrainDataConfig:
    return PretrainDataConfig(source=str(corpus_path), cache_dir=str(tmp_path / "prepared"), max_seq_length=32,
                              **kwargs)


def _strategy(tokenizer, **spec):
    strategy = build_strategy(spec)
    strategy.bind(tokenizer)
    return strategy


def _prepare(data, tokenizer, strategy, work_dir: Path) -> tuple[list[dict], list[str]]:
    """Rows of the packed blocks, and the Arrow files the preparation wrote in ``work_dir``."""
    blocks, _ = cache.prepare_blocks(data, tokenizer, strategy, work_dir=work_dir)
    return blocks.to_list(), sorted(p.name for p in work_dir.iterdir())


@pytest.mark.slow  # three spaCy pipelines load
def test_pos_tags_from_two_processes_equal_those_of_one(corpus_path, tmp_path, wordpiece_tokenizer, monkeypatch):
    monkeypatch.setattr(packing, "PACK_CHUNK", 17)  # several packing chunks, not aligned with the two shards
    strategy = _strategy(wordpiece_tokenizer, name="pos_weighted")
    one, one_files = _prepare(_data(corpus_path, tmp_path, num_proc=1), wordpiece_tokenizer, strategy,
                              tmp_path / "one")
    two, two_files = _prepare(_data(corpus_path, tmp_path, num_proc=2), wordpiece_tokenizer, strategy,
                              tmp_path / "two")
    assert two == one
    # every token of an ordinary word got a real tag; spaCy ran in each of the two tokenizing processes
    assert all(p >= 0 for row in one for p, w in zip(row["pos_ids"], row["word_ids"], strict=True) if w >= 0)
    assert one_files == ["blocks.arrow", "tokenized.arrow"]
    assert [f for f in two_files if f.startswith("tokenized")] == ["tokenized_00000_of_00002.arrow",
                                                                   "tokenized_00001_of_00002.arrow"]


def test_unset_num_proc_uses_every_core_for_big_corpora(monkeypatch):
    monkeypatch.setattr(cache.os, "cpu_count", lambda: 8)
    per = cache.DOCUMENTS_PER_PROCESS
    assert cache.preparation_processes(None, per - 1) == 1  # start-up of a worker would not pay back
    assert cache.preparation_processes(None, 3 * per) == 3
    assert cache.preparation_processes(None, 100 * per) == 8
    assert cache.preparation_processes(4, 10) == 4 and cache.preparation_processes(4, 2) == 2


def test_batches_go_to_disk_and_the_build_folder_is_removed(corpus_path, tmp_path, wordpiece_tokenizer,
                                                            monkeypatch):
    seen: list[list[str]] = []
    original = cache.prepare_blocks

    def recording(data, tokenizer, strategy, work_dir=None):
        blocks, documents = original(data, tokenizer, strategy, work_dir=work_dir)
        seen.append([f["filename"] for f in blocks.cache_files])
        assert all(Path(name).parent == work_dir for name in seen[-1])  # memory-mapped files, not Python lists
        return blocks, documents

    monkeypatch.setattr(cache, "prepare_blocks", recording)
    prepared = cache.prepared_corpus(_data(corpus_path, tmp_path), wordpiece_tokenizer,
                                     _strategy(wordpiece_tokenizer, name="content_word"))
    assert len(seen) == 1 and seen[0]
    assert not (prepared.path / cache.WORK_DIR).exists()
    assert [p.name for p in (tmp_path / "prepared").iterdir()] == [prepared.path.name]  # no build folder left
    assert cache.damage(prepared.path) is None


def test_streamed_prepared_corpus_gives_the_blocks_of_the_raw_stream(corpus_path, tmp_path, wordpiece_tokenizer,
                                                                     monkeypatch, preparations):
    monkeypatch.setattr(packing, "PACK_CHUNK", 17)
    strategy = _strategy(wordpiece_tokenizer, name="content_word")
    streamed = _data(corpus_path, tmp_path, streaming=True)
    notices: list[str] = []
    raw = list(cache.streamed_blocks(streamed, wordpiece_tokenizer, strategy, notify=notices.append))
    assert notices == [] and preparations == []

    prepared = cache.prepared_corpus(_data(corpus_path, tmp_path), wordpiece_tokenizer, strategy)
    stream = cache.streamed_blocks(streamed, wordpiece_tokenizer, strategy, notify=notices.append)
    assert len(preparations) == 1  # the stream read the prepared blocks, it did not prepare
    assert notices == [f"data: streaming the prepared corpus in {prepared.path}"]
    assert stream.num_shards == min(cache.STREAM_SHARDS, len(prepared.blocks)) > 1
    rows = list(stream)
    assert rows == raw == prepared.blocks.to_list()
    assert "content_word" in rows[0]


def test_damaged_prepared_corpus_is_streamed_raw_with_one_notice(corpus_path, tmp_path, wordpiece_tokenizer):
    strategy = _strategy(wordpiece_tokenizer, name="whole_word")
    prepared = cache.prepared_corpus(_data(corpus_path, tmp_path), wordpiece_tokenizer, strategy)
    expected = prepared.blocks.to_list()
    arrow = next(prepared.path.rglob("*.arrow"))
    del prepared
    arrow.write_bytes(arrow.read_bytes()[:64])
    notices: list[str] = []
    stream = cache.streamed_blocks(_data(corpus_path, tmp_path, streaming=True), wordpiece_tokenizer, strategy,
                                   notify=notices.append)
    assert len(notices) == 1 and "damaged" in notices[0] and "streaming the raw corpus" in notices[0]
    assert list(stream) == expected


def test_no_cache_streams_the_raw_corpus(corpus_path, tmp_path, wordpiece_tokenizer, preparations):
    strategy = _strategy(wordpiece_tokenizer, name="whole_word")
    cache.prepared_corpus(_data(corpus_path, tmp_path), wordpiece_tokenizer, strategy)
    notices: list[str] = []
    stream = cache.streamed_blocks(_data(corpus_path, tmp_path, streaming=True, cache=False), wordpiece_tokenizer,
                                   strategy, notify=notices.append)
    assert notices == [] and not stream.n_shards > 1  # the text file's single shard, not the prepared blocks
    assert len(list(stream)) > 0


@pytest.mark.slow  # three CLI runs
def test_masking_preview_stats_reuse_the_prepared_corpus(corpus_path, tmp_path, preparations, tiny_model_dir):
    import json

    from typer.testing import CliRunner

    from mlmkit.cli.app import app

    args = ["masking", "preview", "--corpus", str(corpus_path), "--stats", "--model", str(tiny_model_dir),
            "--strategy", "whole_word", "--block-size", "32", "--json"]
    runner = CliRunner()
    first = runner.invoke(app, args)
    second = runner.invoke(app, args)
    assert first.exit_code == 0 and second.exit_code == 0, first.output + second.output
    assert len(preparations) == 1  # the second --stats read the blocks the first one prepared
    assert "data: reusing the prepared corpus in" in second.stderr and "reusing" not in first.stderr
    assert json.loads(second.stdout) == json.loads(first.stdout)
    assert json.loads(first.stdout)["documents"] == 90
    # another seed masks the same prepared blocks
    third = runner.invoke(app, [*args, "--seed", "3"])
    assert third.exit_code == 0 and len(preparations) == 1
    assert json.loads(third.stdout)["blocks"] == json.loads(first.stdout)["blocks"]
