"""Typed configs: the dataclasses are the schema and the documentation.

Every field carries a one-line docstring; ``mlmkit`` prints them in error messages
and the README lists them. Precedence: these defaults < recipe YAML < CLI
``section.key=value`` overrides.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

EMBEDDED = "embedded"


@dataclass
class ModelConfig:
    """Which model to start from."""

    name_or_path: str = EMBEDDED
    """Checkpoint to continue from: a local directory, a Hub name, or 'embedded' (packaged MiniLM-L6-H384)."""
    tokenizer: str | None = None
    """Tokenizer directory or Hub name; defaults to the model's own."""
    from_scratch: bool = False
    """Initialise weights randomly from the model's config instead of loading them (tokenizer still loaded)."""
    revision: str | None = None
    """Hub revision (branch, tag or commit) of the model."""
    trust_remote_code: bool = False
    """Allow model code from the Hub to run; off unless you trust the repository."""
    sparse_head: bool = True
    """Run the MLM head only on predicted positions (same loss, much less compute)."""
    attn_implementation: str | None = "sdpa"
    """Attention kernel passed to from_pretrained ('sdpa', 'eager', ...); None keeps the model's default."""


@dataclass
class PretrainDataConfig:
    """Where the pre-training text comes from and how it is cut into blocks."""

    source: str = EMBEDDED
    """'embedded' (packaged tweets), a Hub dataset name, or local txt/csv/json/jsonl/parquet file(s) or directory."""
    config_name: str | None = None
    """Hub dataset configuration (e.g. 'wikitext-2-raw-v1')."""
    split: str = "train"
    """Dataset split to read."""
    text_column: str = "text"
    """Column holding the text (ignored for .txt files)."""
    max_seq_length: int = 64
    """Length of packed blocks, special tokens included."""
    eval_fraction: float = 0.02
    """Share of blocks held out for evaluation."""
    eval_max_blocks: int = 1024
    """At most this many held-out blocks (keeps evaluation quick on big corpora)."""
    max_documents: int | None = None
    """Use only the first N documents (quick experiments)."""
    num_proc: int | None = None
    """Processes for tokenization; None tokenizes in this process."""


@dataclass
class TrainConfig:
    """Optimisation and loop settings shared by pre-training and fine-tuning."""

    max_steps: int = 100
    """Optimizer steps to run (pre-training); -1 means derive from num_epochs."""
    num_epochs: float = 1.0
    """Epochs over the training set when max_steps is -1."""
    batch_size: int = 64
    """Sequences per device per micro-batch."""
    grad_accum: int = 1
    """Micro-batches accumulated per optimizer step."""
    lr: float = 5e-4
    """Peak learning rate."""
    weight_decay: float = 0.01
    """AdamW weight decay (not applied to biases and LayerNorm)."""
    warmup_ratio: float = 0.06
    """Share of steps spent warming up the learning rate linearly."""
    lr_scheduler: str = "linear"
    """Transformers scheduler name after warmup: linear, cosine, constant_with_warmup, ..."""
    max_grad_norm: float = 1.0
    """Gradient clipping norm; 0 disables clipping."""
    mixed_precision: str = "auto"
    """'auto' (bf16 on GPUs that support it, else fp32), 'no', 'bf16' or 'fp16'."""
    seed: int = 42
    """Seed for weights of new layers, data order and masks."""
    eval_every: int = 0
    """Evaluate every N optimizer steps (0: only before and after training)."""
    log_every: int = 10
    """Write a metrics line every N optimizer steps."""
    num_workers: int = 0
    """Dataloader worker processes (masking still follows the exact optimizer step)."""
    compile: bool = False
    """Wrap the model in torch.compile."""
    eval_batch_size: int = 128
    """Sequences per evaluation batch."""


@dataclass
class OutputConfig:
    """Where results go."""

    dir: str = "runs/pretrain"
    """Run directory: model + tokenizer (from_pretrained-ready), config.yaml, metrics.jsonl."""
    overwrite: bool = False
    """Replace an existing non-empty run directory."""


def _default_masking() -> dict[str, Any]:
    return {"name": "random", "ratio": 0.15}


@dataclass
class PretrainConfig:
    """``mlmkit pretrain``: continue (or start) MLM pre-training."""

    model: ModelConfig = field(default_factory=ModelConfig)
    """Model to train."""
    data: PretrainDataConfig = field(default_factory=PretrainDataConfig)
    """Training text."""
    masking: dict[str, Any] = field(default_factory=_default_masking)
    """Masking strategy: 'name', its parameters (see `mlmkit masking ls`) and an optional 'schedule'."""
    train: TrainConfig = field(default_factory=TrainConfig)
    """Optimisation."""
    output: OutputConfig = field(default_factory=OutputConfig)
    """Run directory."""


@dataclass
class FinetuneDataConfig:
    """Labelled data for classification fine-tuning."""

    dataset: str = EMBEDDED
    """'embedded' (packaged tweets), a Hub dataset name (sst2, imdb, ...), or a local csv/json/jsonl/parquet file."""
    config_name: str | None = None
    """Hub dataset configuration."""
    text_column: str | None = None
    """Text column; defaults: embedded 'text', sst2 'sentence', otherwise 'text'."""
    label_column: str | None = None
    """Label column (strings or integers); defaults: embedded 'sentiment', otherwise 'label'."""
    train_split: str = "train"
    """Split to train on."""
    eval_split: str | None = None
    """Split to evaluate on; default: sst2 'validation', imdb 'test', else a stratified held-out share of train."""
    eval_fraction: float = 0.1
    """Held-out share when the dataset has no evaluation split."""
    max_seq_length: int = 128
    """Truncate texts to this many tokens."""
    max_train_samples: int | None = None
    """Train on at most N examples (stratified sample)."""
    max_eval_samples: int | None = None
    """Evaluate on at most N examples (stratified sample)."""
    label_names: list[str] | None = None
    """Names of integer labels 0..k-1 in order; default: the dataset's ClassLabel names or the label values."""
    group_by_length: bool = True
    """Batch texts of similar length together (less padding); false shuffles plainly."""


def _finetune_train_defaults() -> TrainConfig:
    return TrainConfig(max_steps=-1, num_epochs=3.0, batch_size=32, lr=5e-5, warmup_ratio=0.1, log_every=20)


@dataclass
class FinetuneConfig:
    """``mlmkit finetune sentiment``: sequence classification on top of an encoder."""

    model: ModelConfig = field(default_factory=lambda: ModelConfig(name_or_path="runs/demo/mlm"))
    """Encoder to fine-tune."""
    data: FinetuneDataConfig = field(default_factory=FinetuneDataConfig)
    """Labelled data."""
    train: TrainConfig = field(default_factory=_finetune_train_defaults)
    """Optimisation."""
    output: OutputConfig = field(default_factory=lambda: OutputConfig(dir="runs/sentiment"))
    """Output model directory."""
