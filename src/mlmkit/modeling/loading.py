"""Resolve model names (``embedded``, local directories, Hub names) and load models and tokenizers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlmkit.config.schema import EMBEDDED
from mlmkit.errors import UserError


def resolve_model_name(name: str) -> str:
    """Map ``embedded`` to the packaged encoder; check that path-like names exist."""
    if name == EMBEDDED:
        from mlmkit.data.embedded import embedded_model_dir

        return str(embedded_model_dir())
    path = Path(name).expanduser()
    if path.exists():
        if not path.is_dir() or not (path / "config.json").is_file():
            raise UserError(f"{name} is not a model directory (no config.json)")
        return str(path)
    if name.startswith((".", "/", "~")) or name.count("/") > 1 or name.endswith("/"):
        raise UserError(f"no such model directory: {name}")
    return name


def _hub_error(kind: str, name: str, exc: Exception) -> UserError:
    detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return UserError(f"cannot load {kind} {name!r} (not a local directory, and the Hub load failed: {detail})")


def load_tokenizer(name: str, revision: str | None = None, trust_remote_code: bool = False, require_mask: bool = True):
    """Load a tokenizer; a missing mask token is a user error when ``require_mask``."""
    from transformers import AutoTokenizer

    path = Path(name).expanduser()
    resolved = str(path) if path.is_dir() else resolve_model_name(name)  # a tokenizer directory has no config.json
    try:
        tokenizer = AutoTokenizer.from_pretrained(resolved, revision=revision, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as exc:
        raise _hub_error("tokenizer", name, exc) from exc
    if require_mask and tokenizer.mask_token is None:
        raise UserError(f"the tokenizer of {name!r} has no mask token, so it cannot do masked language modeling")
    return tokenizer


def load_mlm_model(model_cfg: Any) -> tuple[Any, Any, list[str]]:
    """Load ``(model, tokenizer, newly_initialised_weight_names)`` for masked language modeling.

    ``model_cfg`` is a :class:`~mlmkit.config.schema.ModelConfig`. The returned list
    names the weights the checkpoint did not hold (for example a fresh MLM head when
    continuing from an encoder-only checkpoint).
    """
    from transformers import AutoModelForMaskedLM

    from mlmkit.modeling.presets import build_scratch_model, is_from_scratch

    if is_from_scratch(model_cfg):  # presets, config files, overrides; sized to the tokenizer
        return build_scratch_model(model_cfg)
    name = resolve_model_name(model_cfg.name_or_path)
    tokenizer = load_tokenizer(model_cfg.tokenizer or model_cfg.name_or_path, model_cfg.revision,
                               model_cfg.trust_remote_code)
    kwargs: dict[str, Any] = {"revision": model_cfg.revision, "trust_remote_code": model_cfg.trust_remote_code}
    if model_cfg.attn_implementation:
        kwargs["attn_implementation"] = model_cfg.attn_implementation
    try:
        model, info = AutoModelForMaskedLM.from_pretrained(name, output_loading_info=True, **kwargs)
        fresh = sorted(info.get("missing_keys", []))
    except ValueError as exc:
        if "Unrecognized configuration" in str(exc) or "masked" in str(exc).lower():
            raise UserError(f"{name!r} has no masked-language-model architecture: {str(exc).splitlines()[0]}") from exc
        raise _hub_error("model", name, exc) from exc
    except OSError as exc:
        raise _hub_error("model", name, exc) from exc
    if len(tokenizer) > model.get_input_embeddings().num_embeddings:
        model.resize_token_embeddings(len(tokenizer), pad_to_multiple_of=64)
    return model, tokenizer, fresh
