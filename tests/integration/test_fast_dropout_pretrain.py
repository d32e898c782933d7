"""Pre-training with the CPU dropout and without: same start, other dropout draws, a standard saved config."""

import json
import math

from mlmkit.modeling.fast_dropout import ATTENTION_NAME


def test_pretrain_with_and_without_fast_dropout(tiny_model_dir, corpus_file, tmp_path):
    from mlmkit.config import PretrainConfig, load_config
    from mlmkit.training.pretrain import pretrain

    def run(name, *extra):
        return pretrain(load_config(PretrainConfig, None, [
            f"model.name_or_path={tiny_model_dir}", f"data.source={corpus_file}", "data.max_seq_length=32",
            "data.eval_fraction=0.2", "train.max_steps=6", "train.batch_size=8", "train.lr=3e-3",
            f"output.dir={tmp_path / name}", *extra]))

    fast, plain = run("fast"), run("plain", "train.fast_dropout=false")
    # the same evaluation (dropout off), different dropout draws while training
    assert fast.before == plain.before
    assert fast.after["eval_loss"] != plain.after["eval_loss"]
    assert all(math.isfinite(r.after["eval_loss"]) and r.steps == 6 for r in (fast, plain))
    saved = json.loads((tmp_path / "fast" / "config.json").read_text())
    assert ATTENTION_NAME not in json.dumps(saved)
