"""Run a study: every arm x seed pre-trained, evaluated and recorded, resumably.

Each run lives in ``<study>/runs/<arm>/seed-<seed>/``. A run is finished when its
``result.json`` exists (written atomically after training and evaluation); re-running
the study skips finished runs, resumes a run that left checkpoints (``--resume auto``
on its own directory) and starts over a run that died before its first checkpoint.
A killed study therefore loses at most the run in progress since its last checkpoint.

With ``shard=(i, n)`` only every n-th run from the i-th is run (several machines or
GPUs share one study directory); the report is written when every run is finished.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from mlmkit.config.loading import load_config
from mlmkit.config.schema import FinetuneConfig
from mlmkit.errors import UserError
from mlmkit.evaluation.masked import build_held_out, evaluate_model, load_masked_lm
from mlmkit.io.outputs import read_metrics, write_text_atomic
from mlmkit.masking.pmi_vocab import build_vocab_file
from mlmkit.study.recipe import PMI_VOCAB_FILE, Study, StudyRun, shard_runs
from mlmkit.tokenization.train import RUN_TOKENIZER_DIR, needs_trained_tokenizer, tokenizer_for_run
from mlmkit.training.checkpoint import list_checkpoints
from mlmkit.training.finetune import finetune_classifier
from mlmkit.training.pretrain import pretrain
from mlmkit.training.stopping import TrainingInterrupted
from mlmkit.training.suite import SuiteConfig, run_suite

RESULT_FILE = "result.json"


@dataclass
class StudyProgress:
    """What one invocation of a study did."""

    executed: list[str] = field(default_factory=list)
    """Runs trained here (fresh or resumed)."""
    resumed: list[str] = field(default_factory=list)
    """Of those, the runs that continued from a checkpoint."""
    skipped: list[str] = field(default_factory=list)
    """Runs already finished before this invocation."""
    missing: list[str] = field(default_factory=list)
    """Runs of the whole study (all shards) still not finished afterwards."""
    seconds: float = 0.0


def read_result(run: StudyRun) -> dict[str, Any] | None:
    """A finished run's record, or None; a record made by a different config is a user error."""
    path = run.dir / RESULT_FILE
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UserError(f"{path} is damaged ({exc}); delete it to run {run.key} again") from exc
    if record.get("fingerprint") != run.fingerprint:
        raise UserError(f"{run.dir} was made with a different configuration than this study now gives; "
                        "use another study directory (dir=...) or delete that run")
    return record


def prepare_tokenizer(study: Study, console: Console, train: bool = True) -> str | None:
    """Train the tokenizer once for a from-scratch base, so every run shares one vocabulary.

    Each run training its own would give arms different vocabularies (the trainer breaks
    ties in hash order), hence different held-out blocks and masks: not a fair comparison.
    Shards that start together take turns through a lock file; the first trains, the
    others reuse ``<study>/tokenizer``. Returns its path, or None when the base needs none.
    """
    import fcntl  # lazy: POSIX-only; the rest of the module imports on any platform

    first = study.runs[0].config
    if not needs_trained_tokenizer(first.model, first.tokenizer):
        return None
    target = study.dir / RUN_TOKENIZER_DIR
    if not train:
        return str(target)
    study.dir.mkdir(parents=True, exist_ok=True)
    with open(study.dir / ".tokenizer.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            return tokenizer_for_run(first, study.dir, None, console).tokenizer
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def prepare_pmi_vocabulary(study: Study, console: Console) -> None:
    """Build ``<study>/pmi-vocab.json`` once when an arm asked for ``vocab: auto``.

    It is built from the study's corpus with the tokenizer the runs use (for its word splitting).
    """
    import fcntl  # lazy: POSIX-only; the rest of the module imports on any platform

    target = study.dir / PMI_VOCAB_FILE
    users = [run for run in study.runs if run.config.masking.get("vocab") == str(target)]
    if not users or target.is_file():
        return
    cfg = users[0].config
    study.dir.mkdir(parents=True, exist_ok=True)
    with open(study.dir / ".pmi-vocab.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if not target.is_file():
                console.print(f"building the PMI n-gram vocabulary of {cfg.data.source} -> {target}")
                build_vocab_file([cfg.data.source], target, model=cfg.model.tokenizer or cfg.model.name_or_path,
                                 text_column=cfg.data.text_column, split=cfg.data.split,
                                 max_documents=cfg.data.max_documents, console=console)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _has_checkpoint(run_dir: Path) -> bool:
    return run_dir.is_dir() and bool(list_checkpoints(run_dir))


class _HeldOutCache:
    """Held-out blocks per (tokenizer, data, seed): arms that share them are evaluated on the same blocks."""

    def __init__(self) -> None:
        self.entries: dict[str, Any] = {}

    def get(self, tokenizer: Any, cfg: Any, metrics: list[str]) -> Any:
        # the vocabulary itself, not the path it was loaded from: every run saves its own copy of the study's tokenizer
        backend = getattr(tokenizer, "backend_tokenizer", None)
        vocabulary = hashlib.sha256(backend.to_str().encode()).hexdigest() if backend is not None else \
            getattr(tokenizer, "name_or_path", "")
        key = json.dumps([vocabulary, len(tokenizer), dataclasses.asdict(cfg.data), cfg.train.seed],
                         sort_keys=True, default=str)
        if key not in self.entries:
            words = "word_class" in metrics
            self.entries[key] = build_held_out(tokenizer, cfg.data, cfg.train.seed, word_classes=words, pos=words)
        return self.entries[key]


def execute_run(study: Study, run: StudyRun, console: Console, cache: _HeldOutCache) -> dict[str, Any]:
    """Pre-train (or resume) one run, evaluate it, run the downstream checks, write ``result.json``."""
    cfg = dataclasses.replace(run.config, train=dataclasses.replace(run.config.train),
                              output=dataclasses.replace(run.config.output))
    resume = _has_checkpoint(run.dir)
    cfg.train.resume = "auto" if resume else None
    cfg.output.overwrite = not resume  # a run that died before its first checkpoint starts over
    console.rule(f"{run.key} ({'resuming' if resume else 'starting'})")
    trained = pretrain(cfg, console=console)
    model, tokenizer, _ = load_masked_lm(str(run.dir))
    evaluation = study.config.evaluate
    report = evaluate_model(model, tokenizer, cache.get(tokenizer, cfg, evaluation.metrics), evaluation.metrics,
                            max_sentences=evaluation.max_sentences, probe=evaluation.probe, name=run.key)
    record: dict[str, Any] = {
        "arm": run.arm, "seed": run.seed, "fingerprint": run.fingerprint, "masking": cfg.masking,
        "pretrain": {"steps": trained.steps, "train_seconds": trained.train_seconds,
                     "tokens_per_second": trained.tokens_per_second, "final_loss": trained.final_loss,
                     "before": trained.before, "after": trained.after, "resumed_from": trained.resumed_from},
        "tokens": round(trained.tokens_per_second * trained.train_seconds),
        "evaluation": report.to_dict(),
        "curves": read_metrics(run.dir / "metrics.jsonl"),
    }
    if study.config.finetune:
        record["finetune"] = _finetune(study, run, console)
    if study.config.suite:
        record.setdefault("finetune", {}).update(_suite(study, run, console))
    write_text_atomic(run.dir / RESULT_FILE, json.dumps(record, indent=1, default=str))
    return record


def _finetune(study: Study, run: StudyRun, console: Console) -> dict[str, float]:
    """The expensive downstream check: fine-tune the run's encoder with the study's fine-tuning recipe."""
    overrides = [*study.config.finetune_overrides, f"model.name_or_path={run.dir}",
                 f"output.dir={run.dir / 'finetune'}", "output.overwrite=true", f"train.seed={run.seed}"]
    cfg = load_config(FinetuneConfig, study.config.finetune, overrides, kind="finetune")
    result = finetune_classifier(cfg, console=console)
    return {"finetune_accuracy": result.accuracy, "finetune_macro_f1": result.macro_f1}


def _suite(study: Study, run: StudyRun, console: Console) -> dict[str, float]:
    """The downstream suite on the run's encoder, with the run's seed: ``suite_<task>_<metric>`` per task."""
    options = [f"model={json.dumps(str(run.dir))}", f"seeds=[{run.seed}]",
               f"output.dir={json.dumps(str(run.dir / 'suite'))}", "output.overwrite=true"]
    summary = run_suite(load_config(SuiteConfig, study.config.suite, options, kind="suite"), console=console)
    return {f"suite_{row['task']}_{row['metric']}": row["mean"] for row in summary["rows"]
            if row["mean"] is not None}


def run_study(study: Study, shard: tuple[int, int] | None = None, console: Console | None = None) -> StudyProgress:
    """Run the study's unfinished runs (of one shard) in order; returns what was done."""
    console = console or Console(stderr=True)
    start = time.perf_counter()
    progress = StudyProgress()
    cache = _HeldOutCache()
    mine = shard_runs(study.runs, shard)
    todo = [run for run in mine if read_result(run) is None]
    progress.skipped = [run.key for run in mine if run not in todo]
    if progress.skipped:
        console.print(f"{len(progress.skipped)} finished run(s) skipped: {', '.join(progress.skipped)}")
    for number, run in enumerate(todo, 1):
        console.print(f"[bold]run {number}/{len(todo)}[/]: arm {run.arm}, seed {run.seed} -> {run.dir}")
        if _has_checkpoint(run.dir):
            progress.resumed.append(run.key)
        try:
            execute_run(study, run, console, cache)
        except TrainingInterrupted as exc:
            # the run saved a checkpoint; the study, not the single run, is what the user resumes
            raise TrainingInterrupted(f"study interrupted during {run.key} (checkpoint saved in {run.dir}); "
                                      "run the same mlmkit compare command again to resume it",
                                      exc.signal_number) from exc
        progress.executed.append(run.key)
    progress.missing = [run.key for run in study.runs if read_result(run) is None]
    progress.seconds = time.perf_counter() - start
    return progress


def collect_results(study: Study) -> tuple[list[dict[str, Any]], list[str]]:
    """The records of the finished runs and the keys of the unfinished ones."""
    records, missing = [], []
    for run in study.runs:
        record = read_result(run)
        if record is None:
            missing.append(run.key)
        else:
            records.append(record)
    return records, missing
