"""Score any masked LM on held-out text, independent of how it was trained.

Every number comes with the *evaluation family* it belongs to, because no single
masking of the held-out text is neutral:

* ``random`` – fixed-seed 15% random-token masks (BERT's 80/10/10), the same masks as
  pre-training's own evaluation: masked-token accuracy, loss and perplexity. They
  resemble random-token training, so they favour models trained that way.
* ``whole_word`` – fixed-seed 15% whole-word masks (every sub-token of a chosen word):
  token accuracy and whole-word accuracy (all sub-tokens of a word right). They favour
  whole-word, span and n-gram training.
* ``pll`` – pseudo-log-likelihood (every token masked alone, Salazar et al., ACL 2020):
  no masking pattern, so no arm is favoured by the pattern; one token is masked at a
  time, which resembles low-ratio training more than high-ratio training.
* ``word_class`` – the random-token masks' accuracy split by content versus function
  word and by universal POS tag (with a spaCy pipeline): *what* a strategy taught.

The held-out blocks are built exactly as ``mlmkit pretrain`` builds its evaluation
split (same corpus, block length, held-out share and seed), so for an mlmkit run the
``random`` family reproduces the run's final metrics and never scores training blocks.

Example::

    report = evaluate_model_dir("runs/demo/mlm", metrics=("random", "whole_word", "pll"))
    print(report.metrics["masked_accuracy"])
"""

from __future__ import annotations

import math
import time
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from mlmkit.config.loading import load_config
from mlmkit.config.schema import ModelConfig, PretrainConfig, PretrainDataConfig
from mlmkit.data.sources import load_text_corpus
from mlmkit.errors import UserError
from mlmkit.evaluation.pll import corpus_pseudo_perplexity, pll_of_ids
from mlmkit.evaluation.probe import linear_probe
from mlmkit.masking.collator import MaskingCollator
from mlmkit.masking.content_word import ContentWordMasking
from mlmkit.masking.pos_weighted import UPOS_TAGS, PosWeightedMasking
from mlmkit.masking.random_token import RandomMasking
from mlmkit.masking.units import word_unit_ids
from mlmkit.masking.whole_word import WholeWordMasking
from mlmkit.modeling.loading import load_mlm_model
from mlmkit.modeling.sparse_head import SparseMLM
from mlmkit.training.mlm_eval import EVAL_RATIO, EVAL_SEED
from mlmkit.training.pretrain import build_pretrain_data

#: evaluation families, what each measures, and which training it favours
FAMILIES: dict[str, tuple[str, str]] = {
    "random": ("fixed 15% random-token masks (80/10/10), as in pre-training's evaluation",
               "favours random-token training"),
    "whole_word": ("fixed 15% whole-word masks (80/10/10 per word)",
                   "favours whole-word, span and n-gram training"),
    "pll": ("pseudo-log-likelihood: every token masked alone",
            "no masking pattern; resembles low-ratio training"),
    "word_class": ("the random-token masks, split by content/function word and UPOS tag",
                   "as 'random'; read across classes, not against other families"),
    "probe": ("logistic regression on frozen mean-pooled features (downstream)",
              "independent of the masking pattern"),
}
DEFAULT_METRICS = ("random", "whole_word", "pll", "word_class")
#: seeds of the fixed held-out masks (the random-token one is pre-training's evaluation seed)
WHOLE_WORD_SEED = 20191
#: metrics where lower is better (everything else: higher is better)
LOWER_IS_BETTER = frozenset({"eval_loss", "perplexity", "whole_word_loss", "pseudo_perplexity"})


@dataclass
class HeldOut:
    """Held-out blocks of one corpus for one tokenizer, with the features evaluation needs."""

    blocks: Any
    """A ``datasets.Dataset`` with ``input_ids``, ``word_ids`` and optional ``content_word`` / ``pos_ids``."""
    source: str
    """Where the text came from."""
    pos_tags: tuple[str, ...] = ()
    """UPOS tag names indexed by ``pos_ids`` (empty without a spaCy pipeline)."""


@dataclass
class EvaluationReport:
    """Metrics of one model, each tagged with its evaluation family."""

    model: str
    metrics: dict[str, float] = field(default_factory=dict)
    families: dict[str, str] = field(default_factory=dict)
    """Metric name -> evaluation family (a key of :data:`FAMILIES`)."""
    details: dict[str, Any] = field(default_factory=dict)
    """Per-class tables and sizes (tokens scored, blocks, classes)."""
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def add(self, family: str, values: dict[str, float]) -> None:
        """Record ``values`` under ``family``."""
        for name, value in values.items():
            self.metrics[name] = float(value)
            self.families[name] = family

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, with the family descriptions."""
        return {"model": self.model, "metrics": self.metrics, "families": self.families,
                "family_descriptions": {k: {"masks": v[0], "bias": v[1]} for k, v in FAMILIES.items()},
                "details": self.details, "notes": self.notes, "seconds": round(self.seconds, 2)}


class _FeatureSet:
    """Duck-typed stand-in for a strategy at tokenization: the union of several strategies' features.

    With ``locate`` it also records, for every token, a hash of its document's text and its
    position in that document, so features that are costly to compute (POS tags) can be
    computed afterwards for the held-out documents alone.
    """

    group_features: tuple[str, ...] = ()

    def __init__(self, strategies: Sequence[Any], locate: bool = False) -> None:
        self.strategies = list(strategies)
        self.locate = locate
        self.features = tuple(f for s in self.strategies for f in s.features) + (LOCATORS if locate else ())

    def token_features(self, texts: list[str], encodings: Any) -> dict[str, list[list[int]]]:
        out: dict[str, list[list[int]]] = {}
        for strategy in self.strategies:
            out.update(strategy.token_features(texts, encodings))
        if self.locate:
            lengths = [len(ids) for ids in encodings["input_ids"]]
            out["doc_hash"] = [[document_hash(t)] * n for t, n in zip(texts, lengths, strict=True)]
            out["doc_pos"] = [list(range(n)) for n in lengths]
        return out


#: per-token features that locate a token in its document: (text hash, position)
LOCATORS = ("doc_hash", "doc_pos")


def document_hash(text: str) -> int:
    """A stable 31-bit hash of a document's text (CRC-32): the same in every process."""
    return zlib.crc32(text.encode("utf-8", errors="replace")) & 0x7FFFFFFF


def _tag_held_out(blocks: Any, data: PretrainDataConfig, tokenizer: Any, pos_strategy: Any) -> Any:
    """Add ``pos_ids`` to held-out blocks by tagging only the documents they came from."""
    wanted = {h for row in blocks["doc_hash"] for h in set(row)}
    texts = load_text_corpus(data.source, data.text_column, data.split, data.config_name, data.max_documents)
    chosen = list(dict.fromkeys(t for t in texts["text"] if document_hash(t) in wanted))
    tags: dict[int, list[int]] = {}
    for start in range(0, len(chosen), 256):
        batch = chosen[start:start + 256]
        encodings = tokenizer(batch, add_special_tokens=True, truncation=False, return_offsets_mapping=True,
                              verbose=False)
        for text, pos_ids in zip(batch, pos_strategy.token_features(batch, encodings)["pos_ids"], strict=True):
            tags[document_hash(text)] = pos_ids

    def add_pos(batch: dict[str, list]) -> dict[str, list]:
        return {"pos_ids": [[tags[h][p] if h in tags and p < len(tags[h]) else -1 for h, p in zip(hs, ps, strict=True)]
                            for hs, ps in zip(batch["doc_hash"], batch["doc_pos"], strict=True)]}

    return blocks.map(add_pos, batched=True)


def check_metrics(metrics: Iterable[str]) -> tuple[str, ...]:
    """Validate metric family names (a user error lists the valid ones)."""
    chosen = tuple(dict.fromkeys(m.strip() for m in metrics if m.strip()))
    unknown = [m for m in chosen if m not in FAMILIES]
    if unknown:
        raise UserError(f"unknown metric family {unknown[0]!r}; choose from {', '.join(FAMILIES)}")
    return chosen


def build_held_out(tokenizer: Any, data: PretrainDataConfig, seed: int, *, word_classes: bool = True,
                   pos: bool = True, spacy_model: str | None = None) -> HeldOut:
    """Held-out blocks exactly as pre-training splits them, plus word-class features.

    Args:
        tokenizer: the model's tokenizer.
        data: corpus, block length and held-out share (``data`` of a pre-training config).
        seed: the split seed (a run's ``train.seed``).
        word_classes: compute the content/function label of every token.
        pos: compute UPOS tags with spaCy when a pipeline is installed (held-out documents only).
        spacy_model: the spaCy pipeline; default the POS-weighted strategy's default.
    """
    strategies: list[Any] = [ContentWordMasking()] if word_classes else []
    pos_strategy = _pos_strategy(spacy_model) if pos else None
    for strategy in [*strategies, pos_strategy]:
        if strategy is not None:
            strategy.bind(tokenizer)
    cfg = PretrainConfig(data=replace(data, streaming=False))
    cfg.train.seed = seed
    _, eval_blocks, _ = build_pretrain_data(cfg, tokenizer, _FeatureSet(strategies, locate=pos_strategy is not None))
    tags: tuple[str, ...] = ()
    if pos_strategy is not None:
        eval_blocks = _tag_held_out(eval_blocks, cfg.data, tokenizer, pos_strategy)
        tags = tuple(UPOS_TAGS)
    return HeldOut(blocks=eval_blocks, source=data.source, pos_tags=tags)


def _pos_strategy(spacy_model: str | None) -> Any:
    """A POS-weighted strategy used only for its tagger, or None when no pipeline is installed."""
    try:
        return PosWeightedMasking(spacy_model=spacy_model) if spacy_model else PosWeightedMasking()
    except (UserError, ValueError, ImportError, OSError):
        return None


def _masked_batches(blocks: Any, tokenizer: Any, strategy: Any, seed: int, batch_size: int):
    """Pad and mask the blocks once with ``strategy``; yields ``(model_inputs, padded_with_features)``."""
    collator = MaskingCollator(tokenizer, strategy, seed=seed)
    for index, start in enumerate(range(0, len(blocks), batch_size)):
        rows = blocks.select(range(start, min(start + batch_size, len(blocks))))
        padded = collator.pad([rows[i] for i in range(len(rows))])
        yield collator.mask(padded, step=index), padded


@torch.no_grad()
def _outcomes(wrapped: Any, batches: Iterable, device: torch.device, keep: Sequence[str] = ()) -> dict[str, Any]:
    """Run the model on masked batches; per predicted token: correct, loss, and the requested features."""
    correct, losses, rows = [], [], []
    features: dict[str, list[torch.Tensor]] = {k: [] for k in keep}
    offset = 0
    for inputs, padded in batches:
        out = wrapped(**{k: v.to(device) for k, v in inputs.items()})
        predicted = out["predicted"].cpu()
        correct.append((out["logits"].argmax(dim=-1) == out["targets"]).cpu())
        losses.append(out["token_loss"].double().cpu())
        row_index = torch.arange(predicted.shape[0])[:, None].expand_as(predicted) + offset
        rows.append(row_index[predicted])
        offset += predicted.shape[0]
        for k in keep:
            features[k].append(padded[k][predicted] if k in padded else torch.full((int(predicted.sum()),), -1))
    cat = (lambda parts: torch.cat(parts) if parts else torch.zeros(0))  # noqa: E731
    return {"correct": cat(correct).bool(), "loss": cat(losses), "row": cat(rows).long(),
            **{k: cat(v).long() for k, v in features.items()}}


def _accuracy_loss(correct: torch.Tensor, loss: torch.Tensor) -> tuple[float, float, int]:
    n = int(correct.numel())
    if n == 0:
        return float("nan"), float("nan"), 0
    return float(correct.double().mean()), float(loss.mean()), n


def random_token_metrics(wrapped: Any, held: HeldOut, tokenizer: Any, device: torch.device,
                         batch_size: int = 128, by_class: bool = True) -> tuple[dict[str, float], dict[str, Any]]:
    """Masked accuracy / loss / perplexity on pre-training's fixed random-token masks, and the class split."""
    keep = [k for k in ("content_word", "pos_ids") if by_class and k in held.blocks.column_names]
    # the same columns as pre-training's evaluation, so the masks are drawn identically
    blocks = held.blocks.select_columns(["input_ids", *keep])
    out = _outcomes(wrapped, _masked_batches(blocks, tokenizer, RandomMasking(ratio=EVAL_RATIO), EVAL_SEED,
                                             batch_size), device, keep)
    accuracy, loss, n = _accuracy_loss(out["correct"], out["loss"])
    metrics = {"masked_accuracy": accuracy, "eval_loss": loss, "perplexity": math.exp(min(loss, 700.0)),
               "eval_tokens": n}
    classes: dict[str, Any] = {}
    if "content_word" in out:
        for label, value in (("content", 1), ("function", 0)):
            chosen = out["content_word"] == value
            acc, cls_loss, count = _accuracy_loss(out["correct"][chosen], out["loss"][chosen])
            metrics[f"{label}_word_accuracy"] = acc
            classes[label] = {"accuracy": acc, "loss": cls_loss, "tokens": count}
    if "pos_ids" in out and held.pos_tags:
        table = {}
        for index, tag in enumerate(held.pos_tags):
            chosen = out["pos_ids"] == index
            if int(chosen.sum()):
                acc, cls_loss, count = _accuracy_loss(out["correct"][chosen], out["loss"][chosen])
                table[tag] = {"accuracy": acc, "loss": cls_loss, "tokens": count}
        classes["upos"] = table
    return metrics, classes


def whole_word_metrics(wrapped: Any, held: HeldOut, tokenizer: Any, device: torch.device,
                       batch_size: int = 128) -> dict[str, float]:
    """Token and whole-word accuracy on fixed 15% whole-word masks."""
    blocks = held.blocks.select_columns(["input_ids", "word_ids"])
    batches = []
    for inputs, padded in _masked_batches(blocks, tokenizer, WholeWordMasking(ratio=0.15), WHOLE_WORD_SEED,
                                          batch_size):
        padded = dict(padded)
        padded["unit"] = word_unit_ids(padded)
        batches.append((inputs, padded))
    out = _outcomes(wrapped, batches, device, ["unit"])
    accuracy, loss, n = _accuracy_loss(out["correct"], out["loss"])
    words, whole = word_accuracy(out["row"], out["unit"], out["correct"])
    return {"whole_word_token_accuracy": accuracy, "whole_word_loss": loss, "whole_word_accuracy": whole,
            "whole_word_tokens": n, "whole_words": words}


def word_accuracy(rows: torch.Tensor, units: torch.Tensor, correct: torch.Tensor) -> tuple[int, float]:
    """Number of predicted words and the share whose every predicted token is right.

    A word is identified by ``(row, unit id)``; tokens with unit id -1 (none) are ignored.
    """
    valid = units >= 0
    if not bool(valid.any()):
        return 0, float("nan")
    keys = rows[valid] * (int(units.max()) + 1) + units[valid]
    unique, inverse = torch.unique(keys, return_inverse=True)
    all_right = torch.ones(len(unique), dtype=torch.long).scatter_reduce(
        0, inverse, correct[valid].long(), reduce="amin")
    return len(unique), float(all_right.double().mean())


def pll_metrics(model: Any, held: HeldOut, tokenizer: Any, max_sentences: int, batch_size: int = 64,
                device: torch.device | None = None) -> dict[str, float]:
    """Pseudo-log-likelihood per token and pseudo-perplexity on the first held-out blocks."""
    count = min(max_sentences, len(held.blocks))
    sequences = held.blocks.select(range(count))["input_ids"]
    special = set(tokenizer.all_special_ids)
    scored = [[t not in special for t in ids] for ids in sequences]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    results = pll_of_ids(model, sequences, tokenizer.mask_token_id, scored, pad_token_id=pad,
                         batch_size=batch_size, device=device)
    tokens = sum(r.num_tokens for r in results)
    return {"pll_per_token": sum(r.pll for r in results) / max(tokens, 1),
            "pseudo_perplexity": corpus_pseudo_perplexity(results), "pll_sequences": count, "pll_tokens": tokens}


def evaluate_model(model: Any, tokenizer: Any, held: HeldOut, metrics: Sequence[str] = DEFAULT_METRICS, *,
                   max_sentences: int = 64, batch_size: int = 128, probe: str | None = None,
                   name: str = "model") -> EvaluationReport:
    """Every requested metric family for a loaded model on prepared held-out blocks."""
    start = time.perf_counter()
    metrics = check_metrics(metrics)
    report = EvaluationReport(model=name)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    wrapped = SparseMLM(model, sparse=True, last_layer=False)
    report.details["held_out_blocks"] = len(held.blocks)
    if "random" in metrics or "word_class" in metrics:
        values, classes = random_token_metrics(wrapped, held, tokenizer, device, batch_size,
                                               by_class="word_class" in metrics)
        class_values = {k: values.pop(k) for k in list(values) if k.endswith("_word_accuracy")}
        if "random" in metrics:
            report.add("random", values)
        if "word_class" in metrics:
            report.add("word_class", class_values)
            report.details["word_classes"] = classes
            if not held.pos_tags:
                report.notes.append("no spaCy pipeline with a POS tagger is installed: accuracy by UPOS tag skipped")
    if "whole_word" in metrics:
        report.add("whole_word", whole_word_metrics(wrapped, held, tokenizer, device, batch_size))
    if "pll" in metrics:
        report.add("pll", pll_metrics(model, held, tokenizer, max_sentences, device=device))
    if "probe" in metrics or probe:
        result = linear_probe(model, tokenizer, probe or "embedded")
        report.add("probe", {"probe_accuracy": result["accuracy"], "probe_macro_f1": result["macro_f1"]})
        report.details["probe"] = result
    if was_training:
        model.train()
    report.seconds = time.perf_counter() - start
    return report


def run_data_config(model_dir: str) -> tuple[PretrainDataConfig, int] | None:
    """The data section and seed of an mlmkit run directory (from its ``config.yaml``), if it is one."""
    path = Path(model_dir).expanduser() / "config.yaml"
    if not path.is_file():
        return None
    try:
        cfg = load_config(PretrainConfig, str(path))
    except UserError:
        return None  # a fine-tuning run or a hand-written file: evaluate with defaults
    return cfg.data, cfg.train.seed


def load_masked_lm(name: str) -> tuple[Any, Any, list[str]]:
    """Load ``(model, tokenizer, newly_initialised_weight_names)`` from a directory, 'embedded' or a Hub name."""
    return load_mlm_model(ModelConfig(name_or_path=name))


def evaluate_model_dir(
    name: str,
    corpus: str | None = None,
    metrics: Sequence[str] = DEFAULT_METRICS,
    *,
    max_sentences: int = 64,
    max_seq_length: int | None = None,
    max_blocks: int | None = None,
    seed: int | None = None,
    probe: str | None = None,
    spacy_model: str | None = None,
    batch_size: int = 128,
) -> EvaluationReport:
    """Load a masked LM and evaluate it (the function behind ``mlmkit evaluate``).

    For an mlmkit run directory the corpus, block length, held-out share and seed default
    to the run's own, so the held-out blocks are the ones the run never trained on.
    """
    metrics = check_metrics(metrics)
    model, tokenizer, fresh = load_masked_lm(name)
    found = run_data_config(name)
    data, run_seed = found if found is not None else (PretrainDataConfig(), 42)
    if corpus is not None:
        data = replace(data, source=corpus, max_documents=None)
    if max_seq_length is not None:
        data = replace(data, max_seq_length=max_seq_length)
    if max_blocks is not None:
        data = replace(data, eval_max_blocks=max_blocks)
    limit = getattr(model.config, "max_position_embeddings", None)
    if limit and data.max_seq_length > limit:
        raise UserError(f"max_seq_length {data.max_seq_length} exceeds the model's {limit} positions")
    needs_words = "word_class" in metrics
    held = build_held_out(tokenizer, data, run_seed if seed is None else seed, word_classes=needs_words,
                          pos=needs_words, spacy_model=spacy_model)
    report = evaluate_model(model, tokenizer, held, metrics, max_sentences=max_sentences, batch_size=batch_size,
                            probe=probe, name=name)
    report.details["corpus"] = data.source
    report.details["max_seq_length"] = data.max_seq_length
    report.details["split_seed"] = run_seed if seed is None else seed
    if fresh:
        report.notes.insert(0, f"{len(fresh)} weight tensor(s) were not in the checkpoint and start random "
                               f"(e.g. {fresh[0]}): masked-LM metrics of this model mean little")
    return report
