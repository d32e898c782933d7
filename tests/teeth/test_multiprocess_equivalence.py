"""Two CPU processes (gloo, Accelerate's launcher) against one process that rebuilds the same batches.

Masks depend only on (seed, step, micro step, rank), and Accelerate gives process ``r`` the
batches ``r, r + 2, ...`` of the shuffled order. So one process with ``grad_accum=2`` and batch 8
sees, at each step, the two processes' batches as its two micro-batches; masking micro-batch ``i``
with rank ``i``'s generator (patched in this test) gives it the two processes' masks too, and the
accumulated gradient, the mean of the two micro-batch gradients, is what DDP's all-reduce computes.
With dropout off the runs then differ only by the order of float32 sums.

Tolerance: gradients summed in another order may differ by a few float32 ulps (relative ~1e-7),
which a few AdamW steps (lr 1e-2, each moving a weight by up to 1e-2) can carry into the weights;
the bound is 2e-5, a part in 500 of one step's update. On the 2-core CPU here the weights came out
bitwise equal (difference 0). The control (gradient synchronisation switched off in the workers)
must exceed the bound a hundredfold.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
from pathlib import Path

import pytest
import torch
from teeth_helpers import run_config, run_overrides, save_tiny_model

from conftest import make_corpus
from mlmkit.io.outputs import read_metrics
from mlmkit.masking.collator import MaskingCollator
from mlmkit.training import pretrain as pretrain_module
from mlmkit.training.launch import LaunchOptions, launch_command
from mlmkit.training.pretrain import pretrain

STEPS = 6
TOLERANCE = 2e-5
SETTINGS = ("data.eval_fraction=0.3", f"train.max_steps={STEPS}", "train.lr=1e-2", "train.warmup_ratio=0",
            "train.log_every=1", "masking.ratio=0.2")
WORKER = Path(__file__).with_name("mp_worker.py")

# the 1-process references run in this process with one intra-op thread, like each launched worker
# (OMP_NUM_THREADS=1): with more threads a CPU matmul sums in another order, and 60 steps of
# fine-tuning carry that float difference past the tolerance
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch_two(mode: str, rank_dir: Path, argv: list[str]) -> str:
    """Run ``mlmkit ARGV`` in 2 processes through mlmkit's launch command; each saves its weights in ``rank_dir``.

    Returns the standard output (only the main process prints results).
    """
    cmd = launch_command([], LaunchOptions(num_processes=2, main_process_port=free_port()))
    assert cmd[-2:] == ["-m", "mlmkit"]
    cmd = [*cmd[:-2], str(WORKER), mode, str(rank_dir), *argv]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


class MicroBatchesAsRanks(MaskingCollator):
    """Masks micro-batch ``i`` of a step as process ``i`` of a 2-process run masks its batch of that step.

    Without accumulation the processes' micro step is the step itself.
    """

    masked = 0

    def mask(self, batch, step, micro_step=0):
        self.rank = self.masked % 2
        self.masked += 1
        return super().mask(batch, step, step)


def load_weights(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".pt":
        return torch.load(path)
    from safetensors.torch import load_file

    return load_file(path)


def difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    """Largest weight difference; a saved model directory leaves out the decoder tied to the embeddings."""
    shared = a.keys() & b.keys()
    assert len(shared) >= min(len(a), len(b)) and "bert.embeddings.word_embeddings.weight" in shared
    return max(float((a[k].float() - b[k].float()).abs().max()) for k in shared)


def assert_unsynced_run_differs(root: Path) -> None:
    """The control: without gradient sync the processes drift apart, and away from the one-process run."""
    reference = load_weights(root / "one" / "model.safetensors")
    rank0, rank1 = (load_weights(root / "unsynced" / f"rank-{r}.pt") for r in (0, 1))
    assert difference(rank0, rank1) > 100 * TOLERANCE
    assert difference(reference, rank0) > 100 * TOLERANCE


@pytest.fixture(scope="module")
def runs(tmp_path_factory, wordpiece_tokenizer, one_torch_thread):
    root = tmp_path_factory.mktemp("mp-equivalence")
    model_dir = save_tiny_model(root / "model", wordpiece_tokenizer)
    corpus = root / "corpus.txt"  # about 230 blocks: 6 steps of 16 stay inside the first epoch
    corpus.write_text("\n".join(make_corpus(600, seed=1)) + "\n")
    launch_two("synced", root / "two", ["pretrain", *run_overrides(
        model_dir, corpus, root / "two", *SETTINGS, "train.batch_size=8", "train.checkpoint_every=3",
        "train.keep_checkpoints=0")])
    launch_two("unsynced", root / "unsynced", ["pretrain", *run_overrides(
        model_dir, corpus, root / "unsynced", *SETTINGS, "train.batch_size=8")])
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(pretrain_module, "MaskingCollator", MicroBatchesAsRanks)
        one = pretrain(run_config(model_dir, corpus, root / "one", *SETTINGS, "train.batch_size=8",
                                  "train.grad_accum=2"))
    return root, one, model_dir, corpus


def test_two_processes_end_with_the_weights_of_one_process(runs):
    root, one, *_ = runs
    reference = load_weights(root / "one" / "model.safetensors")
    rank0, rank1 = (load_weights(root / "two" / f"rank-{r}.pt") for r in (0, 1))
    assert difference(rank0, rank1) == 0.0  # all-reduced gradients: identical updates on every process
    assert difference(load_weights(root / "two" / "model.safetensors"), rank0) == 0.0
    assert difference(reference, rank0) <= TOLERANCE
    # only the main process writes: one metrics line per logging step, no duplicates
    assert [r["step"] for r in read_metrics(root / "two" / "metrics.jsonl") if r["split"] == "train"] == \
        list(range(1, STEPS + 1))
    moved = difference(reference, load_weights(root / "model" / "model.safetensors"))
    assert moved > 1000 * TOLERANCE  # the comparison is about weights that really changed


def test_two_processes_evaluate_like_one_process_on_hundreds_of_tokens(runs):
    root, one, *_ = runs
    two = json.loads((root / "two" / "eval_results.json").read_text())
    assert one.before["eval_tokens"] >= 200 and one.after["eval_tokens"] == one.before["eval_tokens"]
    assert one.before["eval_loss"] - one.after["eval_loss"] > 0.3  # the model learns in these steps
    assert two["after"]["eval_loss"] == pytest.approx(one.after["eval_loss"], rel=1e-4)


def test_control_without_gradient_sync_differs(runs):
    root, *_ = runs
    assert_unsynced_run_differs(root)


def test_two_process_checkpoint_resumes_in_one_process_exactly(runs):
    import shutil

    from mlmkit.training.checkpoint import list_checkpoints

    root, _, model_dir, corpus = runs
    run = root / "two-then-one"
    shutil.copytree(root / "two", run)
    for checkpoint in list_checkpoints(run)[1:]:
        shutil.rmtree(checkpoint)  # as if the 2-process run had stopped after its checkpoint of step 3
    (run / "model.safetensors").unlink()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(pretrain_module, "MaskingCollator", MicroBatchesAsRanks)
        result = pretrain(run_config(model_dir, corpus, run, *SETTINGS, "train.batch_size=8", "train.grad_accum=2",
                                     "train.checkpoint_every=3", "train.keep_checkpoints=0", "train.resume=auto"))
    assert result.resumed_from.endswith("step-00000003") and result.steps == STEPS
    # same data position, learning rate, optimizer state and masks as the 2 processes had
    lrs = [r["lr"] for r in read_metrics(root / "two" / "metrics.jsonl") if r["split"] == "train"]
    resumed_lrs = [r["lr"] for r in read_metrics(run / "metrics.jsonl") if r["split"] == "train"]
    assert resumed_lrs[STEPS:] == pytest.approx(lrs[3:])
    assert difference(load_weights(root / "two" / "model.safetensors"),
                      load_weights(run / "model.safetensors")) <= TOLERANCE


# ---------------------------------------------------------------------------------------------- fine-tuning
FT_STEPS = 60
WORDS = {"good": ["great", "lovely", "fine"], "bad": ["awful", "poor", "sad"]}


def finetune_args(model_dir, data, out, *extra):
    return ["finetune", "sentiment", "--model", str(model_dir), "--dataset", str(data), "--output", str(out),
            "--max-steps", str(FT_STEPS), "--json", "train.batch_size=8", "train.lr=5e-3", "train.warmup_ratio=0",
            "data.max_seq_length=32", *extra]


def json_payload(stdout: str) -> dict:
    assert stdout.count('"eval_source"') == 1  # one report, from the main process only
    return json.loads(stdout[stdout.index("{"):])


@pytest.fixture(scope="module")
def finetuned(tmp_path_factory, wordpiece_tokenizer, one_torch_thread):
    import random

    from typer.testing import CliRunner

    from mlmkit.cli.app import app

    root = tmp_path_factory.mktemp("mp-finetune")
    model_dir = save_tiny_model(root / "model", wordpiece_tokenizer)
    rng = random.Random(0)
    lines = ["text,label"]
    for _ in range(320):  # 288 for training: 18 steps of 16 per epoch, even batches on both processes
        label = rng.choice(sorted(WORDS))
        lines.append(f"{rng.choice(['the cat', 'a dog', 'our team', 'this phone'])} is {rng.choice(WORDS[label])} "
                     f"today,{label}")
    data = root / "labelled.csv"
    data.write_text("\n".join(lines) + "\n")
    two = json_payload(launch_two("synced", root / "two", finetune_args(model_dir, data, root / "two")))
    launch_two("unsynced", root / "unsynced", finetune_args(model_dir, data, root / "unsynced"))
    result = CliRunner().invoke(app, finetune_args(model_dir, data, root / "one", "train.grad_accum=2"))
    assert result.exit_code == 0, result.output
    return root, json_payload(result.stdout), two


def test_two_process_finetuning_ends_with_the_weights_of_one_process(finetuned):
    root, one, two = finetuned
    assert one["steps"] == two["steps"] == FT_STEPS
    reference = load_weights(root / "one" / "model.safetensors")
    rank0, rank1 = (load_weights(root / "two" / f"rank-{r}.pt") for r in (0, 1))
    assert difference(rank0, rank1) == 0.0
    assert difference(reference, rank0) <= TOLERANCE
    assert two["eval_loss"] == pytest.approx(one["eval_loss"], rel=1e-4) and two["accuracy"] == one["accuracy"]
    # a task the model learns in these steps: held-out accuracy well above the majority class
    assert one["accuracy"] >= one["baseline"]["accuracy"] + 0.2
    from transformers import pipeline

    assert pipeline("text-classification", model=str(root / "two"))("the cat is great today")[0]["label"] in \
        {"good", "bad"}


def test_two_process_finetuning_without_gradient_sync_differs(finetuned):
    root, *_ = finetuned
    assert_unsynced_run_differs(root)


def test_streamed_two_process_run_resumes_only_with_two_processes(tmp_path, wordpiece_tokenizer, corpus_file):
    from mlmkit.errors import UserError

    model_dir = save_tiny_model(tmp_path / "model", wordpiece_tokenizer)
    run = tmp_path / "streamed"
    launch_two("synced", run, ["pretrain", *run_overrides(
        model_dir, corpus_file, run, "data.streaming=true", "data.eval_max_blocks=8", "train.max_steps=4",
        "train.checkpoint_every=2", "train.keep_checkpoints=0")])
    rank0, rank1 = (load_weights(run / f"rank-{r}.pt") for r in (0, 1))
    assert difference(rank0, rank1) == 0.0  # each process reads its own part of the stream, the update is shared
    (run / "model.safetensors").unlink()
    with pytest.raises(UserError, match=r"written by 2 process\(es\); a streamed corpus resumes only with the same"):
        pretrain(run_config(model_dir, corpus_file, run, "data.streaming=true", "data.eval_max_blocks=8",
                            "train.max_steps=6", "train.checkpoint_every=2", "train.resume=auto"))


# ---------------------------------------------------------------------------------------------- a suite
SUITE_STEPS = 20


def write_suite(path: Path, data: Path, *extra: str) -> Path:
    """Two sentiment tasks on one process group: the second runs after the first has finished and saved."""
    overrides = [f"data.dataset={data}", f"train.max_steps={SUITE_STEPS}", "train.batch_size=8", "train.lr=5e-3",
                 "train.warmup_ratio=0", "train.max_time=null", "data.max_seq_length=32", "data.eval_fraction=0.1",
                 "data.max_train_samples=null", "data.max_eval_samples=null", *extra]
    path.write_text("seeds: [0]\ntasks:\n"
                    f"  - {{name: first, recipe: demo, overrides: {overrides}}}\n"
                    f"  - {{name: second, recipe: demo, overrides: {[*overrides, 'train.lr=2e-3']}}}\n")
    return path


def test_two_process_suite_trains_every_task_like_one_process(finetuned, tmp_path):
    """Each task of a 2-process suite ends with the weights of the 1-process suite (the same global batch).

    The second task is the one at risk: finishing the first run must not close the process group it
    needs (the ranks would then train alone or stop). The control above shows the tolerance catches
    unsynchronised ranks.
    """
    from typer.testing import CliRunner

    from mlmkit.cli.app import app

    root, *_ = finetuned
    data = root / "labelled.csv"

    def suite_args(out, suite):
        return ["finetune", "suite", "--recipe", str(suite), "--model", str(root / "model"), "--output", str(out),
                "--json"]

    def suite_payload(stdout: str) -> dict:
        assert stdout.count('"rows"') == 1  # one report, from the main process only
        return json.loads(stdout[stdout.index("{"):])

    two = suite_payload(launch_two("synced", tmp_path, suite_args(
        tmp_path / "two", write_suite(tmp_path / "two.yaml", data))))
    result = CliRunner().invoke(app, suite_args(tmp_path / "one", write_suite(
        tmp_path / "one.yaml", data, "train.grad_accum=2")))
    assert result.exit_code == 0, result.output
    one = suite_payload(result.stdout)
    assert [run["steps"] for run in two["runs"]] == [run["steps"] for run in one["runs"]] == [SUITE_STEPS] * 2
    written = json.loads((tmp_path / "two" / "suite.json").read_text())
    assert written["rows"] == two["rows"]  # the main process wrote what it printed
    for number, task in enumerate(("first", "second")):
        suffix = "" if number == 0 else f"-run-{number}"
        rank0, rank1 = (load_weights(tmp_path / f"rank-{r}{suffix}.pt") for r in (0, 1))
        assert difference(rank0, rank1) == 0.0, task
        reference = load_weights(tmp_path / "one" / task / "seed-0" / "model.safetensors")
        saved = load_weights(tmp_path / "two" / task / "seed-0" / "model.safetensors")
        assert difference(reference, saved) <= TOLERANCE, task
        assert difference(saved, rank0) == 0.0, task
    # the two tasks really trained different models (another learning rate)
    first, second = (load_weights(tmp_path / "two" / t / "seed-0" / "model.safetensors") for t in ("first", "second"))
    assert difference(first, second) > 100 * TOLERANCE
    assert [r["values"] for r in two["rows"]] == [r["values"] for r in one["rows"]]
