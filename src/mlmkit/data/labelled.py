"""Labelled text for classification fine-tuning: load, encode labels, split, tokenize, batch by length.

Whatever the source (the embedded tweets, a Hub dataset, a local file), the result is
a ``datasets.Dataset`` with a ``text`` column and a ``label`` column of type
``ClassLabel``, whose names become the fine-tuned model's ``id2label``.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import datasets
import numpy as np

from mlmkit.config.schema import EMBEDDED, FinetuneDataConfig
from mlmkit.data.embedded import read_embedded_tweets
from mlmkit.data.sources import load_any, looks_like_path, require_column
from mlmkit.errors import UserError


@dataclass(frozen=True)
class DatasetDefaults:
    """Column and split names of a well-known labelled dataset."""

    text_column: str
    label_column: str
    eval_split: str | None
    text_pair_column: str | None = None


#: Hub datasets whose columns and evaluation split need no options (keyed by the name after the last '/')
KNOWN_DATASETS = {
    "sst2": DatasetDefaults("sentence", "label", "validation"),
    "imdb": DatasetDefaults("text", "label", "test"),
    # GLUE configurations (dataset 'glue' or 'nyu-mll/glue' with config_name) and their validation splits
    "cola": DatasetDefaults("sentence", "label", "validation"),
    "mrpc": DatasetDefaults("sentence1", "label", "validation", "sentence2"),
    "rte": DatasetDefaults("sentence1", "label", "validation", "sentence2"),
    "wnli": DatasetDefaults("sentence1", "label", "validation", "sentence2"),
    "stsb": DatasetDefaults("sentence1", "label", "validation", "sentence2"),
    "qnli": DatasetDefaults("question", "label", "validation", "sentence"),
    "qqp": DatasetDefaults("question1", "label", "validation", "question2"),
    "mnli": DatasetDefaults("premise", "label", "validation_matched", "hypothesis"),
}
EMBEDDED_DEFAULTS = DatasetDefaults("text", "sentiment", None)
GENERIC_DEFAULTS = DatasetDefaults("text", "label", None)


def dataset_defaults(dataset: str, config_name: str | None = None) -> DatasetDefaults:
    """Default text/label columns and evaluation split for ``dataset`` (``glue`` + ``sst2`` counts as sst2)."""
    if dataset == EMBEDDED:
        return EMBEDDED_DEFAULTS
    if looks_like_path(dataset):
        return GENERIC_DEFAULTS
    key = dataset.rstrip("/").rsplit("/", 1)[-1].lower()
    if key == "glue" and config_name:
        key = config_name.lower()
    return KNOWN_DATASETS.get(key, GENERIC_DEFAULTS)


@dataclass
class LabelledSplits:
    """Train and evaluation sets with columns ``text`` and ``label`` (a ``ClassLabel``)."""

    train: Any
    eval: Any
    label_names: list[str]
    eval_source: str
    """Where the evaluation set came from: a split name or 'held-out <fraction>'."""
    stats: dict[str, Any] = field(default_factory=dict)
    extra_evals: dict[str, Any] = field(default_factory=dict)
    """More evaluation sets by split name (data.extra_eval_splits), encoded like ``eval``."""


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or (
        isinstance(value, str) and not value.strip())


def _integral(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, np.integer)):
        return True
    return isinstance(value, (float, np.floating)) and float(value).is_integer()


def _label_strings(values: Sequence[Any], label_names: Sequence[str] | None, source: str) -> tuple[list, bool]:
    """Turn raw label values into names (None where missing); also says whether all values were integers."""
    present = [v for v in values if not _is_missing(v)]
    all_int = bool(present) and all(_integral(v) for v in present)
    if label_names is not None:
        if not all_int:
            raise UserError(f"data.label_names names integer labels 0..{len(label_names) - 1}, but the labels of "
                            f"{source} are not all integers (e.g. {present[0]!r})")
        bad = sorted({int(v) for v in present if not 0 <= int(v) < len(label_names)})
        if bad:
            raise UserError(f"labels {bad[:5]} of {source} are outside 0..{len(label_names) - 1} "
                            f"(data.label_names has {len(label_names)} names)")
        return [None if _is_missing(v) else label_names[int(v)] for v in values], True
    if all_int:
        return [None if _is_missing(v) else str(int(v)) for v in values], True
    return [None if _is_missing(v) else str(v).strip() for v in values], False


def encode_labels(dataset: Any, text_column: str, label_column: str, source: str,
                  label_names: Sequence[str] | None = None, known_names: Sequence[str] | None = None,
                  text_pair_column: str | None = None):
    """Build a ``text`` (+ ``text_pair``) + ``label`` (ClassLabel) dataset; rows without text or label are dropped.

    Args:
        dataset: A ``datasets.Dataset`` holding both columns.
        text_column: Column with the texts.
        label_column: Column with the labels: strings, integers, or a ``ClassLabel``.
        source: Name of the data, for error messages.
        label_names: Names of integer labels 0..k-1 (``data.label_names``).
        known_names: Class names fixed by the training split; an evaluation split must use only these.
        text_pair_column: Column with the second text of a pair, if any (kept as ``text_pair``).

    Returns:
        ``(dataset, names)``. Names come from ``label_names``, else a ``ClassLabel``'s names, else the
        sorted label values (numerically for integers).
    """
    require_column(dataset, text_column, source, "text")
    require_column(dataset, label_column, source, "label")
    feature = dataset.features[label_column]
    raw_labels = column_values(dataset, label_column)
    if isinstance(feature, datasets.ClassLabel):
        names = list(label_names) if label_names is not None else list(feature.names)
        if len(names) != feature.num_classes:
            raise UserError(f"data.label_names has {len(names)} names but the label column of {source} has "
                            f"{feature.num_classes} classes: {', '.join(feature.names)}")
        # ids outside the class range (GLUE test splits use -1) mean "no label"
        strings = [names[v] if v is not None and 0 <= v < len(names) else None for v in raw_labels]
        numeric = False
    else:
        strings, numeric = _label_strings(raw_labels, label_names, source)
        names = list(label_names) if label_names is not None else None
    texts, pairs = _texts(dataset, text_column, text_pair_column, source)
    keep = [i for i in _usable_rows(texts, pairs) if strings[i] is not None]
    if not keep:
        raise UserError(f"{source} has no rows with both a non-empty text and a label")
    if known_names is not None:
        unseen = sorted({strings[i] for i in keep} - set(known_names))
        if unseen:
            raise UserError(f"the evaluation data of {source} has labels the training split lacks: "
                            f"{', '.join(unseen[:5])} (training labels: {', '.join(known_names)})")
        names = list(known_names)
    elif names is None:
        observed = {strings[i] for i in keep}
        if len(keep) >= 20 and len(observed) > len(keep) // 2:
            raise UserError(f"the label column {label_column!r} of {source} has {len(observed):,} distinct values "
                            f"in {len(keep):,} rows, which does not look like class labels; choose another column "
                            "with --label-column")
        names = sorted(observed, key=int) if numeric else sorted(observed)
    index = {name: i for i, name in enumerate(names)}
    encoded = _text_dataset(texts, pairs, keep, [index[strings[i]] for i in keep], datasets.ClassLabel(names=names))
    return encoded, names


def _texts(dataset: Any, text_column: str, text_pair_column: str | None, source: str) -> tuple[list, list | None]:
    """The text column and, for pairs, the second text column."""
    require_column(dataset, text_column, source, "text")
    if text_pair_column is None:
        return column_values(dataset, text_column), None
    require_column(dataset, text_pair_column, source, "text pair")
    return column_values(dataset, text_column), column_values(dataset, text_pair_column)


def _usable_rows(texts: list, pairs: list | None) -> list[int]:
    """Rows whose text (and second text, for pairs) is a non-empty string."""
    def usable(value: Any) -> bool:
        return isinstance(value, str) and bool(value.strip())

    return [i for i, t in enumerate(texts) if usable(t) and (pairs is None or usable(pairs[i]))]


def _text_dataset(texts: list, pairs: list | None, keep: list[int], labels: list, label_feature: Any):
    """A ``text`` (+ ``text_pair``) + ``label`` dataset of rows ``keep``."""
    columns = {"text": [texts[i] for i in keep]}
    features = {"text": datasets.Value("string")}
    if pairs is not None:
        columns["text_pair"] = [pairs[i] for i in keep]
        features["text_pair"] = datasets.Value("string")
    columns["label"] = labels
    features["label"] = label_feature
    return datasets.Dataset.from_dict(columns, features=datasets.Features(features))


def _label_lists(values: list, separator: str | None, source: str) -> list[list[str] | None]:
    """Multi-label values (lists, or strings cut at ``separator``) as lists of names; None where missing."""
    lists: list[list[str] | None] = []
    for value in values:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            lists.append(None)
        elif isinstance(value, (list, tuple, np.ndarray)):
            lists.append([str(int(v)) if _integral(v) else str(v).strip() for v in value])
        elif isinstance(value, str) and separator is not None:
            lists.append([part.strip() for part in value.split(separator) if part.strip()])
        else:
            raise UserError(f"multi-label data needs a list column or data.label_separator (--label-separator); "
                            f"{source} has the single value {value!r}")
    return lists


def encode_multi_labels(dataset: Any, text_column: str, label_column: str, source: str,
                        separator: str | None = None, known_names: Sequence[str] | None = None,
                        text_pair_column: str | None = None):
    """Build a ``text`` + multi-hot ``label`` (floats, one per label name) dataset for multi-label training.

    A row with an empty label list is kept (it has none of the labels); a row with no label value is dropped.

    Returns:
        ``(dataset, names)``; names are ``known_names`` (fixed by the training split) or the sorted label values.
    """
    require_column(dataset, label_column, source, "label")
    feature = dataset.features[label_column]
    raw = column_values(dataset, label_column)
    inner = getattr(feature, "feature", None)
    if isinstance(inner, datasets.ClassLabel):  # a Sequence(ClassLabel) column: ids -> names
        raw = [None if row is None else [inner.names[v] for v in row] for row in raw]
    lists = _label_lists(raw, separator, source)
    texts, pairs = _texts(dataset, text_column, text_pair_column, source)
    keep = [i for i in _usable_rows(texts, pairs) if lists[i] is not None]
    if not keep:
        raise UserError(f"{source} has no rows with both a non-empty text and a label")
    observed = sorted({name for i in keep for name in lists[i]})
    if known_names is not None:
        unseen = sorted(set(observed) - set(known_names))
        if unseen:
            raise UserError(f"the evaluation data of {source} has labels the training split lacks: "
                            f"{', '.join(unseen[:5])} (training labels: {', '.join(known_names)})")
        names = list(known_names)
    else:
        names = observed
    index = {name: i for i, name in enumerate(names)}
    hot = []
    for i in keep:
        row = [0.0] * len(names)
        for name in lists[i]:
            row[index[name]] = 1.0
        hot.append(row)
    label_feature = datasets.Sequence(datasets.Value("float32"), length=len(names))
    return _text_dataset(texts, pairs, keep, hot, label_feature), names


def encode_scores(dataset: Any, text_column: str, label_column: str, source: str,
                  text_pair_column: str | None = None):
    """Build a ``text`` + float ``label`` dataset for regression; rows without a numeric label are dropped."""
    require_column(dataset, label_column, source, "label")
    raw = column_values(dataset, label_column)
    texts, pairs = _texts(dataset, text_column, text_pair_column, source)
    scores: list[float | None] = []
    for value in raw:
        try:
            score = None if _is_missing(value) or isinstance(value, bool) else float(value)
        except (TypeError, ValueError):
            raise UserError(f"regression needs numeric labels; {source} has {value!r} in column "
                            f"{label_column!r}") from None
        scores.append(None if score is None or math.isnan(score) else score)
    keep = [i for i in _usable_rows(texts, pairs) if scores[i] is not None]
    if not keep:
        raise UserError(f"{source} has no rows with both a non-empty text and a numeric label")
    return _text_dataset(texts, pairs, keep, [scores[i] for i in keep], datasets.Value("float32")), [label_column]


def column_values(dataset: Any, column: str) -> list:
    """One column as a Python list, read in one go (iterating a ``Column`` fetches row by row)."""
    return dataset.select_columns([column])[:][column]


def class_counts(dataset: Any) -> dict[str, int]:
    """Examples per class name of a ``text`` + ``label`` dataset."""
    names = dataset.features["label"].names
    counts = Counter(column_values(dataset, "label"))
    return {name: counts.get(i, 0) for i, name in enumerate(names)}


def _allocate(counts: np.ndarray, total: int, low: np.ndarray, high: np.ndarray, rng: np.random.Generator):
    """Split ``total`` over classes in proportion to ``counts`` (largest remainder), clipped to ``[low, high]``."""
    exact = total * counts / counts.sum()
    share = np.floor(exact).astype(np.int64)
    remainder = exact - share
    # random tie-breaking among equal remainders keeps the choice seed-dependent, not class-order dependent
    order = np.lexsort((rng.random(len(counts)), -remainder))
    share[order[: total - int(share.sum())]] += 1
    return np.clip(share, low, high)


def _stratified_indices(dataset: Any, size: int, seed: int, what: str, both_sides: bool) -> np.ndarray:
    """Sorted indices of a stratified sample of ``size`` rows.

    With ``both_sides`` (a held-out split) every class keeps at least one row on each side;
    otherwise every class gets at least one row in the sample.
    """
    labels = np.asarray(column_values(dataset, "label"), dtype=np.int64)
    present = np.unique(labels)
    counts = np.array([(labels == c).sum() for c in present])
    if (both_sides and counts.min() < 2) or (not both_sides and size < len(present)):
        detail = ", ".join(f"{dataset.features['label'].names[c]} {n}" for c, n in zip(present, counts, strict=True))
        need = "every class needs at least 2 examples" if both_sides else f"it must hold all {len(present)} classes"
        raise UserError(f"cannot take a stratified {what}: {need} (class counts: {detail})")
    rng = np.random.default_rng(seed)
    high = counts - 1 if both_sides else counts
    share = _allocate(counts, size, np.ones_like(counts), high, rng)
    chosen = [rng.permutation(np.flatnonzero(labels == c))[:k] for c, k in zip(present, share, strict=True)]
    return np.sort(np.concatenate(chosen))


def stratified_split(dataset: Any, eval_fraction: float, seed: int) -> tuple[Any, Any]:
    """Hold out ``eval_fraction`` of ``dataset`` with class proportions preserved; returns ``(train, eval)``.

    Every class keeps at least one example on each side. (This is ``datasets``'
    ``train_test_split(stratify_by_column=...)`` done in numpy: the ``datasets`` version
    converts the label column row by row, seconds for a few ten thousand rows.)
    """
    if not 0.0 < eval_fraction < 1.0:
        raise UserError(f"data.eval_fraction must lie strictly between 0 and 1, got {eval_fraction}")
    held_out = _stratified_indices(dataset, math.ceil(eval_fraction * len(dataset)), seed,
                                   f"held-out split of {eval_fraction:g}", both_sides=True)
    keep = np.ones(len(dataset), dtype=bool)
    keep[held_out] = False
    return dataset.select(np.flatnonzero(keep)), dataset.select(held_out)


def stratified_subset(dataset: Any, size: int | None, seed: int) -> Any:
    """At most ``size`` examples with class proportions preserved (all of them when ``size`` is None or larger)."""
    if size is None or size >= len(dataset):
        return dataset
    if size <= 0:
        raise UserError(f"sample sizes must be positive, got {size}")
    return dataset.select(_stratified_indices(dataset, size, seed, f"sample of {size}", both_sides=False))


def _read_split(cfg: FinetuneDataConfig, split: str):
    if cfg.dataset == EMBEDDED:
        return datasets.Dataset.from_dict(read_embedded_tweets())
    return load_any(cfg.dataset, split=split, config_name=cfg.config_name, revision=cfg.revision)


def random_split(dataset: Any, eval_fraction: float, seed: int) -> tuple[Any, Any]:
    """Hold out a seeded random ``eval_fraction`` of ``dataset`` (for labels with no classes to stratify by)."""
    if not 0.0 < eval_fraction < 1.0:
        raise UserError(f"data.eval_fraction must lie strictly between 0 and 1, got {eval_fraction}")
    n_eval = math.ceil(eval_fraction * len(dataset))
    if len(dataset) < 2 or n_eval >= len(dataset):
        raise UserError(f"cannot hold out {eval_fraction:g} of {len(dataset)} examples and keep some to train on")
    order = np.random.default_rng(seed).permutation(len(dataset))
    return dataset.select(np.sort(order[n_eval:])), dataset.select(np.sort(order[:n_eval]))


def random_subset(dataset: Any, size: int | None, seed: int) -> Any:
    """At most ``size`` examples drawn at random with ``seed`` (all of them when ``size`` is None or larger)."""
    if size is None or size >= len(dataset):
        return dataset
    if size <= 0:
        raise UserError(f"sample sizes must be positive, got {size}")
    return dataset.select(np.sort(np.random.default_rng(seed).permutation(len(dataset))[:size]))


def label_stats(dataset: Any, task: str, names: Sequence[str]) -> dict[str, Any]:
    """Examples per class (single-label), per label (multi-label) or the score range (regression)."""
    if task == "single_label":
        return class_counts(dataset)
    values = np.asarray(column_values(dataset, "label"), dtype=np.float64)
    if task == "multi_label":
        sums = values.sum(axis=0) if values.size else np.zeros(len(names))
        return {name: int(n) for name, n in zip(names, sums, strict=True)}
    return {"min": float(values.min()), "mean": round(float(values.mean()), 4), "max": float(values.max())}


def _encode(cfg: FinetuneDataConfig, raw: Any, columns: tuple[str, str | None, str], source: str,
            label_names: list[str] | None, known_names: list[str] | None):
    """Encode one split's labels the way ``cfg.task`` needs; ``columns`` is (text, text pair, label)."""
    text_column, pair, label_column = columns
    if cfg.task == "multi_label":
        return encode_multi_labels(raw, text_column, label_column, source, cfg.label_separator,
                                   known_names if known_names is not None else label_names, pair)
    if cfg.task == "regression":
        return encode_scores(raw, text_column, label_column, source, pair)
    return encode_labels(raw, text_column, label_column, source, label_names, known_names, pair)


def load_labelled_splits(cfg: FinetuneDataConfig, seed: int) -> LabelledSplits:
    """Load, label-encode, split and subsample the data described by ``cfg``.

    The evaluation set is ``cfg.eval_split`` (or the dataset's standard one, see
    :data:`KNOWN_DATASETS`); without one, a ``cfg.eval_fraction`` of the training split is
    held out (stratified for single-label data). ``max_train_samples`` / ``max_eval_samples``
    then take subsets (stratified for single-label data). ``cfg.extra_eval_splits`` are
    encoded the same way and returned in ``extra_evals``.
    """
    defaults = dataset_defaults(cfg.dataset, cfg.config_name)
    text_column = cfg.text_column or defaults.text_column
    label_column = cfg.label_column or defaults.label_column
    eval_split = cfg.eval_split or defaults.eval_split
    pair_column = cfg.text_pair_column
    if pair_column is None and not cfg.text_column:
        pair_column = defaults.text_pair_column
    columns = (text_column, pair_column, label_column)
    local = cfg.dataset == EMBEDDED or looks_like_path(cfg.dataset)
    for split in ([eval_split] if eval_split else []) + list(cfg.extra_eval_splits):
        if local:
            raise UserError(f"data.eval_split / extra_eval_splits ({split!r}) need a Hub dataset; {cfg.dataset!r} is "
                            "one file set, so leave them unset and data.eval_fraction is held out")
    label_names = list(cfg.label_names) if cfg.label_names is not None else None

    train, names = _encode(cfg, _read_split(cfg, cfg.train_split), columns, cfg.dataset, label_names, None)
    if cfg.task == "single_label" and len(names) < 2:
        raise UserError(f"{cfg.dataset} has only one class ({names[0]!r}); classification needs at least 2")
    stratified = cfg.task == "single_label"

    def encoded_split(split: str) -> Any:
        return _encode(cfg, _read_split(cfg, split), columns, f"{cfg.dataset} [{split}]", label_names, names)[0]

    if eval_split:
        eval_set = encoded_split(eval_split)
        eval_source = eval_split
    else:
        train, eval_set = (stratified_split if stratified else random_split)(train, cfg.eval_fraction, seed)
        eval_source = f"held-out {cfg.eval_fraction:g} of {cfg.train_split}"
    subset = stratified_subset if stratified else random_subset
    total_train = len(train)
    train = subset(train, cfg.max_train_samples, seed)
    eval_set = subset(eval_set, cfg.max_eval_samples, seed)
    extra = {split: subset(encoded_split(split), cfg.max_eval_samples, seed) for split in cfg.extra_eval_splits}
    stats = {"train_examples": len(train), "eval_examples": len(eval_set), "train_available": total_train,
             "train_per_class": label_stats(train, cfg.task, names),
             "eval_per_class": label_stats(eval_set, cfg.task, names)}
    return LabelledSplits(train=train, eval=eval_set, label_names=names, eval_source=eval_source, stats=stats,
                          extra_evals=extra)


def tokenize_labelled(dataset: Any, tokenizer: Any, max_length: int) -> Any:
    """Tokenize ``text`` (truncated, unpadded); keeps ``label`` and adds ``length`` (tokens per example)."""
    pairs = "text_pair" in dataset.column_names

    def encode(batch: dict[str, list]) -> dict[str, list]:
        # pairs: cut the longer text first, so a short hypothesis survives a long premise
        out = tokenizer(batch["text"], batch["text_pair"] if pairs else None, max_length=max_length,
                        truncation="longest_first" if pairs else True)
        out["length"] = [len(ids) for ids in out["input_ids"]]
        return out

    return dataset.map(encode, batched=True, remove_columns=["text", "text_pair"] if pairs else ["text"],
                       desc="tokenizing")


class LengthGroupedBatchSampler:
    """Shuffled batches of indices whose examples have similar lengths (little padding).

    Each epoch: shuffle all indices; cut them into mega-batches of ``mega_batch_size``
    batches; sort each mega-batch by length (longest first); cut it into batches; then
    shuffle the order of all batches. Every index appears exactly once per epoch. The
    order depends only on ``seed`` and the epoch, which :meth:`set_epoch` sets (Accelerate
    calls it) and which advances by one after every full pass.
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, seed: int = 0, mega_batch_size: int = 50,
                 group_by_length: bool = True) -> None:
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.lengths = np.asarray(lengths, dtype=np.int64)
        self.batch_size = batch_size
        self.drop_last = False
        self.seed = seed
        self.mega_batch_size = max(1, mega_batch_size)
        self.group_by_length = group_by_length
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose order the next iteration yields."""
        self.epoch = epoch

    def __len__(self) -> int:
        return math.ceil(len(self.lengths) / self.batch_size)

    def batches(self, epoch: int) -> list[list[int]]:
        """The batches of ``epoch`` (the same list for the same seed and epoch)."""
        rng = np.random.default_rng([self.seed, epoch])
        order = rng.permutation(len(self.lengths))
        if not self.group_by_length:
            return [order[i:i + self.batch_size].tolist() for i in range(0, len(order), self.batch_size)]
        span = self.batch_size * self.mega_batch_size
        batches: list[list[int]] = []
        for start in range(0, len(order), span):
            mega = order[start:start + span]
            # stable sort keeps the random order among equal lengths
            mega = mega[np.argsort(-self.lengths[mega], kind="stable")]
            batches.extend(mega[i:i + self.batch_size].tolist() for i in range(0, len(mega), self.batch_size))
        return [batches[i] for i in rng.permutation(len(batches))]

    def __iter__(self) -> Iterator[list[int]]:
        epoch = self.epoch
        self.epoch += 1
        yield from self.batches(epoch)
