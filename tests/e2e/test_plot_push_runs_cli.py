"""Trackers, model cards, plots, push and `runs ls` through the CLI, on tiny real runs."""

import hashlib
import json
import socket
import struct

import pytest
from huggingface_hub import ModelCard
from typer.testing import CliRunner

from mlmkit.cli.app import app
from mlmkit.io.outputs import read_metrics

runner = CliRunner()
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def pretrain_args(model_dir, corpus_file, out, *extra):
    return ["pretrain", f"model.name_or_path={model_dir}", f"data.source={corpus_file}", "data.max_seq_length=32",
            "data.eval_fraction=0.2", "train.batch_size=8", "train.lr=3e-3", "train.log_every=4",
            "train.eval_every=8", f"output.dir={out}", *extra]


def assert_one_line_error(result, fragment):
    assert result.exit_code == 2, result.output
    text = result.output.strip()
    assert "Traceback" not in text and "error:" in text and fragment in text, text
    assert len([line for line in text.splitlines() if line.strip()]) == 1, text


def snapshot(folder):
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def runs(tiny_model_dir, corpus_file, tmp_path_factory):
    """Two tiny pre-training runs (one with TensorBoard) and a fine-tuning run from the first."""
    root = tmp_path_factory.mktemp("runs")
    first = runner.invoke(app, pretrain_args(tiny_model_dir, corpus_file, root / "random", "train.max_steps=12",
                                             "train.report_to=tensorboard"))
    assert first.exit_code == 0, first.output
    second = runner.invoke(app, pretrain_args(tiny_model_dir, corpus_file, root / "span", "train.max_steps=4",
                                              "masking.name=span"))
    assert second.exit_code == 0, second.output
    csv = root / "labels.csv"
    csv.write_text("text,label\n" + "".join(f"{json.dumps(line)},{'pos' if i % 2 else 'neg'}\n"
                                              for i, line in enumerate(corpus_file.read_text().splitlines()[:80])))
    tuned = runner.invoke(app, ["finetune", "sentiment", "--model", str(root / "random"), "--dataset", str(csv),
                                "--output", str(root / "sentiment"), "--max-steps", "3", "train.batch_size=16",
                                "data.max_seq_length=32", "train.log_every=1", "train.report_to=tensorboard"])
    assert tuned.exit_code == 0, tuned.output
    return root, first


@pytest.mark.slow
def test_progress_lines_without_a_terminal(runs):
    _, first = runs
    lines = [line for line in first.output.splitlines() if line.startswith("pretrain ")]
    assert [line.split(" | ")[0] for line in lines] == ["pretrain 1/12 (8%)", "pretrain 4/12 (33%)",
                                                        "pretrain 8/12 (67%)", "pretrain 12/12 (100%)"]
    assert all("loss " in line and "tok/s" in line and "elapsed " in line for line in lines)
    assert all("eta " in line for line in lines[:-1])


@pytest.mark.slow
def test_tensorboard_events_hold_the_metrics(runs):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    root, _ = runs
    records = read_metrics(root / "random" / "metrics.jsonl")
    events = EventAccumulator(str(root / "random" / "logs" / "mlmkit"))
    events.Reload()
    assert {"train/loss", "train/lr", "train/mask_ratio", "train/tokens_per_s", "eval/masked_accuracy",
            "eval/eval_loss", "eval/perplexity"} <= set(events.Tags()["scalars"])
    for split, key in (("train", "loss"), ("train", "lr"), ("eval", "masked_accuracy"), ("eval", "perplexity")):
        logged = [(e.step, e.value) for e in events.Scalars(f"{split}/{key}")]
        expected = [(r["step"], r[key]) for r in records if r["split"] == split]
        assert [s for s, _ in logged] == [s for s, _ in expected]
        assert [v for _, v in logged] == pytest.approx([v for _, v in expected], rel=1e-6)  # stored as float32
    assert [e.step for e in events.Scalars("eval/masked_accuracy")] == [0, 8, 12]
    assert not (root / "span" / "logs").exists()  # report_to defaults to none


@pytest.mark.slow
def test_finetuning_reports_to_tensorboard_too(runs):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    root, _ = runs
    results = json.loads((root / "sentiment" / "eval_results.json").read_text())
    events = EventAccumulator(str(root / "sentiment" / "logs" / "mlmkit"))
    events.Reload()
    assert [e.step for e in events.Scalars("train/loss")] == [1, 2, 3]
    assert [(e.step, e.value) for e in events.Scalars("eval/accuracy")] == [(3, pytest.approx(results["accuracy"]))]
    assert events.Scalars("eval/baseline_accuracy")[0].value == pytest.approx(results["baseline"]["accuracy"])


@pytest.mark.slow
def test_every_saved_model_has_a_card_and_a_picture(runs):
    root, _ = runs
    results = json.loads((root / "random" / "eval_results.json").read_text())
    card = ModelCard.load(root / "random" / "README.md")
    data = card.data.to_dict()
    assert data["pipeline_tag"] == "fill-mask" and {"mlmkit", "masking-random"} <= set(data["tags"])
    metrics = {m["type"]: m["value"] for m in data["model-index"][0]["results"][0]["metrics"]}
    assert metrics["accuracy"] == round(results["after"]["masked_accuracy"], 6)
    assert f"| masked-token accuracy | {results['before']['masked_accuracy']:.4f} | " \
           f"{results['after']['masked_accuracy']:.4f} |" in card.text
    tuned = ModelCard.load(root / "sentiment" / "README.md").data.to_dict()
    assert tuned["pipeline_tag"] == "text-classification"
    for run in ("random", "span", "sentiment"):
        png = (root / run / "training_curves.png").read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", png[16:24]) == (1100, 750)


@pytest.mark.slow
def test_plot_two_runs(runs, tmp_path):
    root, _ = runs
    out = tmp_path / "both.png"
    result = runner.invoke(app, ["plot", str(root / "random"), str(root / "span"), "-o", str(out),
                                 "--labels", "random,span"])
    assert result.exit_code == 0, result.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert_one_line_error(runner.invoke(app, ["plot", str(root / "random"), "-o", str(out), "--labels", "a,b"]),
                          "--labels gives 2 name(s) for 1 run(s)")


@pytest.mark.slow
def test_runs_ls(runs):
    root, _ = runs
    result = runner.invoke(app, ["runs", "ls", str(root), "--json"])
    assert result.exit_code == 0, result.output
    rows = {row["path"].rsplit("/", 1)[-1]: row for row in json.loads(result.stdout)}
    assert set(rows) == {"random", "span", "sentiment"}
    assert [row["path"] for row in json.loads(result.stdout)] == sorted(
        (row["path"] for row in rows.values()), key=lambda p: rows[p.rsplit("/", 1)[-1]]["date"], reverse=True)
    results = json.loads((root / "random" / "eval_results.json").read_text())
    assert rows["random"]["strategy"] == "random" and rows["random"]["steps"] == 12
    assert rows["random"]["after"]["masked_accuracy"] == results["after"]["masked_accuracy"]
    tuned = json.loads((root / "sentiment" / "eval_results.json").read_text())
    assert rows["random"]["downstream"] == {"accuracy": tuned["accuracy"], "macro_f1": tuned["macro_f1"]}
    assert rows["span"]["downstream"] == {} and rows["sentiment"]["kind"] == "finetune"
    table = runner.invoke(app, ["runs", "ls", str(root)])
    assert table.exit_code == 0 and "span" in table.stdout and "(finetune)" in table.stdout


def test_runs_ls_of_a_missing_folder(tmp_path):
    assert_one_line_error(runner.invoke(app, ["runs", "ls", str(tmp_path / "nope")]), "is not a directory")


@pytest.mark.slow
def test_push_offline_is_one_line_and_leaves_the_run_alone(runs, monkeypatch):
    root, _ = runs
    before = snapshot(root / "random")
    monkeypatch.setenv("HF_TOKEN", "hf_not_a_real_token")
    result = runner.invoke(app, ["push", str(root / "random"), "--repo-id", "someone/tiny-mlm"])
    assert_one_line_error(result, "HF_HUB_OFFLINE=1")
    assert snapshot(root / "random") == before


@pytest.mark.slow
def test_push_network_failure_is_one_line(runs, monkeypatch):
    from huggingface_hub import constants

    root, _ = runs
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens there
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("HF_TOKEN", "hf_not_a_real_token")
    before = snapshot(root / "random")
    result = runner.invoke(app, ["push", str(root / "random"), "--repo-id", "someone/tiny-mlm"])
    assert_one_line_error(result, "cannot push")
    assert f"127.0.0.1:{port}" in result.output
    assert snapshot(root / "random") == before


@pytest.mark.slow
def test_push_without_token(runs, monkeypatch):
    from huggingface_hub import constants

    root, _ = runs
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr("huggingface_hub.get_token", lambda: None)
    assert_one_line_error(runner.invoke(app, ["push", str(root / "random"), "--repo-id", "a/b"]), "hf auth login")


class FakeApi:
    calls: list = []

    def __init__(self, endpoint=None, token=None):
        self.calls.append(("init", token))

    def create_repo(self, repo_id, private, exist_ok, repo_type):
        self.calls.append(("create_repo", repo_id, private))

    def create_branch(self, repo_id, branch, exist_ok):
        self.calls.append(("create_branch", repo_id, branch))

    def upload_folder(self, repo_id, folder_path, revision, ignore_patterns, commit_message):
        from huggingface_hub.utils import filter_repo_objects

        files = [str(p.relative_to(folder_path)) for p in sorted(folder_path.rglob("*")) if p.is_file()]
        uploaded = sorted(filter_repo_objects(files, ignore_patterns=ignore_patterns))
        self.calls.append(("upload_folder", repo_id, revision, uploaded))
        return type("Commit", (), {"commit_url": f"https://hub.example/{repo_id}/commit/1"})()


@pytest.mark.slow
def test_push_uploads_the_model_without_logs_or_checkpoints(runs, monkeypatch, tmp_path):
    import shutil

    from huggingface_hub import constants

    root, _ = runs
    run = tmp_path / "random"
    shutil.copytree(root / "random", run)
    (run / "checkpoints" / "step-00000004").mkdir(parents=True)
    (run / "checkpoints" / "step-00000004" / "model.safetensors").write_bytes(b"x")
    (run / ".staging-abc").mkdir()
    (run / ".staging-abc" / "partial.bin").write_bytes(b"x")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr("huggingface_hub.HfApi", FakeApi)
    monkeypatch.setenv("HF_TOKEN", "hf_not_a_real_token")
    FakeApi.calls = []
    result = runner.invoke(app, ["push", str(run), "--repo-id", "someone/tiny-mlm", "--private", "--revision", "v1",
                                 "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["url"] == "https://hub.example/someone/tiny-mlm/commit/1"
    assert FakeApi.calls[:3] == [("init", "hf_not_a_real_token"), ("create_repo", "someone/tiny-mlm", True),
                                 ("create_branch", "someone/tiny-mlm", "v1")]
    _, repo, revision, uploaded = FakeApi.calls[3]
    assert (repo, revision) == ("someone/tiny-mlm", "v1")
    assert {"README.md", "config.json", "model.safetensors", "tokenizer.json", "config.yaml", "metrics.jsonl",
            "training_curves.png", "eval_results.json"} <= set(uploaded)
    assert not [f for f in uploaded if f.startswith(("logs/", "checkpoints/", ".staging"))]
    assert 'model="someone/tiny-mlm"' in (run / "README.md").read_text()  # the card names where it went


def test_push_to_hub_needs_a_repo_id_before_training(tiny_model_dir, corpus_file, tmp_path):
    out = tmp_path / "run"
    result = runner.invoke(app, pretrain_args(tiny_model_dir, corpus_file, out, "train.max_steps=2",
                                              "output.push_to_hub=true"))
    assert_one_line_error(result, "output.hub_repo_id")
    assert not out.exists()


def test_missing_tracker_fails_before_training(tiny_model_dir, corpus_file, tmp_path, monkeypatch):
    import accelerate.utils

    monkeypatch.setattr(accelerate.utils, "is_wandb_available", lambda: False)
    out = tmp_path / "run"
    result = runner.invoke(app, pretrain_args(tiny_model_dir, corpus_file, out, "train.max_steps=2",
                                              "train.report_to=[tensorboard,wandb]"))
    assert_one_line_error(result, "pip install wandb")
    assert not out.exists()
