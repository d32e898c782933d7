"""Labelled data: label encoding, stratified splits and subsets, errors, the length-grouped sampler."""

from collections import Counter

import datasets
import numpy as np
import pytest

from mlmkit.config.schema import FinetuneDataConfig
from mlmkit.data.labelled import (
    LengthGroupedBatchSampler,
    class_counts,
    dataset_defaults,
    encode_labels,
    load_labelled_splits,
    stratified_split,
    stratified_subset,
    tokenize_labelled,
)
from mlmkit.errors import UserError


def write_csv(path, rows, header="text,label"):
    path.write_text(header + "\n" + "\n".join(f'"{t}",{label}' for t, label in rows) + "\n", encoding="utf-8")
    return path


def imbalanced_rows(n_per_class):
    """Rows whose label proportions are given by ``n_per_class`` (label -> count)."""
    return [(f"text number {label} {i}", label) for label, n in n_per_class.items() for i in range(n)]


def test_string_labels_become_sorted_class_names(tmp_path):
    csv = write_csv(tmp_path / "d.csv", imbalanced_rows({"pos": 30, "neg": 60, "neutral": 10}))
    splits = load_labelled_splits(FinetuneDataConfig(dataset=str(csv), eval_fraction=0.2), seed=0)
    assert splits.label_names == ["neg", "neutral", "pos"]
    assert isinstance(splits.train.features["label"], datasets.ClassLabel)
    assert splits.train.features["label"].names == ["neg", "neutral", "pos"]
    # every row kept, split 80/20 with proportions intact
    assert len(splits.train) + len(splits.eval) == 100
    assert class_counts(splits.eval) == {"neg": 12, "neutral": 2, "pos": 6}
    assert splits.eval_source.startswith("held-out 0.2")


def test_integer_labels_sort_numerically_and_can_be_named(tmp_path):
    csv = write_csv(tmp_path / "d.csv", imbalanced_rows({2: 10, 10: 10, 1: 10}))
    splits = load_labelled_splits(FinetuneDataConfig(dataset=str(csv)), seed=0)
    assert splits.label_names == ["1", "2", "10"]  # numeric order, not "1", "10", "2"
    texts = splits.train["text"]
    labels = splits.train["label"]
    assert all(t.split()[2] == splits.label_names[y] for t, y in zip(texts, labels, strict=True))

    csv01 = write_csv(tmp_path / "e.csv", imbalanced_rows({0: 10, 1: 10}))
    named = load_labelled_splits(FinetuneDataConfig(dataset=str(csv01), label_names=["bad", "good"]), seed=0)
    assert named.label_names == ["bad", "good"]
    assert all(t.split()[2] == str(y) for t, y in zip(named.train["text"], named.train["label"], strict=True))


def test_class_label_names_are_kept_and_unlabelled_rows_dropped():
    features = datasets.Features({"sentence": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["negative", "positive"])})
    raw = datasets.Dataset.from_dict({"sentence": ["bad", "good", "unknown", "", "fine"],
                                      "label": [0, 1, -1, 1, 1]}, features=features)
    encoded, names = encode_labels(raw, "sentence", "label", "toy")
    assert names == ["negative", "positive"]
    # -1 (no label) and the empty text are dropped
    assert encoded["text"] == ["bad", "good", "fine"] and encoded["label"] == [0, 1, 1]


def test_missing_values_are_dropped(tmp_path):
    csv = tmp_path / "d.csv"
    csv.write_text('text,label\n"a",x\n"",x\n"b",\n"c",y\n', encoding="utf-8")
    encoded, names = encode_labels(datasets.load_dataset("csv", data_files=str(csv), split="train"),
                                   "text", "label", "d.csv")
    assert names == ["x", "y"] and encoded["text"] == ["a", "c"]


def test_stratified_split_keeps_class_proportions():
    labels = [0] * 600 + [1] * 300 + [2] * 100
    features = datasets.Features({"text": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["a", "b", "c"])})
    data = datasets.Dataset.from_dict({"text": [f"t{i}" for i in range(1000)], "label": labels}, features=features)
    train, held_out = stratified_split(data, 0.1, seed=3)
    assert class_counts(held_out) == {"a": 60, "b": 30, "c": 10}
    assert class_counts(train) == {"a": 540, "b": 270, "c": 90}
    assert not set(train["text"]) & set(held_out["text"])
    subset = stratified_subset(train, 90, seed=3)
    assert class_counts(subset) == {"a": 54, "b": 27, "c": 9}
    assert stratified_subset(train, 10_000, seed=3) is train
    # same seed, same split
    assert stratified_split(data, 0.1, seed=3)[1]["text"] == held_out["text"]


def test_missing_label_column_lists_available_columns(tmp_path):
    csv = write_csv(tmp_path / "d.csv", imbalanced_rows({"a": 5, "b": 5}), header="body,stars")
    with pytest.raises(UserError, match="available columns: body, stars"):
        load_labelled_splits(FinetuneDataConfig(dataset=str(csv), text_column="body"), seed=0)
    with pytest.raises(UserError, match="text column 'text' not found"):
        load_labelled_splits(FinetuneDataConfig(dataset=str(csv), label_column="stars"), seed=0)


def test_single_class_and_empty_data_are_errors(tmp_path):
    one = write_csv(tmp_path / "one.csv", imbalanced_rows({"a": 10}))
    with pytest.raises(UserError, match="only one class"):
        load_labelled_splits(FinetuneDataConfig(dataset=str(one)), seed=0)
    empty = tmp_path / "empty.csv"
    empty.write_text('text,label\n"",a\n"  ",b\n', encoding="utf-8")
    with pytest.raises(UserError, match="no rows"):
        load_labelled_splits(FinetuneDataConfig(dataset=str(empty)), seed=0)


def test_a_column_of_unique_values_is_not_a_label_column(tmp_path):
    csv = write_csv(tmp_path / "d.csv", [(f"text {i}", i * 0.5) for i in range(40)])
    with pytest.raises(UserError, match="40 distinct values in 40 rows"):
        load_labelled_splits(FinetuneDataConfig(dataset=str(csv)), seed=0)


def test_class_too_small_to_split_is_a_user_error(tmp_path):
    csv = write_csv(tmp_path / "d.csv", imbalanced_rows({"a": 20, "b": 1}))
    with pytest.raises(UserError, match="b 1"):
        load_labelled_splits(FinetuneDataConfig(dataset=str(csv)), seed=0)


def test_eval_split_needs_a_hub_dataset(tmp_path):
    csv = write_csv(tmp_path / "d.csv", imbalanced_rows({"a": 5, "b": 5}))
    with pytest.raises(UserError, match="eval_split"):
        load_labelled_splits(FinetuneDataConfig(dataset=str(csv), eval_split="test"), seed=0)


def test_dataset_defaults():
    assert dataset_defaults("sst2").text_column == "sentence"
    assert dataset_defaults("stanfordnlp/sst2").eval_split == "validation"
    assert dataset_defaults("glue", "sst2").text_column == "sentence"
    assert (dataset_defaults("imdb").text_column, dataset_defaults("imdb").eval_split) == ("text", "test")
    assert dataset_defaults("embedded").label_column == "sentiment"
    assert dataset_defaults("reviews.csv").label_column == "label"


@pytest.mark.slow
def test_embedded_tweets_load_with_three_classes():
    splits = load_labelled_splits(FinetuneDataConfig(max_train_samples=300, max_eval_samples=100), seed=0)
    assert splits.label_names == ["negative", "neutral", "positive"]
    assert len(splits.train) == 300 and len(splits.eval) == 100
    # 16,186 / 15,018 / 6,954 of 38,158 tweets: proportions survive the stratified samples
    counts = class_counts(splits.train)
    assert abs(counts["negative"] - 300 * 16186 / 38158) <= 1
    assert abs(counts["positive"] - 300 * 6954 / 38158) <= 1


def test_tokenize_adds_lengths_and_truncates(wordpiece_tokenizer):
    features = datasets.Features({"text": datasets.Value("string"), "label": datasets.ClassLabel(names=["a", "b"])})
    data = datasets.Dataset.from_dict({"text": ["the cat", "a dog likes the morning train " * 10], "label": [0, 1]},
                                      features=features)
    tokenized = tokenize_labelled(data, wordpiece_tokenizer, max_length=16)
    assert "text" not in tokenized.column_names and tokenized["label"] == [0, 1]
    assert tokenized["length"] == [len(ids) for ids in tokenized["input_ids"]]
    assert tokenized["length"][0] == 4 and tokenized["length"][1] == 16  # [CLS] the cat [SEP]; truncated


@pytest.mark.parametrize("n, batch_size", [(1, 4), (37, 4), (1000, 8), (1234, 32)])
def test_sampler_yields_every_index_exactly_once(n, batch_size):
    rng = np.random.default_rng(n)
    sampler = LengthGroupedBatchSampler(rng.integers(1, 100, size=n).tolist(), batch_size, seed=1,
                                        mega_batch_size=5)
    for _ in range(2):  # two epochs, each a permutation
        batches = list(sampler)
        flat = [i for batch in batches for i in batch]
        assert sorted(flat) == list(range(n))
        assert len(batches) == len(sampler)
        assert all(len(b) == batch_size for b in batches if len(b) != n % batch_size)
        assert sum(len(b) < batch_size for b in batches) == (1 if n % batch_size else 0)


def test_sampler_groups_lengths_and_shuffles_between_epochs():
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 200, size=2000)
    grouped = LengthGroupedBatchSampler(lengths.tolist(), 16, seed=0)
    plain = LengthGroupedBatchSampler(lengths.tolist(), 16, seed=0, group_by_length=False)

    def padding(batches):
        return sum(int(lengths[b].max()) * len(b) - int(lengths[b].sum()) for b in batches)

    first, second = list(grouped), list(grouped)
    # grouping leaves far less padding than plain shuffling
    assert padding(first) < 0.2 * padding(list(plain))
    assert first != second  # a new order each epoch ...
    grouped.set_epoch(0)
    assert list(grouped) == first  # ... reproducible from seed and epoch
    # the batch order is shuffled, not sorted by length
    maxima = [int(lengths[b].max()) for b in first]
    assert maxima != sorted(maxima, reverse=True) and maxima != sorted(maxima)
    assert Counter(len(b) for b in first)[16] == 2000 // 16
