import json

import pytest

from mlmkit.config import FinetuneConfig, PretrainConfig, load_config
from mlmkit.errors import UserError
from mlmkit.io.outputs import read_metrics
from mlmkit.training.tracking import LOGS_DIR, PROJECT, TrackedMetricsLog, flat_config, reporting_options, tracker_names


@pytest.mark.parametrize("value", ["none", None, [], "", ["none"], " None "])
def test_no_trackers(value):
    assert tracker_names(value) == []


@pytest.mark.parametrize("value, expected", [
    ("tensorboard", ["tensorboard"]),
    ("TensorBoard", ["tensorboard"]),
    ("tensorboard,tensorboard", ["tensorboard"]),
    (["tensorboard"], ["tensorboard"]),
])
def test_tracker_names_normalised(value, expected):
    assert tracker_names(value) == expected


def test_unknown_tracker_suggests_a_name():
    with pytest.raises(UserError, match="did you mean 'tensorboard'"):
        tracker_names("tensorbord")


def test_none_cannot_be_combined():
    with pytest.raises(UserError, match="'none' cannot be combined"):
        tracker_names(["none", "tensorboard"])


@pytest.mark.parametrize("name, package", [("wandb", "wandb"), ("comet_ml", "comet-ml"), ("trackio", "trackio")])
def test_missing_tracker_names_the_package(monkeypatch, name, package):
    import accelerate.utils

    monkeypatch.setattr(accelerate.utils, f"is_{name}_available", lambda: False)
    with pytest.raises(UserError, match=f"not installed: pip install {package}$"):
        tracker_names(["tensorboard", name])


def test_all_means_every_installed_tracker(monkeypatch):
    import accelerate.utils

    from mlmkit.training.tracking import TRACKER_PACKAGES

    for name in TRACKER_PACKAGES:
        monkeypatch.setattr(accelerate.utils, f"is_{name}_available", lambda name=name: name in ("mlflow", "aim"))
    assert tracker_names("all") == ["mlflow", "aim"]


def test_reporting_options_for_pretrain_and_finetune(tmp_path):
    cfg = load_config(PretrainConfig, None, ["train.report_to=[tensorboard]", f"output.dir={tmp_path / 'run'}"])
    assert reporting_options(cfg) == {"log_with": ["tensorboard"], "logging_dir": str(tmp_path / "run" / LOGS_DIR)}
    cfg = load_config(FinetuneConfig, None, ["model.name_or_path=embedded", f"output.dir={tmp_path / 'ft'}"])
    assert reporting_options(cfg)["log_with"] == []


def test_reporting_options_check_the_hub_settings(tmp_path):
    cfg = load_config(PretrainConfig, None, ["output.push_to_hub=true", f"output.dir={tmp_path}"])
    with pytest.raises(UserError, match="needs output.hub_repo_id"):
        reporting_options(cfg)
    cfg = load_config(PretrainConfig, None, ["output.hub_repo_id=bad--name", f"output.dir={tmp_path}"])
    with pytest.raises(UserError, match="invalid Hub repository id 'bad--name'"):
        reporting_options(cfg)


def test_flat_config_holds_only_scalars():
    cfg = load_config(PretrainConfig, None, ["masking.name=span", "masking.schedule={name: linear, end: 0.05}",
                                             "train.report_to=[tensorboard]"])
    flat = flat_config(cfg)
    assert flat["train.lr"] == cfg.train.lr and flat["masking.name"] == "span"
    assert flat["masking.schedule.name"] == "linear" and flat["masking.schedule.end"] == 0.05
    assert json.loads(flat["train.report_to"]) == ["tensorboard"]
    assert flat["model.tokenizer"] is None
    assert all(v is None or isinstance(v, bool | int | float | str) for v in flat.values())


def _scalars(logdir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(logdir))
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def test_metrics_lines_go_to_tensorboard_unchanged(tmp_path):
    from accelerate import Accelerator
    from accelerate.utils import ProjectConfiguration

    accelerator = Accelerator(log_with=["tensorboard"], project_config=ProjectConfiguration(logging_dir=str(tmp_path)))
    accelerator.init_trackers(PROJECT)
    log = TrackedMetricsLog(tmp_path / "metrics.jsonl", accelerator)
    log.write(step=0, split="eval", masked_accuracy=0.25, eval_loss=3.5, perplexity=33.115, most_frequent_token=7)
    log.write(step=1, split="train", loss=4.0, lr=1e-3, mask_ratio=0.15, tokens_per_s=1000.0, **{"pos_loss/NOUN": 2.5})
    log.write(step=2, split="train", loss=3.0, lr=5e-4, mask_ratio=0.15, tokens_per_s=1200.0, **{"pos_loss/NOUN": 2.0})
    accelerator.end_training()

    records = read_metrics(tmp_path / "metrics.jsonl")
    assert [sorted(set(r) - {"elapsed_s"}) for r in records] == [
        ["eval_loss", "masked_accuracy", "most_frequent_token", "perplexity", "split", "step"],
        ["loss", "lr", "mask_ratio", "pos_loss/NOUN", "split", "step", "tokens_per_s"],
        ["loss", "lr", "mask_ratio", "pos_loss/NOUN", "split", "step", "tokens_per_s"]]
    scalars = _scalars(tmp_path / PROJECT)
    assert set(scalars) == {"eval/masked_accuracy", "eval/eval_loss", "eval/perplexity", "train/loss", "train/lr",
                            "train/mask_ratio", "train/tokens_per_s", "train/pos_loss/NOUN"}
    assert scalars["train/loss"] == [(1, 4.0), (2, 3.0)]
    assert scalars["train/pos_loss/NOUN"] == [(1, 2.5), (2, 2.0)]
    assert scalars["eval/masked_accuracy"] == [(0, 0.25)]
    assert scalars["train/lr"][0][1] == pytest.approx(1e-3)


def test_without_trackers_only_the_file_is_written(tmp_path):
    from accelerate import Accelerator

    accelerator = Accelerator()
    log = TrackedMetricsLog(tmp_path / "metrics.jsonl", accelerator)
    log.write(step=1, split="train", loss=1.0)
    assert [r["loss"] for r in read_metrics(tmp_path / "metrics.jsonl")] == [1.0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.jsonl"]
