"""Chinese end to end: `masking preview` shows whole jieba words; tokenizers trained on CJK text keep it intact."""

from __future__ import annotations

import importlib.util
import json

import jieba
import pytest
from language_data import read_lines, trained
from typer.testing import CliRunner

from mlmkit.cli.app import app
from mlmkit.tokenization.train import DEFAULT_ALPHABET, train_tokenizer

runner = CliRunner()
TEXT = "我们在面包店买了刚出炉的面包，然后在街角的咖啡馆喝了一杯咖啡。"


@pytest.fixture(scope="module")
def zh_tokenizer_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("zh-tokenizer")
    trained("zh").save_pretrained(path)
    return path


def test_preview_on_chinese_masks_whole_jieba_words(zh_tokenizer_dir):
    words = {TEXT[s:e] for w, s, e in jieba.tokenize(TEXT)}
    multi = 0
    for seed in range(4):
        result = runner.invoke(app, ["masking", "preview", TEXT, "--strategy", "whole_word", "masking.language=zh",
                                     "--model", str(zh_tokenizer_dir), "--seed", str(seed), "--json"])
        assert result.exit_code == 0, result.output
        preview = json.loads(result.stdout)
        assert preview["units"]
        for unit in preview["units"]:
            assert unit["text"] in words  # a whole jieba word: one character per token, all of them
            assert len(unit["tokens"]) == len(unit["text"])
            multi += len(unit["text"]) > 1
    assert multi > 0
    # without segmentation the same tokenizer only ever masks single characters
    result = runner.invoke(app, ["masking", "preview", TEXT, "--strategy", "whole_word",
                                 "--model", str(zh_tokenizer_dir), "--json"])
    assert all(len(unit["text"]) == 1 for unit in json.loads(result.stdout)["units"])


def test_preview_without_jieba_is_one_error_line(zh_tokenizer_dir, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "jieba" else real(name, *a))
    result = runner.invoke(app, ["masking", "preview", TEXT, "--strategy", "span", "masking.language=zh",
                                 "--model", str(zh_tokenizer_dir)])
    assert result.exit_code == 2 and "Traceback" not in result.output
    lines = [line for line in result.output.strip().splitlines() if line.strip()]
    assert len(lines) <= 2 and "error:" in result.output and "mlmkit[zh]" in result.output


@pytest.mark.parametrize("kind", ["unigram", "bpe"])
def test_chinese_tokenizer_round_trips(kind):
    tokenizer = trained("zh", kind=kind, vocab_size=600)
    normalizer = tokenizer.backend_tokenizer.normalizer
    for text in read_lines("zh"):
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        assert tokenizer.unk_token_id not in ids
        # lossless up to NFKC (which turns full-width punctuation into ASCII)
        assert tokenizer.decode(ids) == normalizer.normalize_str(text)


def test_wordpiece_keeps_every_han_character_and_no_accent_stripping_breaks_scripts():
    # 1,500 distinct characters: BERT's alphabet limit of 1,000 would leave 500 of them unknown
    han = [chr(0x4E00 + i) for i in range(1500)]
    corpus = ["".join(han[i:i + 30]) for i in range(0, len(han), 30)]
    tokenizer = train_tokenizer(corpus, kind="wordpiece", vocab_size=4000, round_to=1).tokenizer
    assert len(han) > DEFAULT_ALPHABET
    assert tokenizer.unk_token_id not in tokenizer("".join(han), add_special_tokens=False)["input_ids"]
    # uncased BERT strips accents, which would split Hangul into jamo and drop Japanese voicing marks
    korean = ["아이들은 학교가 끝난 뒤 강까지 걸어가서 배를 구경했습니다"] * 3
    tokenizer = train_tokenizer(korean, kind="wordpiece", vocab_size=200, round_to=1).tokenizer
    assert "학교가" in tokenizer.convert_tokens_to_string(tokenizer.tokenize("학교가"))
    japanese = ["がっこうでごはんをたべました。ガギグゲゴ"] * 3
    tokenizer = train_tokenizer(japanese, kind="wordpiece", vocab_size=200, round_to=1).tokenizer
    assert tokenizer.convert_tokens_to_string(tokenizer.tokenize("ごはん")) == "ごはん"
    # Latin text keeps BERT's convention (uncased: accents stripped)
    tokenizer = train_tokenizer(["le café était chaud"] * 3, kind="wordpiece", vocab_size=100, round_to=1).tokenizer
    assert tokenizer.backend_tokenizer.normalizer.normalize_str("Café") == "cafe"
