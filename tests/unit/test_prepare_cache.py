"""Prepared-corpus cache: hits, misses, damage, atomic writes, and blocks that do not depend on num_proc."""

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
    path = tmp_path / "corpus.txt"
    path.write_text("\n".join(make_corpus(120, seed=3)) + "\n", encoding="utf-8")
    return path


def _data(corpus_path: Path, tmp_path: Path, **kwargs) -> PretrainDataConfig:
    return PretrainDataConfig(source=str(corpus_path), cache_dir=str(tmp_path / "prepared"),
                              max_seq_length=kwargs.pop("max_seq_length", 32), **kwargs)


def _strategy(tokenizer, **spec):
    strategy = build_strategy(spec)
    strategy.bind(tokenizer)
    return strategy


def _rows(blocks) -> dict:
    return {"features": dict(blocks.features), "rows": blocks.to_dict()}


def test_second_identical_run_is_a_hit(corpus_path, tmp_path, wordpiece_tokenizer, preparations):
    data = _data(corpus_path, tmp_path)
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


def test_in_memory_result_equals_the_cached_one(corpus_path, tmp_path, wordpiece_tokenizer):
    strategy = _strategy(wordpiece_tokenizer, name="content_word")
    cached = cache.prepared_corpus(_data(corpus_path, tmp_path), wordpiece_tokenizer, strategy)
    plain = cache.prepared_corpus(_data(corpus_path, tmp_path, cache=False), wordpiece_tokenizer, strategy)
    assert plain.path is None and cached.path is not None
    assert _rows(plain.blocks) == _rows(cached.blocks)
    assert "content_word" in cached.blocks.column_names


def test_misses_when_anything_the_blocks_depend_on_changes(corpus_path, tmp_path, wordpiece_tokenizer, corpus,
                                                           preparations):
    data = _data(corpus_path, tmp_path)
    content = _strategy(wordpiece_tokenizer, name="content_word")
    base = cache.prepared_corpus(data, wordpiece_tokenizer, content)
    assert len(preparations) == 1

    other_length = cache.prepared_corpus(_data(corpus_path, tmp_path, max_seq_length=16), wordpiece_tokenizer, content)
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


def test_a_word_list_file_is_keyed_by_its_content(corpus_path, tmp_path, wordpiece_tokenizer, preparations):
    words = tmp_path / "function-words.txt"
    words.write_text("the\na\n", encoding="utf-8")
    data = _data(corpus_path, tmp_path)
    strategy = _strategy(wordpiece_tokenizer, name="content_word", function_words=str(words))
    cache.prepared_corpus(data, wordpiece_tokenizer, strategy)
    words.write_text("the\na\nmy\n", encoding="utf-8")
    cache.prepared_corpus(data, wordpiece_tokenizer,
                          _strategy(wordpiece_tokenizer, name="content_word", function_words=str(words)))
    assert len(preparations) == 2


def test_num_proc_two_gives_the_blocks_of_one(corpus_path, tmp_path, wordpiece_tokenizer, monkeypatch):
    # small packing chunks, so chunk boundaries and the two workers' shards do not line up
    monkeypatch.setattr(packing, "PACK_CHUNK", 23)
    strategy = _strategy(wordpiece_tokenizer, name="content_word")
    one = cache.prepare_blocks(_data(corpus_path, tmp_path, num_proc=None), wordpiece_tokenizer, strategy)[0]
    two = cache.prepare_blocks(_data(corpus_path, tmp_path, num_proc=2), wordpiece_tokenizer, strategy)[0]
    assert _rows(two) == _rows(one)
    # chunks of 23 documents were really used: each is cut into blocks on its own
    texts = corpus_path.read_text(encoding="utf-8").splitlines()
    lengths = [len(ids) for ids in wordpiece_tokenizer(texts)["input_ids"]]
    assert len(one) == sum(-(-sum(lengths[c:c + 23]) // 32) for c in range(0, len(lengths), 23))


def test_damaged_cache_is_rebuilt_with_one_notice(corpus_path, tmp_path, wordpiece_tokenizer, preparations):
    data = _data(corpus_path, tmp_path)
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


def test_failed_build_leaves_nothing_behind(corpus_path, tmp_path, wordpiece_tokenizer, monkeypatch):
    data = _data(corpus_path, tmp_path)

    def broken(blocks):
        raise OSError("disk full")

    monkeypatch.setattr(cache, "count_tokens", broken)
    with pytest.raises(OSError, match="disk full"):
        cache.prepared_corpus(data, wordpiece_tokenizer, None)
    assert list((tmp_path / "prepared").iterdir()) == []


def test_list_and_clear(corpus_path, tmp_path, wordpiece_tokenizer):
    data = _data(corpus_path, tmp_path)
    one = cache.prepared_corpus(data, wordpiece_tokenizer, None)
    two = cache.prepared_corpus(_data(corpus_path, tmp_path, max_seq_length=16), wordpiece_tokenizer, None)
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


def test_held_out_split_is_the_seeded_train_test_split(corpus_path, tmp_path, wordpiece_tokenizer):
    prepared = cache.prepared_corpus(_data(corpus_path, tmp_path), wordpiece_tokenizer, None)
    files = sorted(p.name for p in prepared.path.rglob("*"))
    train, held_out = packing.split_eval(prepared.blocks, 0.1, 1024, seed=7)
    assert sorted(p.name for p in prepared.path.rglob("*")) == files  # nothing written into the prepared corpus
    reference = prepared.blocks.train_test_split(test_size=len(held_out), seed=7, shuffle=True,
                                                 train_indices_cache_file_name=str(tmp_path / "train.idx"),
                                                 test_indices_cache_file_name=str(tmp_path / "test.idx"))
    assert len(held_out) == round(46 * 0.1) and train.to_dict() == reference["train"].to_dict()
    assert held_out.to_dict() == reference["test"].to_dict()
