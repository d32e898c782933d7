"""Build the n-gram collocation vocabulary that PMI-Masking masks as units.

PMI-Masking (Levine et al., "PMI-Masking: Principled Masking of Correlated Spans",
ICLR 2021) masks word n-grams that are strong collocations in the pre-training corpus
as single units. Collocation strength is the paper's PMI_n measure, which extends
pointwise mutual information from word pairs to n-grams:

    PMI_n(w_1 .. w_n) = log p(w_1 .. w_n) - max_{s in seg(w_1 .. w_n)} sum_{u in s} log p(u)

where ``seg`` is the set of segmentations of the n-gram into at least two contiguous
parts. For a bigram it is ordinary PMI, ``log p(ab) - log p(a) - log p(b)``; for
longer n-grams subtracting the *best* segmentation means an n-gram ranks high only when
no way of splitting it explains its frequency, so "new york city" does not score high
just because "new york" does.

How this module estimates the terms (choices the paper leaves open are marked):

* Words are the fast tokenizer's words (its pre-tokenizer split, the ``word_ids`` of an
  encoding), spelled through its normalizer (so an uncased tokenizer lowercases) and
  stripped of surrounding whitespace; whitespace-only words are skipped. Masking uses the
  same procedure (:func:`document_words`), so vocabulary and masking always agree. For
  scripts without spaces (``--language zh``) words come from the language's segmenter
  (jieba for Chinese, :mod:`mlmkit.masking.segmentation`), aligned to the tokens as masking
  aligns them; pre-train with the same ``masking.language``.
* ``p(u)`` of a k-gram is its count over the number of k-gram positions in the corpus;
  n-grams never cross a document boundary (our choice).
* Like the paper, n-grams of length 2..5 are candidates when they occur more than
  ``min_count`` times (the paper: "over 10 occurrences", ``min_count`` 10), each length is
  ranked separately (PMI_n is length-sensitive), and the vocabulary is assembled from
  the top of each ranking: half bigrams, a quarter trigrams, an eighth each of 4- and
  5-grams (for another ``max_n`` the shares keep halving and the two longest share
  equally), the policy and the 800K size of the authors' released lists (AI21Labs/pmi-masking).
  Those lists rank by a variant, ``log p(w)^2 / prod p(s)``, that favours frequent n-grams;
  this module ranks by equation 3 of the paper as written.
* Only n-grams with PMI_n above ``min_pmi`` (default 0: more likely than any of its
  segmentations) are kept, so a small corpus does not fill the vocabulary with
  non-collocations (our choice).

Counting is level-wise: an n-gram can only occur more than ``min_count`` times if both of its
(n-1)-gram parts do, so only those positions are counted, which keeps memory near the
number of frequent n-grams rather than all n-grams of the corpus.

The vocabulary is written as JSON (never pickle)::

    {"format": "mlmkit-pmi-vocab", "version": 1, "max_n": 5, "min_count": 10, ...,
     "ngrams": {"2": [[["new", "york"], 7.91, 120], ...], "3": [...], ...}}

each entry being ``[words, pmi_n, count]``, best first.
"""

from __future__ import annotations

import functools
import json
import math
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from mlmkit.data.sources import load_corpora
from mlmkit.errors import UserError
from mlmkit.masking.language import AUTO, detect_language, normalize_language
from mlmkit.masking.segmentation import align_words, load_segmenter, resolve_segmenter
from mlmkit.modeling.loading import load_tokenizer

VOCAB_FORMAT = "mlmkit-pmi-vocab"
VOCAB_VERSION = 1
#: documents per tokenizer call while reading the corpus
READ_BATCH = 1000


# ---------------------------------------------------------------------------- words
def word_normalizer(tokenizer: Any) -> Callable[[str], str]:
    """The string normalisation a fast tokenizer applies before splitting (identity when it has none).

    Memoised: a corpus repeats the same words, and a dictionary hit is much cheaper
    than a call into the tokenizer's normaliser.
    """
    backend = getattr(tokenizer, "backend_tokenizer", None)
    normalizer = getattr(backend, "normalizer", None) if backend is not None else None
    if normalizer is None:
        return lambda text: text
    return functools.lru_cache(maxsize=1 << 18)(normalizer.normalize_str)


def document_words(
    text: str, word_ids: Sequence[int | None], offsets: Sequence[tuple[int, int]], normalize: Callable[[str], str]
) -> tuple[list[str], list[int]]:
    """The words of one encoded document, as strings, in order.

    Args:
        text: The document.
        word_ids: The encoding's word index of every token (None for special tokens).
        offsets: The encoding's character span of every token in ``text``.
        normalize: The tokenizer's normaliser (see :func:`word_normalizer`).

    Returns:
        ``(words, ids)``: each word's normalised spelling, whitespace removed, and its word index,
        in order of appearance. Whitespace-only words (which byte-level and Metaspace
        pre-tokenizers produce for repeated spaces) are left out.
    """
    # a word's tokens are consecutive, so one pass over runs of equal word ids gives its span
    spans: list[list[int]] = []
    previous = None
    for word, (start, end) in zip(word_ids, offsets, strict=True):
        if word is None or word < 0:
            previous = None
            continue
        if word == previous:
            last = spans[-1]
            if end > last[2]:
                last[2] = end
        else:
            spans.append([word, start, end])
            previous = word
    words: list[str] = []
    ids: list[int] = []
    for word, start, end in spans:
        # no whitespace inside a word: BERT's normaliser pads every Han character with spaces, which
        # would spell a segmented Chinese word "坐  在"
        spelled = "".join(normalize(text[start:end]).split())
        if spelled:
            words.append(spelled)
            ids.append(word)
    return words, ids


# ---------------------------------------------------------------------------- PMI_n
def best_segmentation_logp(logp: Callable[[int, int], float], n: int) -> float:
    """Max over segmentations of ``[0, n)`` into >= 2 contiguous parts of the sum of part log-probabilities.

    Args:
        logp: ``logp(i, j)`` is the log-probability of the part covering words ``i..j-1``.
        n: Length of the n-gram (>= 2).
    """
    best = [0.0] + [-math.inf] * n
    for j in range(1, n + 1):
        for i in range(j):
            if i == 0 and j == n:
                continue  # the whole n-gram is not a segmentation of itself
            candidate = best[i] + logp(i, j)
            if candidate > best[j]:
                best[j] = candidate
    return best[n]


def pmi_n(ngram: tuple[int, ...], counts: dict[tuple[int, ...], int], totals: Sequence[int]) -> float:
    """PMI_n of ``ngram`` (Levine et al., 2021) from k-gram ``counts`` and k-gram position ``totals``.

    ``totals[k]`` is the number of k-gram positions in the corpus; every contiguous
    part of ``ngram`` must be in ``counts``.
    """
    n = len(ngram)

    def logp(i: int, j: int) -> float:
        return math.log(counts[ngram[i:j]] / totals[j - i])

    return logp(0, n) - best_segmentation_logp(logp, n)


def length_quotas(size: int, max_n: int) -> dict[int, int]:
    """How many entries of each length a vocabulary of ``size`` holds (the paper's halving policy)."""
    shares = {n: 0.5 ** (n - 1) for n in range(2, max_n)}
    shares[max_n] = 0.5 ** (max_n - 2)
    return {n: int(size * share) for n, share in shares.items()}


def count_frequent_ngrams(
    documents: Sequence[Sequence[int]], max_n: int, min_count: int, advance: Callable[[int], None] | None = None
) -> tuple[dict[tuple[int, ...], int], list[int]]:
    """Count every n-gram (n = 1..max_n) seen more than ``min_count`` times, level by level.

    An n-gram occurs more than ``min_count`` times only if both its (n-1)-gram prefix and suffix
    do, so level n looks only at positions where both are frequent. Each frequent
    (n-1)-gram gets a dense integer id, an n-gram is coded as ``prefix_id * V + last_word``
    (one int64), and counting is one ``numpy.unique`` per level.

    Args:
        documents: Each document as a sequence of word ids in ``[0, V)``.
        max_n: Longest n-gram.
        min_count: Keep n-grams seen more than this many times.
        advance: Called as ``advance(n)`` when level ``n`` is counted.

    Returns:
        ``(counts, totals)``: counts of the frequent n-grams (keys are tuples of word ids)
        and ``totals[k]``, the number of k-gram positions (``totals[0]`` is unused).
    """
    lengths = np.fromiter((len(d) for d in documents), dtype=np.int64, count=len(documents))
    totals = [0] + [int(np.clip(lengths - k + 1, 0, None).sum()) for k in range(1, max_n + 1)]
    flat = np.fromiter((w for d in documents for w in d), dtype=np.int64, count=int(lengths.sum()))
    doc_of = np.repeat(np.arange(len(documents)), lengths)
    vocab_size = int(flat.max()) + 1 if flat.size else 1
    counts: dict[tuple[int, ...], int] = {}
    # ids[i]: dense id of the frequent (n-1)-gram starting at position i, -1 if not frequent
    ids = np.full(flat.shape, -1, dtype=np.int64)
    grams: list[tuple[int, ...]] = []
    for n in range(1, max_n + 1):
        span = flat.size - n + 1
        if span <= 0:
            break
        if n == 1:
            codes = flat
            candidate = np.ones(flat.shape, dtype=bool)
        else:
            candidate = (doc_of[:span] == doc_of[n - 1:]) & (ids[:span] >= 0) & (ids[1:span + 1] >= 0)
            codes = ids[:span] * vocab_size + flat[n - 1:]
        unique, found = np.unique(codes[candidate], return_counts=True)
        frequent = found > min_count
        kept, kept_counts = unique[frequent], found[frequent]
        if n == 1:
            new_grams = [(int(w),) for w in kept]
        else:
            new_grams = [grams[int(c) // vocab_size] + (int(c) % vocab_size,) for c in kept]
        counts.update(zip(new_grams, (int(c) for c in kept_counts), strict=True))
        if advance is not None:
            advance(n)
        if kept.size == 0:
            break
        slot = np.searchsorted(kept, codes).clip(max=kept.size - 1)
        hit = candidate & (kept[slot] == codes)
        ids = np.full(flat.shape, -1, dtype=np.int64)
        ids[:span] = np.where(hit, slot, -1)
        grams = new_grams
    return counts, totals


# ---------------------------------------------------------------------------- the vocabulary
@dataclass
class PmiVocabulary:
    """A ranked n-gram collocation vocabulary.

    Attributes:
        ngrams: ``{n: [(words, pmi_n, count), ...]}``, best first.
        max_n: Longest n-gram considered.
        min_count: Candidates were seen more than this many times.
        min_pmi: Candidates needed PMI_n above this.
        size: Requested total size (the length quotas come from it).
        word_splitter: The tokenizer whose words were counted (name or path).
        lowercase: Whether that tokenizer lowercases.
        documents: Documents read.
        words: Words read.
    """

    ngrams: dict[int, list[tuple[tuple[str, ...], float, int]]]
    max_n: int = 5
    min_count: int = 10
    min_pmi: float = 0.0
    size: int = 800_000
    word_splitter: str = ""
    lowercase: bool = True
    documents: int = 0
    words: int = 0
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return sum(len(v) for v in self.ngrams.values())

    def to_json(self) -> dict[str, Any]:
        """The JSON document written by :meth:`save`."""
        return {
            "format": VOCAB_FORMAT, "version": VOCAB_VERSION, "max_n": self.max_n, "min_count": self.min_count,
            "kept": "n-grams seen more than min_count times",
            "min_pmi": self.min_pmi, "size": self.size, "word_splitter": self.word_splitter,
            "lowercase": self.lowercase, "documents": self.documents, "words": self.words, **self.meta,
            "ngrams": {str(n): [[list(words), round(score, 6), count] for words, score, count in entries]
                       for n, entries in sorted(self.ngrams.items())},
        }

    def save(self, path: str | os.PathLike) -> Path:
        """Write the vocabulary as JSON (atomically: a temporary file, then a rename)."""
        path = Path(path).expanduser()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.tmp")
            tmp.write_text(json.dumps(self.to_json(), ensure_ascii=False) + "\n", encoding="utf-8")
            os.replace(tmp, path)
        except OSError as exc:
            raise UserError(f"cannot write the PMI vocabulary to {path}: {exc.strerror or exc}") from exc
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> PmiVocabulary:
        """Read a vocabulary written by :meth:`save`; a bad file is a :class:`UserError`."""
        path = Path(path).expanduser()
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise UserError(f"cannot read the PMI vocabulary {path}: {exc}") from exc
        if not isinstance(data, dict) or data.get("format") != VOCAB_FORMAT:
            raise UserError(f"{path} is not a PMI vocabulary (expected \"format\": \"{VOCAB_FORMAT}\")")
        if data.get("version") != VOCAB_VERSION:
            raise UserError(f"{path} has PMI vocabulary version {data.get('version')}; this mlmkit reads "
                            f"version {VOCAB_VERSION}")
        try:
            ngrams = {int(n): [(tuple(str(w) for w in words), float(score), int(count))
                               for words, score, count in entries]
                      for n, entries in data["ngrams"].items()}
        except (KeyError, TypeError, ValueError) as exc:
            raise UserError(f"the PMI vocabulary {path} is malformed: {exc}") from exc
        known = {"format", "version", "ngrams", "max_n", "min_count", "kept", "min_pmi", "size", "word_splitter",
                 "lowercase", "documents", "words"}
        return cls(
            ngrams=ngrams, max_n=int(data.get("max_n", max(ngrams, default=2))),
            min_count=int(data.get("min_count", 0)), min_pmi=float(data.get("min_pmi", 0.0)),
            size=int(data.get("size", 0)), word_splitter=str(data.get("word_splitter", "")),
            lowercase=bool(data.get("lowercase", True)), documents=int(data.get("documents", 0)),
            words=int(data.get("words", 0)), meta={k: v for k, v in data.items() if k not in known},
        )


def read_corpus_words(
    texts: Iterable[str], tokenizer: Any, advance: Callable[[int], None] | None = None,
    segment: Callable[[str], list[tuple[int, int]]] | None = None,
) -> tuple[list[list[int]], list[str]]:
    """Split documents into words with ``tokenizer`` (and ``segment``, a word segmenter, when given).

    Returns ``(documents as word ids, id -> word)``.
    """
    if not getattr(tokenizer, "is_fast", False):
        raise UserError("building a PMI vocabulary needs a fast tokenizer (one with a tokenizer.json)")
    normalize = word_normalizer(tokenizer)
    index: dict[str, int] = {}
    documents: list[list[int]] = []

    def flush(batch: list[str]) -> None:
        encodings = tokenizer(batch, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
        for i, text in enumerate(batch):
            word_ids, offsets = encodings.word_ids(i), encodings["offset_mapping"][i]
            if segment is not None:
                word_ids = align_words(text, segment(text), word_ids, offsets)
            words, _ = document_words(text, word_ids, offsets, normalize)
            documents.append([index.setdefault(w, len(index)) for w in words])
        if advance is not None:
            advance(len(batch))

    batch: list[str] = []
    for text in texts:
        batch.append(text)
        if len(batch) == READ_BATCH:
            flush(batch)
            batch = []
    if batch:
        flush(batch)
    vocabulary = [""] * len(index)
    for word, i in index.items():
        vocabulary[i] = word
    return documents, vocabulary


def build_pmi_vocabulary(
    texts: Sequence[str],
    tokenizer: Any,
    max_n: int = 5,
    min_count: int = 10,
    size: int = 800_000,
    min_pmi: float = 0.0,
    word_splitter: str = "",
    progress: Any = None,
    segment: Callable[[str], list[tuple[int, int]]] | None = None,
) -> PmiVocabulary:
    """Count word n-grams in ``texts`` and keep the top PMI_n collocations of each length.

    Args:
        texts: The corpus, one document per item.
        tokenizer: A fast tokenizer; its pre-tokenizer and normalizer define the words.
        max_n: Longest n-gram (the paper: 5).
        min_count: Keep candidate n-grams seen more than this many times (the paper: 10).
        size: Total vocabulary size, split over lengths by the paper's halving policy.
        min_pmi: Keep only n-grams whose PMI_n exceeds this.
        word_splitter: Name of the tokenizer, recorded in the file.
        progress: An optional ``rich.progress.Progress`` to report on.
        segment: A word segmenter (text -> word character spans) for scripts without spaces.

    Returns:
        The vocabulary (``save`` it to write the JSON file).
    """
    if max_n < 2:
        raise UserError(f"--max-n must be at least 2, got {max_n}")
    if min_count < 0:
        raise UserError(f"--min-count must be at least 0, got {min_count}")
    if size < 1:
        raise UserError(f"--size must be at least 1, got {size}")
    n_docs = len(texts)
    reading = progress.add_task("reading words", total=n_docs) if progress is not None else None
    documents, vocabulary = read_corpus_words(
        texts, tokenizer, (lambda k: progress.advance(reading, k)) if progress is not None else None, segment)
    counting = progress.add_task("counting n-grams", total=max_n) if progress is not None else None
    on_level = (lambda n: progress.update(counting, completed=n)) if progress is not None else None
    counts, totals = count_frequent_ngrams(documents, max_n, min_count, on_level)
    quotas = length_quotas(size, max_n)
    ngrams: dict[int, list[tuple[tuple[str, ...], float, int]]] = {}
    for n in range(2, max_n + 1):
        scored = [(pmi_n(gram, counts, totals), count, gram) for gram, count in counts.items() if len(gram) == n]
        scored = [s for s in scored if s[0] > min_pmi]
        spelled = [(score, count, tuple(vocabulary[w] for w in gram)) for score, count, gram in scored]
        spelled.sort(key=lambda s: (-s[0], -s[1], s[2]))
        ngrams[n] = [(words, score, count) for score, count, words in spelled[:quotas[n]]]
    lowercase = word_normalizer(tokenizer)("A") == "a"
    return PmiVocabulary(ngrams=ngrams, max_n=max_n, min_count=min_count, min_pmi=min_pmi, size=size,
                         word_splitter=word_splitter, lowercase=lowercase, documents=n_docs,
                         words=sum(len(d) for d in documents))


def build_vocab_file(
    corpora: Sequence[str],
    output: str | os.PathLike,
    model: str = "embedded",
    max_n: int = 5,
    min_count: int = 10,
    size: int = 800_000,
    min_pmi: float = 0.0,
    text_column: str = "text",
    split: str = "train",
    max_documents: int | None = None,
    console: Any = None,
    language: str = "en",
    segmenter: str = "auto",
) -> dict[str, Any]:
    """``mlmkit masking build-vocab``: read corpora, build the PMI vocabulary, write it as JSON.

    Args:
        corpora: Sources as in ``data.source`` ('embedded', local files/dirs/globs, Hub names).
        output: JSON file to write.
        model: Model directory or Hub name whose tokenizer splits words.
        max_n: Longest n-gram.
        min_count: Keep candidate n-grams seen more than this many times.
        size: Total vocabulary size.
        min_pmi: Keep only n-grams whose PMI_n exceeds this.
        text_column: Text column of csv/json/parquet corpora.
        split: Split of Hub datasets.
        max_documents: Use only the first N documents (over all corpora).
        console: ``rich`` console for the progress bars (stderr by default).
        language: ISO 639 code of the corpus or ``auto``; with ``segmenter`` it decides how words
            are cut (Chinese: jieba), as ``masking.language`` does when pre-training.
        segmenter: ``auto``, ``tokenizer``, ``jieba``, ``spacy`` or ``package.module:function``.

    Returns:
        A summary: output path, documents, words, entries per length and the top entries.
    """
    texts: list[str] = load_corpora(corpora, text_column, split, None, max_documents)["text"]

    language = normalize_language(language)
    if language == AUTO:
        language = detect_language(texts[:200])
    segmenter = resolve_segmenter(segmenter, language)
    segment = load_segmenter(segmenter, language)
    tokenizer = load_tokenizer(model, require_mask=False)
    progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), console=console or Console(stderr=True), transient=False)
    with progress:
        vocabulary = build_pmi_vocabulary(texts, tokenizer, max_n=max_n, min_count=min_count, size=size,
                                          min_pmi=min_pmi, word_splitter=model, progress=progress, segment=segment)
    vocabulary.meta["corpora"] = list(corpora)
    vocabulary.meta.update(language=language, segmenter=segmenter)
    path = vocabulary.save(output)
    return {
        "output": str(path), "documents": vocabulary.documents, "words": vocabulary.words,
        "language": language, "segmenter": segmenter,
        "entries": {n: len(entries) for n, entries in vocabulary.ngrams.items()},
        "top": {n: [{"ngram": " ".join(words), "pmi": round(score, 3), "count": count}
                    for words, score, count in entries[:5]] for n, entries in vocabulary.ngrams.items()},
    }
