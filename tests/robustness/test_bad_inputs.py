"""Every bad input ends in exit code 2 and one ``error:`` line, with no traceback and no file lost.

Each case is a command line with placeholders: ``{ws}`` is a workspace of good and broken
inputs built once (a tiny model directory and damaged copies of it, corpora good and bad,
recipes good and bad, a non-empty output directory, run directories whose checkpoints are
damaged or interrupted) and ``{out}`` a fresh output path. Before the command
runs every file of the workspace is hashed; afterwards each must be there, unchanged.
New bad inputs found later are added to CASES.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mlmkit.cli.app import app

runner = CliRunner()

LABELS = ["positive", "negative"]


def _edit_json(path: Path, **changes) -> None:
    data = json.loads(path.read_text())
    for key, value in changes.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    path.write_text(json.dumps(data))


def _truncate(path: Path) -> None:
    with open(path, "r+b") as handle:
        handle.truncate(path.stat().st_size // 2)


class FakeAccelerator:
    """Enough of Accelerator for save_checkpoint: one small weights file per checkpoint."""

    is_main_process = True

    def wait_for_everyone(self):
        pass

    def save_state(self, directory, safe_serialization=True):
        (Path(directory) / "model.safetensors").write_bytes(b"w" * 64)


def _runs(ws: Path) -> None:
    from mlmkit.training.checkpoint import TrainerState, save_checkpoint

    for name in ("run", "all-damaged"):
        run = ws / name
        run.mkdir()
        (run / "config.yaml").write_text("train:\n  max_steps: 8\n")
        (run / "metrics.jsonl").write_text('{"step": 0, "split": "eval"}\n')
        for step in (2, 4):
            save_checkpoint(FakeAccelerator(), run, TrainerState(step=step), "a: 1\n", keep=0)
    _truncate(ws / "run" / "checkpoints" / "step-00000004" / "model.safetensors")
    for step in (2, 4):
        _truncate(ws / "all-damaged" / "checkpoints" / f"step-{step:08d}" / "model.safetensors")
    interrupted = ws / "run" / "checkpoints" / "step-00000006"  # a checkpoint copied without its manifest
    interrupted.mkdir()
    (interrupted / "model.safetensors").write_bytes(b"w" * 10)
    manifest = ws / "run" / "checkpoints" / "step-00000002" / "manifest.json"
    shutil.copytree(manifest.parent, ws / "bad-manifest" / "checkpoints" / "step-00000002")
    (ws / "bad-manifest" / "checkpoints" / "step-00000002" / "manifest.json").write_text('{"files": [1, 2')


def _models(ws: Path, source: Path) -> None:
    damage = {
        "truncated": lambda d: _truncate(d / "model.safetensors"),
        "no-weights": lambda d: (d / "model.safetensors").unlink(),
        "bad-config": lambda d: (d / "config.json").write_text('{"model_type": "bert", "hidden_'),
        "no-model-type": lambda d: _edit_json(d / "config.json", model_type=None),
        "bad-tokenizer": lambda d: (d / "tokenizer.json").write_text('{"version": "1.0", "model": {'),
        "no-mask": lambda d: _edit_json(d / "tokenizer_config.json", mask_token=None),
        "classifier": lambda d: _edit_json(d / "config.json", architectures=["BertForSequenceClassification"]),
    }
    shutil.copytree(source, ws / "model")
    for name, fn in damage.items():
        shutil.copytree(source, ws / name)
        fn(ws / name)


def _files(ws: Path, corpus: list[str]) -> None:
    (ws / "corpus.txt").write_text("\n".join(corpus) + "\n")
    rows = "".join(f'"{text}",{LABELS[i % 2]}\n' for i, text in enumerate(corpus[:60]))
    (ws / "labelled.csv").write_text("text,label\n" + rows)
    (ws / "empty.txt").write_text("\n \n\n")
    (ws / "binary.bin").write_bytes(bytes(range(256)) * 8)
    (ws / "latin1.txt").write_bytes("caf\xe9 au lait, cr\xe8me br\xfbl\xe9e\n".encode("latin-1"))
    (ws / "fake.txt.gz").write_bytes(b"this was never compressed\n")
    (ws / "table.parquet.gz").write_bytes(gzip.compress(b"PAR1 not really parquet"))
    (ws / "a-file").write_text("a file where a directory is expected\n")
    (ws / "taken").mkdir()
    (ws / "taken" / "keep.txt").write_text("a result the user cares about\n")
    recipes = {
        "unsafe.yaml": 'train: !!python/object/apply:os.system ["echo pwned"]\n',
        "list.yaml": "- train\n- data\n",
        "broken.yaml": "train:\n  lr: [1e-4\n",
        "unknown-key.yaml": "train:\n  learning_rate: 0.1\n",
        "bad-value.yaml": "train:\n  weight_decay: -4\n",
    }
    (ws / "recipes").mkdir()
    for name, text in recipes.items():
        (ws / "recipes" / name).write_text(text)
    (ws / "images").mkdir()
    (ws / "images" / "a.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    (ws / "images" / "b.jpg").write_bytes(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00")
    (ws / "no-mask.txt").write_text("a line of text without any mask token\n")


@pytest.fixture(scope="session")
def workspace(tmp_path_factory, tiny_model_dir, corpus) -> Path:
    ws = tmp_path_factory.mktemp("robustness")
    _models(ws, Path(tiny_model_dir))
    _files(ws, corpus)
    _runs(ws)
    return ws


PRETRAIN = ["pretrain", "model.name_or_path={ws}/model", "data.source={ws}/corpus.txt", "output.dir={out}",
            "train.max_steps=1", "train.batch_size=4", "data.max_seq_length=32"]
FINETUNE = ["finetune", "sentiment", "--model", "{ws}/model", "--dataset", "{ws}/labelled.csv", "--output", "{out}",
            "--max-steps", "1", "data.max_seq_length=32", "train.batch_size=4"]
FILL = ["fill-mask", "the cat [MASK] the train", "--model"]

#: (command line, fragment of the error line)
CASES = {
    # pretrain: wrong types and out-of-range numbers
    "pretrain-batch-size-zero": (PRETRAIN + ["train.batch_size=0"], "train.batch_size=0 is not valid: it must be at "
                                                                    "least 1"),
    "pretrain-negative-lr": (PRETRAIN + ["train.lr=-1"], "train.lr=-1.0 is not valid: it must be greater than 0"),
    "pretrain-nan-lr": (PRETRAIN + ["train.lr=.nan"], "train.lr=nan is not valid"),
    "pretrain-batch-size-text": (PRETRAIN + ["train.batch_size=abc"], "invalid config value for train.batch_size"),
    "pretrain-grad-accum-zero": (PRETRAIN + ["train.grad_accum=0"], "train.grad_accum=0 is not valid"),
    "pretrain-warmup-over-one": (PRETRAIN + ["train.warmup_ratio=1.5"], "it must be in [0, 1]"),
    "pretrain-eval-batch-zero": (PRETRAIN + ["train.eval_batch_size=0"], "train.eval_batch_size=0 is not valid"),
    "pretrain-negative-seed": (PRETRAIN + ["train.seed=-1"], "it must be in [0, 4294967295]"),
    "pretrain-steps-minus-one": (PRETRAIN + ["train.max_steps=-1"], "not valid for pre-training"),
    "pretrain-steps-zero": (PRETRAIN + ["train.max_steps=0"], "train.max_steps=0 is not valid"),
    "pretrain-log-every-zero": (PRETRAIN + ["train.log_every=0"], "train.log_every=0 is not valid"),
    "pretrain-keep-negative": (PRETRAIN + ["train.keep_checkpoints=-2"], "train.keep_checkpoints=-2 is not valid"),
    "pretrain-checkpoint-minutes": (PRETRAIN + ["train.checkpoint_minutes=-5"], "train.checkpoint_minutes=-5.0"),
    "pretrain-max-time-words": (PRETRAIN + ["train.max_time=soon"], "train.max_time must look like"),
    "pretrain-max-time-negative": (PRETRAIN + ["train.max_time=-3"], "train.max_time must be positive"),
    "pretrain-seq-beyond-positions": (PRETRAIN + ["data.max_seq_length=100000"],
                                      "data.max_seq_length=100000 exceeds the 128 positions of model"),
    "pretrain-seq-too-short": (PRETRAIN + ["data.max_seq_length=2"], "data.max_seq_length=2 is not valid"),
    "pretrain-eval-fraction-one": (PRETRAIN + ["data.eval_fraction=1.0"], "data.eval_fraction=1.0 is not valid"),
    "pretrain-num-proc-zero": (PRETRAIN + ["data.num_proc=0"], "data.num_proc=0 is not valid"),
    "pretrain-empty-source": (PRETRAIN + ["data.source=''"], "data.source='' is not valid"),
    # pretrain: unknown names and choices
    "pretrain-unknown-key": (PRETRAIN + ["train.lrr=1"], "valid keys in train"),
    "pretrain-unknown-section": (PRETRAIN + ["trian.lr=1"], "unknown config key 'trian'"),
    "pretrain-override-without-value": (PRETRAIN + ["train.lr"], "overrides must look like section.key=value"),
    "pretrain-unknown-scheduler": (PRETRAIN + ["train.lr_scheduler=cosinus"], "it must be one of linear, cosine"),
    "pretrain-unknown-precision": (PRETRAIN + ["train.mixed_precision=fp8"], "train.mixed_precision='fp8'"),
    "pretrain-unknown-preset": (PRETRAIN + ["model.preset=bert-huge"], "it must be one of bert-tiny"),
    "pretrain-unknown-tokenizer-type": (PRETRAIN + ["tokenizer.type=sentencepiece"], "tokenizer.type='sentencepiece'"),
    "pretrain-unknown-strategy": (PRETRAIN + ["masking.name=rnadom"], "Did you mean 'random'"),
    "pretrain-unknown-masking-param": (PRETRAIN + ["masking.ratoi=0.2"], "unknown parameter(s) ratoi"),
    "pretrain-unknown-schedule": (PRETRAIN + ["masking.schedule=sideways"], "unknown masking schedule 'sideways'"),
    # masking with nothing to predict, or more than everything
    "pretrain-ratio-zero": (PRETRAIN + ["masking.ratio=0"], "predicts no token, so nothing would be learned"),
    "pretrain-ratio-over-one": (PRETRAIN + ["masking.ratio=1.5"], "masking.ratio must be between 0 and 1"),
    "pretrain-replace-probs": (PRETRAIN + ["masking.mask_replace_prob=0.9", "masking.random_replace_prob=0.5"],
                               "must not exceed 1"),
    # recipes
    "pretrain-missing-recipe": (PRETRAIN + ["--recipe", "nope"], "recipe 'nope' not found"),
    "pretrain-unsafe-yaml": (PRETRAIN + ["--recipe", "{ws}/recipes/unsafe.yaml"],
                             "could not determine a constructor for the tag"),
    "pretrain-recipe-not-mapping": (PRETRAIN + ["--recipe", "{ws}/recipes/list.yaml"], "must be a mapping"),
    "pretrain-recipe-syntax": (PRETRAIN + ["--recipe", "{ws}/recipes/broken.yaml"], "cannot read recipe"),
    "pretrain-recipe-unknown-key": (PRETRAIN + ["--recipe", "{ws}/recipes/unknown-key.yaml"],
                                    "unknown config key 'train.learning_rate'"),
    "pretrain-recipe-bad-value": (PRETRAIN + ["--recipe", "{ws}/recipes/bad-value.yaml"],
                                  "train.weight_decay=-4.0 is not valid"),
    # corpora: missing, empty, binary, damaged
    "pretrain-missing-corpus": (PRETRAIN + ["data.source={ws}/missing.txt"], "no such file"),
    "pretrain-empty-corpus": (PRETRAIN + ["data.source={ws}/empty.txt"], "has no non-empty text"),
    "pretrain-binary-corpus": (PRETRAIN + ["data.source={ws}/binary.bin"], "binary file, not text"),
    "pretrain-latin1-corpus": (PRETRAIN + ["data.source={ws}/latin1.txt"], "is not UTF-8 text"),
    "pretrain-fake-gzip": (PRETRAIN + ["data.source={ws}/fake.txt.gz"], "is not a valid .gz file"),
    "pretrain-compressed-parquet": (PRETRAIN + ["data.source={ws}/table.parquet.gz"], "decompress it first"),
    "pretrain-directory-without-text": (PRETRAIN + ["data.source={ws}/images"],
                                        "no text, csv, json(l) or parquet files in directory"),
    "pretrain-missing-column": (PRETRAIN + ["data.source={ws}/labelled.csv", "data.text_column=body"],
                                "text column 'body' not found"),
    # models: missing, damaged, wrong kind
    "pretrain-missing-model": (PRETRAIN + ["model.name_or_path=/no/such/model"], "no such model directory"),
    "pretrain-truncated-weights": (PRETRAIN + ["model.name_or_path={ws}/truncated"],
                                   "model.safetensors is truncated"),
    "pretrain-no-weights": (PRETRAIN + ["model.name_or_path={ws}/no-weights"], "has no weights file"),
    "pretrain-bad-config-json": (PRETRAIN + ["model.name_or_path={ws}/bad-config"], "config.json is not valid JSON"),
    "pretrain-no-model-type": (PRETRAIN + ["model.name_or_path={ws}/no-model-type"], "names no model_type"),
    "pretrain-bad-tokenizer-json": (PRETRAIN + ["model.name_or_path={ws}/bad-tokenizer"],
                                    "tokenizer.json is not valid JSON"),
    "pretrain-tokenizer-without-mask": (PRETRAIN + ["model.name_or_path={ws}/no-mask"], "has no mask token"),
    "pretrain-classifier": (PRETRAIN + ["model.name_or_path={ws}/classifier"],
                            "is a fine-tuned BertForSequenceClassification checkpoint"),
    "pretrain-file-as-model": (PRETRAIN + ["model.name_or_path={ws}/corpus.txt"], "is not a model directory"),
    # outputs
    "pretrain-output-not-empty": (PRETRAIN + ["output.dir={ws}/taken"], "is not empty"),
    "pretrain-output-under-file": (PRETRAIN + ["output.dir={ws}/a-file/run"], "cannot write to output directory"),
    "pretrain-output-is-file": (PRETRAIN + ["output.dir={ws}/a-file"], "exists and is not a directory"),
    # checkpoints: damaged, interrupted, missing
    "resume-damaged-by-path": (PRETRAIN + ["output.dir={ws}/run", "--resume",
                                           "{ws}/run/checkpoints/step-00000004"],
                               "step-00000004 is corrupt: model.safetensors is missing or truncated"),
    "resume-interrupted": (PRETRAIN + ["output.dir={ws}/run", "--resume", "{ws}/run/checkpoints/step-00000006"],
                           "is not a complete checkpoint"),
    "resume-auto-all-damaged": (PRETRAIN + ["output.dir={ws}/all-damaged", "--resume", "auto"],
                                "no intact checkpoint to resume from"),
    "resume-missing": (PRETRAIN + ["output.dir={ws}/run", "--resume", "{ws}/run/checkpoints/step-00000099"],
                       "no such checkpoint directory"),
    "resume-corrupt-manifest": (PRETRAIN + ["output.dir={ws}/bad-manifest", "--resume",
                                            "{ws}/bad-manifest/checkpoints/step-00000002"], "corrupt manifest"),
    # finetune
    "finetune-negative-lr": (FINETUNE + ["train.lr=-1"], "train.lr=-1.0 is not valid"),
    "finetune-steps-zero": (FINETUNE + ["--max-steps", "0"], "train.max_steps=0 is not valid"),
    "finetune-epochs-zero": (FINETUNE + ["--epochs", "0", "train.max_steps=-1"],
                             "train.num_epochs=0.0 is not valid with train.max_steps=-1"),
    "finetune-checkpoints": (FINETUNE + ["train.checkpoint_every=5"], "are for pre-training"),
    "finetune-eval-fraction": (FINETUNE + ["data.eval_fraction=1.5"], "data.eval_fraction=1.5 is not valid"),
    "finetune-seq-beyond-positions": (FINETUNE + ["data.max_seq_length=4096"], "exceeds the 128 positions"),
    "finetune-samples-zero": (FINETUNE + ["data.max_train_samples=0"], "data.max_train_samples=0 is not valid"),
    "finetune-binary-dataset": (FINETUNE + ["--dataset", "{ws}/binary.bin"], "binary file, not text"),
    "finetune-missing-dataset": (FINETUNE + ["--dataset", "{ws}/missing.csv"], "no such file"),
    "finetune-missing-label-column": (FINETUNE + ["--label-column", "stars"], "label column 'stars' not found"),
    "finetune-truncated-model": (FINETUNE + ["--model", "{ws}/truncated"], "model.safetensors is truncated"),
    "finetune-bad-config-json": (FINETUNE + ["--model", "{ws}/bad-config"], "config.json is not valid JSON"),
    "finetune-output-not-empty": (FINETUNE + ["--output", "{ws}/taken"], "is not empty"),
    "finetune-unknown-key": (FINETUNE + ["data.labels=1"], "valid keys in data"),
    # fill-mask
    "fill-truncated-model": (FILL + ["{ws}/truncated"], "model.safetensors is truncated"),
    "fill-no-weights": (FILL + ["{ws}/no-weights"], "has no weights file"),
    "fill-classifier": (FILL + ["{ws}/classifier"], "has no trained masked-language-model head"),
    "fill-bad-tokenizer": (FILL + ["{ws}/bad-tokenizer"], "tokenizer.json is not valid JSON"),
    "fill-no-model-type": (FILL + ["{ws}/no-model-type"], "names no model_type"),
    "fill-tokenizer-without-mask": (FILL + ["{ws}/no-mask"], "has no mask token"),
    "fill-text-without-mask": (["fill-mask", "no mask here", "--model", "{ws}/model"], "has no mask"),
    "fill-missing-file": (["fill-mask", "--file", "{ws}/missing.txt", "--model", "{ws}/model"], "no such file"),
    "fill-file-without-mask": (["fill-mask", "--file", "{ws}/no-mask.txt", "--model", "{ws}/model"], "has no mask"),
    # masking preview / build-weights / build-vocab
    "preview-ratio-over-one": (["masking", "preview", "a text", "--ratio", "2", "--model", "{ws}/model"],
                               "--ratio must be between 0 and 1"),
    "preview-unknown-strategy": (["masking", "preview", "a text", "--strategy", "spna", "--model", "{ws}/model"],
                                 "Did you mean 'span'"),
    "preview-binary-corpus": (["masking", "preview", "--corpus", "{ws}/binary.bin", "--stats", "--model",
                               "{ws}/model"], "binary file, not text"),
    "preview-bad-tokenizer": (["masking", "preview", "a text", "--model", "{ws}/bad-tokenizer"],
                              "tokenizer.json is not valid JSON"),
    "weights-ratio-zero": (["masking", "build-weights", "{ws}/corpus.txt", "-o", "{out}.json", "--ratio", "0",
                            "--model", "{ws}/model"], "--ratio must be between 0 and 1"),
    "weights-binary-corpus": (["masking", "build-weights", "{ws}/binary.bin", "-o", "{out}.json", "--model",
                               "{ws}/model"], "binary file, not text"),
    "vocab-latin1-corpus": (["masking", "build-vocab", "{ws}/latin1.txt", "-o", "{out}.json", "--model",
                             "{ws}/model"], "is not UTF-8 text"),
    "vocab-missing-corpus": (["masking", "build-vocab", "{ws}/missing.txt", "-o", "{out}.json", "--model",
                              "{ws}/model"], "no such file"),
    # tokenizer train / extend
    "tokenizer-unknown-type": (["tokenizer", "train", "{ws}/corpus.txt", "-o", "{out}", "--type", "sentencepiece"],
                               "unknown tokenizer type 'sentencepiece'"),
    "tokenizer-unknown-family": (["tokenizer", "train", "{ws}/corpus.txt", "-o", "{out}", "--family", "gpt"],
                                 "unknown tokenizer family 'gpt'"),
    "tokenizer-binary-corpus": (["tokenizer", "train", "{ws}/binary.bin", "-o", "{out}"], "binary file, not text"),
    "tokenizer-empty-corpus": (["tokenizer", "train", "{ws}/empty.txt", "-o", "{out}"], "has no non-empty text"),
    "tokenizer-output-not-empty": (["tokenizer", "train", "{ws}/corpus.txt", "-o", "{ws}/taken"], "is not empty"),
    "extend-truncated-model": (["tokenizer", "extend", "-c", "{ws}/corpus.txt", "-n", "3", "-o", "{out}", "-m",
                                "{ws}/truncated"], "model.safetensors is truncated"),
    "extend-classifier": (["tokenizer", "extend", "-c", "{ws}/corpus.txt", "-n", "3", "-o", "{out}", "-m",
                           "{ws}/classifier"], "is a fine-tuned BertForSequenceClassification"),
    "extend-binary-corpus": (["tokenizer", "extend", "-c", "{ws}/binary.bin", "-n", "3", "-o", "{out}", "-m",
                              "{ws}/model"], "binary file, not text"),
    # the other commands that read models, corpora or run directories
    "score-truncated-model": (["score", "the cat likes the train", "--model", "{ws}/truncated"],
                              "model.safetensors is truncated"),
    "score-bad-tokenizer": (["score", "the cat likes the train", "--model", "{ws}/bad-tokenizer"],
                            "tokenizer.json is not valid JSON"),
    "evaluate-truncated-model": (["evaluate", "{ws}/truncated"], "model.safetensors is truncated"),
    "evaluate-classifier": (["evaluate", "{ws}/classifier"], "is a fine-tuned BertForSequenceClassification"),
    "evaluate-binary-corpus": (["evaluate", "{ws}/model", "--corpus", "{ws}/binary.bin"], "binary file, not text"),
    "compare-missing-recipe": (["compare", "--recipe", "nope"], "recipe 'nope' not found"),
    "plot-not-a-run": (["plot", "{ws}/taken", "-o", "{out}.png"], "no metrics.jsonl"),
    "push-not-a-model": (["push", "{ws}/taken", "--repo-id", "someone/model"], "not a saved model directory"),
    "runs-missing-directory": (["runs", "ls", "{ws}/missing"], "is not a directory"),
    # options Click parses: a bad value or an unknown name is one line too, naming the option and the help to read
    "fill-top-k-text": (FILL + ["{ws}/model", "--top-k", "abc"], "Invalid value for '--top-k'"),
    "pretrain-unknown-option": (PRETRAIN + ["--bogus"], "No such option: --bogus (see 'mlmkit pretrain --help')"),
    "finetune-epochs-text": (FINETUNE + ["--epochs", "many"], "Invalid value for '--epochs'"),
    "unknown-command": (["pretrian"], "No such command 'pretrian'"),
    "unknown-subcommand": (["finetune", "sentimnet"],
                           "No such command 'sentimnet'. Did you mean 'sentiment'? (see 'mlmkit finetune --help')"),
    "score-missing-option-value": (["score", "a text", "--model"], "Option '--model' requires an argument"),
}


def snapshot(root: Path) -> dict[str, str]:
    """SHA-256 of every file under ``root``, by relative path."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _command(case: list[str], ws, out) -> list[str]:
    return [part.format(ws=ws, out=out) for part in case]


def _command_name(case_id: str) -> str:
    return case_id.split("-", 1)[0]


@pytest.mark.parametrize("case_id", list(CASES))
def test_bad_input_is_one_clear_error(case_id, workspace, tmp_path, one_torch_thread):
    argv, fragment = CASES[case_id]
    before = snapshot(workspace)
    result = runner.invoke(app, _command(argv, workspace, tmp_path / "out"))
    text = result.output
    assert result.exit_code == 2, text
    assert isinstance(result.exception, SystemExit) and "Traceback" not in text, text
    errors = [line for line in text.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, text
    assert fragment in errors[0], text
    assert text.rstrip().endswith(errors[0].rstrip()), text  # the error is the last word
    after = snapshot(workspace)
    assert {k: v for k, v in after.items() if k in before} == before, "a file that existed before changed or vanished"
    assert set(before) <= set(after)


def test_every_command_is_covered():
    """Sixty bad inputs at least, spread over every command that reads user input."""
    covered = {_command_name(case_id) for case_id in CASES}
    assert len(CASES) >= 60
    assert {"pretrain", "resume", "finetune", "fill", "preview", "weights", "vocab", "tokenizer", "extend", "score",
            "evaluate", "compare", "plot", "push", "runs"} <= covered
