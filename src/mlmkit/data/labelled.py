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

import numpy as np

from mlmkit.config.schema import EMBEDDED, FinetuneDataConfig
from mlmkit.data.sources import load_any, looks_like_path, require_column
from mlmkit.errors import UserError


@dataclass(frozen=True)
class DatasetDefaults:
    """Column and split names of a well-known labelled dataset."""

    text_column: str
    label_column: str
    eval_split: str | None


#: Hub datasets whose columns and evaluation split need no options (keyed by the name after the last '/')
KNOWN_DATASETS = {
    "sst2": DatasetDefaults("sentence", "label", "validation"),
    "imdb": DatasetDefaults("text", "label", "test"),
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
                  label_names: Sequence[str] | None = None, known_names: Sequence[str] | None = None):
    """Build a ``text`` + ``label`` (ClassLabel) dataset; rows with empty text or no label are dropped.

    Args:
        dataset: A ``datasets.Dataset`` holding both columns.
        text_column: Column with the texts.
        label_column: Column with the labels: strings, integers, or a ``ClassLabel``.
        source: Name of the data, for error messages.
        label_names: Names of integer labels 0..k-1 (``data.label_names``).
        known_names: Class names fixed by the training split; an evaluation split must use only these.

    Returns:
        ``(dataset, names)``. Names come from ``label_names``, else a ``ClassLabel``'s names, else the
        sorted label values (numerically for integers).
    """
    import datasets

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
    texts = column_values(dataset, text_column)
    keep = [i for i, (t, s) in enumerate(zip(texts, strings, strict=True))
            if s is not None and isinstance(t, str) and t.strip()]
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
    features = datasets.Features({"text": datasets.Value("string"), "label": datasets.ClassLabel(names=names)})
    encoded = datasets.Dataset.from_dict(
        {"text": [texts[i] for i in keep], "label": [index[strings[i]] for i in keep]}, features=features)
    return encoded, names


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
        import datasets

        from mlmkit.data.embedded import read_embedded_tweets

        return datasets.Dataset.from_dict(read_embedded_tweets())
    return load_any(cfg.dataset, split=split, config_name=cfg.config_name)


def load_labelled_splits(cfg: FinetuneDataConfig, seed: int) -> LabelledSplits:
    """Load, label-encode, split and subsample the data described by ``cfg``.

    The evaluation set is ``cfg.eval_split`` (or the dataset's standard one, see
    :data:`KNOWN_DATASETS`); without one, a stratified ``cfg.eval_fraction`` of the training
    split is held out. ``max_train_samples`` / ``max_eval_samples`` then take stratified subsets.
    """
    defaults = dataset_defaults(cfg.dataset, cfg.config_name)
    text_column = cfg.text_column or defaults.text_column
    label_column = cfg.label_column or defaults.label_column
    eval_split = cfg.eval_split or defaults.eval_split
    if eval_split and (cfg.dataset == EMBEDDED or looks_like_path(cfg.dataset)):
        raise UserError(f"data.eval_split={eval_split!r} needs a Hub dataset; {cfg.dataset!r} is one file set, so "
                        "leave eval_split unset and a stratified data.eval_fraction is held out")
    label_names = list(cfg.label_names) if cfg.label_names is not None else None

    raw_train = _read_split(cfg, cfg.train_split)
    train, names = encode_labels(raw_train, text_column, label_column, cfg.dataset, label_names)
    if len(names) < 2:
        raise UserError(f"{cfg.dataset} has only one class ({names[0]!r}); classification needs at least 2")
    if eval_split:
        raw_eval = _read_split(cfg, eval_split)
        eval_set, _ = encode_labels(raw_eval, text_column, label_column, f"{cfg.dataset} [{eval_split}]",
                                    label_names, known_names=names)
        eval_source = eval_split
    else:
        train, eval_set = stratified_split(train, cfg.eval_fraction, seed)
        eval_source = f"held-out {cfg.eval_fraction:g} of {cfg.train_split}"
    total_train = len(train)
    train = stratified_subset(train, cfg.max_train_samples, seed)
    eval_set = stratified_subset(eval_set, cfg.max_eval_samples, seed)
    stats = {"train_examples": len(train), "eval_examples": len(eval_set), "train_available": total_train,
             "train_per_class": class_counts(train), "eval_per_class": class_counts(eval_set)}
    return LabelledSplits(train=train, eval=eval_set, label_names=names, eval_source=eval_source, stats=stats)


def tokenize_labelled(dataset: Any, tokenizer: Any, max_length: int) -> Any:
    """Tokenize ``text`` (truncated, unpadded); keeps ``label`` and adds ``length`` (tokens per example)."""

    def encode(batch: dict[str, list]) -> dict[str, list]:
        out = tokenizer(batch["text"], truncation=True, max_length=max_length)
        out["length"] = [len(ids) for ids in out["input_ids"]]
        return out

    return dataset.map(encode, batched=True, remove_columns=["text"], desc="tokenizing")


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
