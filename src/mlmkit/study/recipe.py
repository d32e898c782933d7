"""Study recipes: a base pre-training recipe, the arms, the seeds and the checks.

A study recipe (``recipes/compare/*.yaml``) names one base pre-training recipe and the
overrides every run shares (so all runs have the same steps, batch, sequence length,
data, model and evaluation), then the *arms*: each replaces the ``masking`` section
and may add ``masking.*`` overrides. Every arm runs once per seed; the seed sets the
initial weights, the data order, the held-out split and the masks, so runs of
different arms with the same seed differ only in the masking (paired comparisons).

Equal compute is enforced: an arm may not change the number of steps, the batch, the
sequence length, the data, the model or the seed, and a time budget (``train.max_time``)
is switched off, since it would stop faster and slower arms at different steps.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from mlmkit.config.loading import config_to_dict, find_recipe, load_config, parse_overrides
from mlmkit.config.schema import PretrainConfig
from mlmkit.errors import UserError

#: sections of the pre-training config; a CLI override in one of them goes to every run
PRETRAIN_SECTIONS = tuple(f.name for f in dataclasses.fields(PretrainConfig))
#: what an arm may not change: the compute and the data that make runs comparable
EQUAL_COMPUTE_KEYS = ("train.max_steps", "train.batch_size", "train.grad_accum", "train.seed", "train.num_epochs",
                      "train.max_time", "data.", "model.", "tokenizer.")
#: where ``masking.vocab: auto`` puts the PMI vocabulary the study builds from its corpus
PMI_VOCAB_FILE = "pmi-vocab.json"
ARM_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass
class StudyEvaluateConfig:
    """How every finished run is evaluated (see ``mlmkit evaluate``)."""

    metrics: list[str] = field(default_factory=lambda: ["random", "whole_word", "pll", "word_class"])
    """Metric families: random, whole_word, pll, word_class."""
    max_sentences: int = 64
    """Held-out blocks scored by pseudo-log-likelihood."""
    probe: str | None = "embedded"
    """Labelled data for the frozen-feature probe ('embedded', a file, a Hub dataset); null skips it."""


@dataclass
class StudyConfig:
    """``mlmkit compare``: arms x seeds at equal compute, evaluated and compared with the baseline."""

    base: str = "scratch-tiny"
    """Pre-training recipe (packaged name or path) every run starts from."""
    overrides: list[str] = field(default_factory=list)
    """Pre-training overrides shared by every run, e.g. [train.max_steps=600, train.eval_every=100]."""
    arms: dict[str, Any] = field(default_factory=dict)
    """Arm name -> {masking: {name: ..., ...}, overrides: [masking.key=value, ...]}."""
    baseline: str | None = None
    """The arm the others are compared with (default: the first arm)."""
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    """One run per arm and seed; the seed sets initial weights, data order, held-out split and masks."""
    evaluate: StudyEvaluateConfig = field(default_factory=StudyEvaluateConfig)
    """Evaluation of every finished run."""
    finetune: str | None = None
    """Optional expensive downstream check: a fine-tuning recipe run on every arm and seed."""
    finetune_overrides: list[str] = field(default_factory=list)
    """Overrides for that fine-tuning recipe (e.g. [train.num_epochs=1])."""
    suite: str | None = None
    """Optional downstream suite (``mlmkit finetune suite`` recipe: packaged name or path) run on every arm
    and seed's encoder with the run's seed; each task's headline score is compared like the other metrics."""
    dir: str | None = None
    """Study directory (default: runs/compare/<recipe name>)."""
    checkpoint_every: int | None = None
    """Checkpoint interval of each run, so an interrupted run resumes (default: a quarter of the steps)."""


@dataclass
class StudyRun:
    """One arm x seed: its resolved pre-training config and where it lives."""

    arm: str
    seed: int
    config: PretrainConfig
    dir: Path
    fingerprint: str

    @property
    def key(self) -> str:
        return f"{self.arm}/seed-{self.seed}"


@dataclass
class Study:
    """A loaded study: its config, name, directory and runs in a fixed order (arms, then seeds)."""

    config: StudyConfig
    name: str
    dir: Path
    runs: list[StudyRun]
    baseline: str
    arm_masking: dict[str, dict[str, Any]]
    recipe_path: str | None = None


def split_overrides(overrides: list[str]) -> tuple[list[str], list[str]]:
    """CLI overrides -> ``(study-level, pre-training)``: keys in a pre-training section go to every run."""
    study, pretrain = [], []
    for item in overrides:
        section = item.split("=", 1)[0].split(".", 1)[0]
        (pretrain if section in PRETRAIN_SECTIONS and "." in item.split("=", 1)[0] else study).append(item)
    return study, pretrain


def _arm_overrides(name: str, spec: Any) -> tuple[dict[str, Any] | None, list[str]]:
    if spec is None:
        spec = {}
    if not isinstance(spec, dict):
        raise UserError(f"arm {name!r} must be a mapping with 'masking' and/or 'overrides'")
    unknown = set(spec) - {"masking", "overrides"}
    if unknown:
        raise UserError(f"arm {name!r} has unknown key {sorted(unknown)[0]!r}; an arm sets 'masking' and/or "
                        "'overrides'")
    masking = spec.get("masking")
    if masking is not None and (not isinstance(masking, dict) or "name" not in masking):
        raise UserError(f"arm {name!r}: 'masking' must be a mapping with a strategy 'name'")
    overrides = [str(o) for o in spec.get("overrides") or []]
    for item in overrides:
        key = item.split("=", 1)[0]
        if any(key == k or (k.endswith(".") and key.startswith(k)) for k in EQUAL_COMPUTE_KEYS):
            raise UserError(f"arm {name!r} changes {key}: arms must run at equal compute on the same data and "
                            "model; put shared settings in the study's 'overrides'")
    return (dict(masking) if masking is not None else None), overrides


def _fingerprint(cfg: PretrainConfig) -> str:
    """What makes a run: the settings that differ from the schema's defaults.

    Where the run is written and how it is resumed do not count, and neither do keys
    left at their defaults, so a study directory stays valid when a later version adds
    config keys.
    """
    neutral = dataclasses.replace(cfg, output=dataclasses.replace(cfg.output, dir="", overwrite=False),
                                  train=dataclasses.replace(cfg.train, resume=None))
    changed = _non_default(config_to_dict(neutral), config_to_dict(PretrainConfig()))
    return hashlib.sha256(json.dumps(changed, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _non_default(values: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in values.items():
        default = defaults.get(key)
        if isinstance(value, dict) and isinstance(default, dict) and key != "masking":
            nested = _non_default(value, default)
            if nested:
                out[key] = nested
        elif value != default:
            out[key] = value
    return out


def load_study(recipe: str, overrides: list[str] | None = None, study_dir: str | None = None,
               tokenizer_dir: str | None = None) -> Study:
    """Resolve a study recipe and CLI overrides into its runs.

    Args:
        recipe: study recipe path or packaged name (``recipes/compare``).
        overrides: CLI ``key=value`` items; pre-training keys (``train.max_steps=...``) apply
            to every run, the rest (``seeds=[0,1]``, ``dir=...``) to the study.
        study_dir: overrides the recipe's ``dir``.
        tokenizer_dir: a tokenizer every run uses (the study trains one for from-scratch bases).
    """
    study_overrides, shared = split_overrides(list(overrides or []))
    path = find_recipe(recipe, "compare")
    cfg = load_config(StudyConfig, str(path), study_overrides, kind="compare")
    if not cfg.arms:
        raise UserError(f"study recipe {path} defines no arms")
    if not cfg.seeds:
        raise UserError("a study needs at least one seed")
    if len(set(cfg.seeds)) != len(cfg.seeds):
        raise UserError(f"seeds must be distinct, got {cfg.seeds}")
    for arm in cfg.arms:
        if not ARM_NAME.match(str(arm)):
            raise UserError(f"arm name {arm!r} must be letters, digits, '.', '_' or '-'")
    baseline = cfg.baseline or next(iter(cfg.arms))
    if baseline not in cfg.arms:
        raise UserError(f"baseline {baseline!r} is not an arm; arms: {', '.join(cfg.arms)}")
    name = path.stem
    root = Path(study_dir or cfg.dir or f"runs/compare/{name}").expanduser()
    shared = [*cfg.overrides, *shared, "train.max_time=null"]
    if tokenizer_dir is not None:
        shared.append(f"model.tokenizer={tokenizer_dir}")
    runs, arm_masking = [], {}
    for arm, spec in cfg.arms.items():
        masking, arm_extra = _arm_overrides(arm, spec)
        for seed in cfg.seeds:
            masking_extra = [o for o in arm_extra if o.startswith("masking.")]
            other_extra = [o for o in arm_extra if not o.startswith("masking.")]
            run_cfg = load_config(PretrainConfig, cfg.base, [*shared, *other_extra, f"train.seed={seed}"])
            if masking is not None:  # the arm's masking section replaces the base's whole
                run_cfg.masking = dict(masking)
            if run_cfg.masking.get("name") == "pmi" and run_cfg.masking.get("vocab") == "auto":
                run_cfg.masking = {**run_cfg.masking, "vocab": str(root / PMI_VOCAB_FILE)}
            if masking_extra:
                refined = OmegaConf.merge(OmegaConf.create(run_cfg.masking), parse_overrides(masking_extra).masking)
                run_cfg.masking = OmegaConf.to_container(refined, resolve=True)
            if cfg.checkpoint_every is not None:
                run_cfg.train.checkpoint_every = cfg.checkpoint_every
            elif not run_cfg.train.checkpoint_every:
                run_cfg.train.checkpoint_every = max(1, run_cfg.train.max_steps // 4)
            run_cfg.train.keep_checkpoints = 1
            run_dir = root / "runs" / arm / f"seed-{seed}"
            run_cfg.output.dir = str(run_dir)
            runs.append(StudyRun(arm=arm, seed=int(seed), config=run_cfg, dir=run_dir,
                                 fingerprint=_fingerprint(run_cfg)))
        arm_masking[arm] = dict(runs[-1].config.masking)
    return Study(config=cfg, name=name, dir=root, runs=runs, baseline=baseline, arm_masking=arm_masking,
                 recipe_path=str(path))


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """``'i/n'`` (0-based i, as SLURM_ARRAY_TASK_ID with --array=0-(n-1)) -> ``(i, n)``."""
    if text is None:
        return None
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not match or int(match.group(2)) < 1 or int(match.group(1)) >= int(match.group(2)):
        raise UserError(f"--shard takes i/n with 0 <= i < n (e.g. 0/4), got {text!r}")
    return int(match.group(1)), int(match.group(2))


def shard_runs(runs: list[StudyRun], shard: tuple[int, int] | None) -> list[StudyRun]:
    """The runs of one shard: every n-th run from the i-th, in the study's fixed order."""
    if shard is None:
        return list(runs)
    index, count = shard
    return [run for k, run in enumerate(runs) if k % count == index]
