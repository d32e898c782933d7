"""Fixtures of the fidelity suite: the packaged tweets and the packaged MiniLM WordPiece tokenizer."""

from __future__ import annotations

import pytest

from mlmkit.data.embedded import embedded_model_dir, read_embedded_tweets


@pytest.fixture(scope="session")
def tweets() -> list[str]:
    return read_embedded_tweets()["text"]


@pytest.fixture(scope="session")
def minilm_tokenizer():
    from mlmkit.modeling.loading import load_tokenizer

    return load_tokenizer(str(embedded_model_dir()))

