"""``mlmkit prepare``: build a run's prepared corpus ahead of the run (for example on a CPU node)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from mlmkit.data.cache import PreparedCorpus, corpus_fingerprint, prepared_corpus
from mlmkit.errors import UserError
from mlmkit.masking.registry import build_strategy
from mlmkit.modeling.loading import load_tokenizer
from mlmkit.tokenization.train import needs_trained_tokenizer


def prepare_for_config(cfg: Any, notify: Callable[[str], None] | None = None, rebuild: bool = False,
                       num_proc: int | None = None) -> PreparedCorpus:
    """Build (or find) the prepared corpus a ``pretrain`` run with config ``cfg`` will read.

    The tokenizer and masking strategy are loaded as the run loads them; the model is not.

    Args:
        cfg: A :class:`~mlmkit.config.schema.PretrainConfig`.
        notify: Called with one-line notices (a damaged prepared corpus rebuilt).
        rebuild: Prepare again even when a sound prepared corpus exists.
        num_proc: Processes to use when ``data.num_proc`` is unset (the blocks do not depend on it).
    """
    data = cfg.data if cfg.data.num_proc or not num_proc else dataclasses.replace(cfg.data, num_proc=num_proc)
    if not data.cache:
        raise UserError("data.cache is false: nothing would be kept on disk; drop the override to prepare")
    if corpus_fingerprint(data) is None:
        raise UserError(f"{data.source!r} is a Hub dataset; prepared corpora are kept for local files and the "
                        "embedded corpus ('datasets' caches Hub datasets itself)")
    if needs_trained_tokenizer(cfg.model, cfg.tokenizer):
        raise UserError("this run trains its tokenizer first; run `mlmkit tokenizer train` and set model.tokenizer "
                        "to prepare its corpus ahead")
    model = cfg.model
    tokenizer = load_tokenizer(model.tokenizer or model.name_or_path, model.revision, model.trust_remote_code)
    strategy = build_strategy(cfg.masking)
    strategy.bind(tokenizer)
    return prepared_corpus(data, tokenizer, strategy, notify=notify, rebuild=rebuild)
