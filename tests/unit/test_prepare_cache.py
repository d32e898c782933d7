"""Prepared-corpus cache: hits, misses, damage, atomic writes, blocks that do not depend on num_proc, preparation in
several processes written to disk as it goes, and prepared corpora read as a stream."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from conftest import make_corpus, train_tokenizer
from mlmkit.config.schema import PretrainDataConfig
from mlmkit.data import cache, packing
from mlmkit.errors import UserError
from mlmkit.masking.registry import build_strategy


@pytest.fixture
def corpus_path(tmp_path: Path) -> Path:
    """120 documents of the toy corpus, one a line."""
    path = tmp_path / "corpus.txt"
    path.write_text("\n".join(make_corpus(120, seed=3)) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def data_config(corpus_path: Path, tmp_path: Path):
    """Data settings for ``corpus_path`` with prepared corpora under ``tmp_path/prepared`` (32-token blocks)."""

    def make(**kwargs) -> PretrainDataConfig:
        kwargs.setdefault("max_seq_length", 32)
        return PretrainDataConfig(source=str(corpus_path), cache_dir=str(tmp_path / "prepared"), **kwargs)

    return make


def _strategy(tokenizer, **spec):
    strategy = build_strategy(spec)
    strategy.bind(tokenizer)
    return strategy


def _rows(blocks) -> dict:
    return {"features": dict(blocks.features), "rows": blocks.to_dict()}


def test_second_identical_run_is_a_hit(data_config, wordpiece_tokenizer, preparations):
    data = data_config()
    strategy = _strategy(wordpiece_tokenizer, name="whole_word")
    first = cache.prepared_corpus(data, wordpiece_tokenizer, strategy)
    second = cache.prepared_corpus(data, wordpiece_tokenizer, strategy)
    assert len(preparations) == 1
    assert not first.reused and second.reused and first.path == second.path
    assert _rows(second.blocks) == _rows(first.blocks)
    assert second.documents == 120
    assert second.tokens == sum(len(ids) for ids in first.blocks["input_ids"])
    # strategies without features share the prepared corpus; masking-time parameters do not matter
    cache.prepared_corpus(data, wordpiece_tokenizer, _strategy(wordpiece_tokenizer, name="random", ratio=0.3))
    assert len(preparations) == 1


def test_in_memory_result_equals_the_cached_one(data_config, wordpiece_tokenizer):
    strategy = _strategy(wordpiece_tokenizer, name="content_word")
    cached = cache.prepared_corpus(data_config(), wordpiece_tokenizer, strategy)
    plain = cache.prepared_corpus(data_config(cache=False), wordpiece_tokenizer, strategy)
    assert plain.path is None and cached.path is not None
    assert _rows(plain.blocks) == _rows(cached.blocks)
    assert "content_word" in cached.blocks.column_names


@pytest.mark.slow
def test_misses_when_anything_the_blocks_depend_on_changes(data_config, corpus_path, tmp_path, wordpiece_tokenizer,
                                                           corpus, preparations):
    data = data_config()
    content = _strategy(wordpiece_tokenizer, name="content_word")
    base = cache.prepared_corpus(data, wordpiece_tokenizer, content)
    assert len(preparations) == 1

    other_length = cache.prepared_corpus(data_config(max_seq_length=16), wordpiece_tokenizer, content)
    assert len(preparations) == 2 and max(map(len, other_length.blocks["input_ids"])) == 16

    bpe = train_tokenizer("bpe", corpus)
    cache.prepared_corpus(data, bpe, _strategy(bpe, name="content_word"))
    assert len(preparations) == 3

    words = _strategy(wordpiece_tokenizer, name="content_word", function_words=["the", "a"])
    fewer = cache.prepared_corpus(data, wordpiece_tokenizer, words)
    assert len(preparations) == 4
    assert _rows(fewer.blocks) != _rows(base.blocks)  # other labels, so reusing would have been wrong

    with corpus_path.open("a", encoding="utf-8") as handle:
        handle.write("one more line about the weather\n")
    grown = cache.prepared_corpus(data, wordpiece_tokenizer, content)
    assert len(preparations) == 5 and grown.documents == 121

    assert len({p.name for p in (tmp_path / "prepared").iterdir()}) == 5


def test_a_word_list_file_is_keyed_by_its_content(data_config, tmp_path, wordpiece_tokenizer, preparations):
    words = tmp_path / "function-words.txt"
    words.write_text("the\na\n", encoding="utf-8")
    data = data_config()
    strategy = _strategy(wordpiece_tokenizer, name="content_word", function_words=str(words))
    cache.prepared_corpus(data, wordpiece_tokenizer, strategy)
    words.write_text("the\na\nmy\n", encoding="utf-8")
    cache.prepared_corpus(data, wordpiece_tokenizer,
                          _strategy(wordpiece_tokenizer, name="content_word", function_words=str(words)))
    assert len(preparations) == 2


def test_num_proc_two_gives_the_blocks_of_one(data_config, corpus_path, wordpiece_tokenizer, monkeypatch):
    # small packing chunks, so chunk boundaries and the two workers' shards do not line up
    monkeypatch.setattr(packing, "PACK_CHUNK", 23)
    strategy = _strategy(wordpiece_tokenizer, name="content_word")
    one = cache.prepare_blocks(data_config(num_proc=None), wordpiece_tokenizer, strategy)[0]
    two = cache.prepare_blocks(data_config(num_proc=2), wordpiece_tokenizer, strategy)[0]
    assert _rows(two) == _rows(one)
    # chunks of 23 documents were really used: each is cut into blocks on its own
    texts = corpus_path.read_text(encoding="utf-8").splitlines()
    lengths = [len(ids) for ids in wordpiece_tokenizer(texts)["input_ids"]]
    assert len(one) == sum(-(-sum(lengths[c:c + 23]) // 32) for c in range(0, len(lengths), 23))


def test_damaged_cache_is_rebuilt_with_one_notice(data_config, wordpiece_tokenizer, preparations):
    data = data_config()
    strategy = _strategy(wordpiece_tokenizer, name="whole_word")
    first = cache.prepared_corpus(data, wordpiece_tokenizer, strategy)
    expected = _rows(first.blocks)
    arrow = next(first.path.rglob("*.arrow"))
    del first
    arrow.write_bytes(arrow.read_bytes()[:100])  # truncated, as by a full disk or a killed copy
    notices: list[str] = []
    rebuilt = cache.prepared_corpus(data, wordpiece_tokenizer, strategy, notify=notices.append)
    assert len(preparations) == 2 and not rebuilt.reused
    assert len(notices) == 1 and "damaged" in notices[0] and arrow.name in notices[0]
    assert _rows(rebuilt.blocks) == expected
    assert cache.damage(rebuilt.path) is None

    (rebuilt.path / cache.MANIFEST).unlink()  # an interrupted build has no manifest
    cache.prepared_corpus(data, wordpiece_tokenizer, strategy, notify=notices.append)
    assert len(preparations) == 3 and "no manifest" in notices[1]


def test_failed_build_leaves_nothing_behind(data_config, tmp_path, wordpiece_tokenizer, monkeypatch):
    data = data_config()

    def broken(blocks):
        raise OSError("disk full")

    monkeypatch.setattr(cache, "count_tokens", broken)
    with pytest.raises(OSError, match="disk full"):
        cache.prepared_corpus(data, wordpiece_tokenizer, None)
    assert list((tmp_path / "prepared").iterdir()) == []


def test_list_and_clear(data_config, wordpiece_tokenizer):
    data = data_config()
    one = cache.prepared_corpus(data, wordpiece_tokenizer, None)
    two = cache.prepared_corpus(data_config(max_seq_length=16), wordpiece_tokenizer, None)
    entries = cache.list_prepared(data.cache_dir)
    assert {e.key for e in entries} == {one.path.name, two.path.name}
    assert {e.max_seq_length for e in entries} == {16, 32}
    assert all(e.documents == 120 and e.problem is None and e.size_bytes > 0 for e in entries)
    with pytest.raises(UserError, match="no prepared corpus 'nope'"):
        cache.clear_prepared(data.cache_dir, ["nope"])
    assert cache.clear_prepared(data.cache_dir, [one.path.name]) == [one.path.name]
    assert [e.key for e in cache.list_prepared(data.cache_dir)] == [two.path.name]
    cache.clear_prepared(data.cache_dir)
    assert cache.list_prepared(data.cache_dir) == []


def test_hub_datasets_are_not_cached_and_a_stream_finds_the_map_style_key(wordpiece_tokenizer, tmp_path):
    hub = PretrainDataConfig(source="wikitext", cache_dir=str(tmp_path))
    assert cache.corpus_fingerprint(hub) is None and cache.prepared_key(hub, wordpiece_tokenizer, None) is None
    streamed = PretrainDataConfig(streaming=True, cache_dir=str(tmp_path), num_proc=3)
    assert cache.prepared_key(streamed, wordpiece_tokenizer, None) == cache.prepared_key(
        PretrainDataConfig(cache_dir=str(tmp_path)), wordpiece_tokenizer, None)


def test_default_location_is_under_the_hugging_face_cache_home():
    from huggingface_hub import constants

    assert cache.resolve_cache_dir(None) == Path(constants.HF_HOME) / "mlmkit" / "prepared"
    assert cache.resolve_cache_dir("~/x") == Path(os.path.expanduser("~/x"))


def test_held_out_split_is_the_seeded_train_test_split(data_config, tmp_path, wordpiece_tokenizer):
    prepared = cache.prepared_corpus(data_config(), wordpiece_tokenizer, None)
    files = sorted(p.name for p in prepared.path.rglob("*"))
    train, held_out = packing.split_eval(prepared.blocks, 0.1, 1024, seed=7)
    assert sorted(p.name for p in prepared.path.rglob("*")) == files  # nothing written into the prepared corpus
    reference = prepared.blocks.train_test_split(test_size=len(held_out), seed=7, shuffle=True,
                                                 train_indices_cache_file_name=str(tmp_path / "train.idx"),
                                                 test_indices_cache_file_name=str(tmp_path / "test.idx"))
    assert len(held_out) == round(46 * 0.1) and train.to_dict() == reference["train"].to_dict()
    assert held_out.to_dict() == reference["test"].to_dict()


def _prepare(data, tokenizer, strategy, work_dir: Path) -> tuple[list[dict], list[str]]:
    """Rows of the packed blocks, and the Arrow files the preparation wrote in ``work_dir``."""
    blocks, _ = cache.prepare_blocks(data, tokenizer, strategy, work_dir=work_dir)
    return blocks.to_list(), sorted(p.name for p in work_dir.iterdir())


@pytest.mark.slow  # three spaCy pipelines load
def test_pos_tags_from_two_processes_equal_those_of_one(data_config, tmp_path, wordpiece_tokenizer, monkeypatch):
    monkeypatch.setattr(packing, "PACK_CHUNK", 17)  # several packing chunks, not aligned with the two shards
    strategy = _strategy(wordpiece_tokenizer, name="pos_weighted")
    one, one_files = _prepare(data_config(num_proc=1), wordpiece_tokenizer, strategy,
                              tmp_path / "one")
    two, two_files = _prepare(data_config(num_proc=2), wordpiece_tokenizer, strategy,
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


def test_batches_go_to_disk_and_the_build_folder_is_removed(data_config, tmp_path, wordpiece_tokenizer, monkeypatch):
    seen: list[list[str]] = []
    original = cache.prepare_blocks

    def recording(data, tokenizer, strategy, work_dir=None):
        blocks, documents = original(data, tokenizer, strategy, work_dir=work_dir)
        seen.append([f["filename"] for f in blocks.cache_files])
        assert all(Path(name).parent == work_dir for name in seen[-1])  # memory-mapped files, not Python lists
        return blocks, documents

    monkeypatch.setattr(cache, "prepare_blocks", recording)
    prepared = cache.prepared_corpus(data_config(), wordpiece_tokenizer,
                                     _strategy(wordpiece_tokenizer, name="content_word"))
    assert len(seen) == 1 and seen[0]
    assert not (prepared.path / cache.WORK_DIR).exists()
    assert [p.name for p in (tmp_path / "prepared").iterdir()] == [prepared.path.name]  # no build folder left
    assert cache.damage(prepared.path) is None


def test_streamed_prepared_corpus_gives_the_blocks_of_the_raw_stream(data_config, wordpiece_tokenizer, monkeypatch,
                                                                     preparations):
    monkeypatch.setattr(packing, "PACK_CHUNK", 17)
    strategy = _strategy(wordpiece_tokenizer, name="content_word")
    streamed = data_config(streaming=True)
    notices: list[str] = []
    raw = list(cache.streamed_blocks(streamed, wordpiece_tokenizer, strategy, notify=notices.append))
    assert notices == [] and preparations == []

    prepared = cache.prepared_corpus(data_config(), wordpiece_tokenizer, strategy)
    stream = cache.streamed_blocks(streamed, wordpiece_tokenizer, strategy, notify=notices.append)
    assert len(preparations) == 1  # the stream read the prepared blocks, it did not prepare
    assert notices == [f"data: streaming the prepared corpus in {prepared.path}"]
    assert stream.num_shards == min(cache.STREAM_SHARDS, len(prepared.blocks)) > 1
    rows = list(stream)
    assert rows == raw == prepared.blocks.to_list()
    assert "content_word" in rows[0]


def test_damaged_prepared_corpus_is_streamed_raw_with_one_notice(data_config, wordpiece_tokenizer):
    strategy = _strategy(wordpiece_tokenizer, name="whole_word")
    prepared = cache.prepared_corpus(data_config(), wordpiece_tokenizer, strategy)
    expected = prepared.blocks.to_list()
    arrow = next(prepared.path.rglob("*.arrow"))
    del prepared
    arrow.write_bytes(arrow.read_bytes()[:64])
    notices: list[str] = []
    stream = cache.streamed_blocks(data_config(streaming=True), wordpiece_tokenizer, strategy,
                                   notify=notices.append)
    assert len(notices) == 1 and "damaged" in notices[0] and "streaming the raw corpus" in notices[0]
    assert list(stream) == expected


def test_no_cache_streams_the_raw_corpus(data_config, wordpiece_tokenizer, preparations):
    strategy = _strategy(wordpiece_tokenizer, name="whole_word")
    cache.prepared_corpus(data_config(), wordpiece_tokenizer, strategy)
    notices: list[str] = []
    stream = cache.streamed_blocks(data_config(streaming=True, cache=False), wordpiece_tokenizer,
                                   strategy, notify=notices.append)
    assert notices == [] and not stream.n_shards > 1  # the text file's single shard, not the prepared blocks
    assert len(list(stream)) > 0


@pytest.mark.slow  # three CLI runs
def test_masking_preview_stats_reuse_the_prepared_corpus(corpus_path, preparations, tiny_model_dir):
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
    assert json.loads(first.stdout)["documents"] == 120
    # another seed masks the same prepared blocks
    third = runner.invoke(app, [*args, "--seed", "3"])
    assert third.exit_code == 0 and len(preparations) == 1
    assert json.loads(third.stdout)["blocks"] == json.loads(first.stdout)["blocks"]
