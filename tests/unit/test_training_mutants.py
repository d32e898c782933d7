"""Small promises of the pre-training loop and its checkpoints, found untested by mutation testing."""

import errno
import io

import pytest
from rich.console import Console

from mlmkit.errors import UserError
from mlmkit.training.checkpoint import TrainerState, save_checkpoint
from mlmkit.training.pretrain import _warner


class FullDisk:
    """Just enough of Accelerator for save_checkpoint, failing like a full disk."""

    is_main_process = True

    def wait_for_everyone(self):
        pass

    def save_state(self, directory, safe_serialization=True):
        raise OSError(errno.ENOSPC, "No space left on device")


def test_a_failed_checkpoint_names_the_reason_without_the_errno_prefix(tmp_path):
    with pytest.raises(UserError) as caught:
        save_checkpoint(FullDisk(), tmp_path, TrainerState(step=3), "a: 1\n", keep=2)
    message = str(caught.value)
    assert "step-00000003 (No space left on device); earlier checkpoints are intact" in message
    assert "Errno" not in message


def test_warnings_print_the_text_as_it_is():
    out = io.StringIO()
    _warner(Console(file=out, width=200, color_system=None))("model [dir] at /tmp/[x]")
    assert out.getvalue() == "model [dir] at /tmp/[x]\n"  # brackets are not read as rich markup


def test_a_streamed_corpus_holds_out_its_first_blocks_with_the_strategy_features(tmp_path, corpus,
                                                                                wordpiece_tokenizer):
    import datasets

    from mlmkit.config import PretrainConfig, load_config
    from mlmkit.data.cache import streamed_blocks
    from mlmkit.masking.content_word import CONTENT_FEATURE
    from mlmkit.masking.registry import build_strategy
    from mlmkit.training.pretrain import build_pretrain_data

    source = tmp_path / "docs.txt"
    source.write_text("\n".join(corpus) + "\n")
    cfg = load_config(PretrainConfig, None, [f"data.source={source}", "data.streaming=true", "data.max_seq_length=32",
                                             "data.eval_max_blocks=5", "masking.name=content_word"])
    strategy = build_strategy(cfg.masking)
    strategy.bind(wordpiece_tokenizer)
    train, held_out, stats = build_pretrain_data(cfg, wordpiece_tokenizer, strategy)
    first = list(streamed_blocks(cfg.data, wordpiece_tokenizer, strategy, None).take(7))
    assert isinstance(held_out, datasets.Dataset) and stats["eval_blocks"] == len(held_out) == 5
    assert held_out.to_list() == first[:5]  # the first blocks of the stream, features included
    assert CONTENT_FEATURE in held_out.column_names
    assert list(train.take(2)) == first[5:7]  # training starts right after them


def test_a_remembered_evaluation_is_announced_with_its_file(tmp_path):
    from types import SimpleNamespace

    from mlmkit.training.mlm_eval import remember
    from mlmkit.training.pretrain import _evaluate_before

    record = tmp_path / "evaluations" / "0123.json"
    stored = {"masked_accuracy": 0.25, "perplexity": 12.5, "eval_loss": 2.5}
    remember(record, stored)
    out = io.StringIO()
    console = Console(file=out, width=400, color_system=None)
    # nothing is evaluated: no model, batches or tokenizer are needed when the record is read
    before = _evaluate_before(None, None, SimpleNamespace(is_main_process=True), None, None, console, record)
    assert before == stored
    lines = out.getvalue().splitlines()
    assert lines[0] == (f"evaluation before training: the same weights and held-out blocks as an earlier run, its "
                        f"result reused ({record})")
    assert lines[1] == "before training: masked accuracy 0.250, perplexity 12.5"


def test_a_second_preparation_reads_the_prepared_corpus_and_says_where(tmp_path, corpus, wordpiece_tokenizer):
    from mlmkit.config import PretrainConfig, load_config
    from mlmkit.masking.registry import build_strategy
    from mlmkit.training.pretrain import build_pretrain_data

    source = tmp_path / "docs.txt"
    source.write_text("\n".join(corpus) + "\n")
    cfg = load_config(PretrainConfig, None, [f"data.source={source}", "data.max_seq_length=32",
                                             f"data.cache_dir={tmp_path / 'prepared'}"])
    strategy = build_strategy(cfg.masking)
    strategy.bind(wordpiece_tokenizer)
    first, second = [], []
    _, held_out, stats = build_pretrain_data(cfg, wordpiece_tokenizer, strategy, first.append)
    _, again, stats_again = build_pretrain_data(cfg, wordpiece_tokenizer, strategy, second.append)
    assert not any(line.startswith("data: reusing") for line in first)
    assert second == [f"data: reusing the prepared corpus in {stats['prepared_path']}"]
    assert stats_again == stats and again.to_list() == held_out.to_list()
