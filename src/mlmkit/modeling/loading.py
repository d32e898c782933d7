"""Load models and tokenizers: :func:`load_pretrained` is the ``from_pretrained`` call every command uses.

Any failure ends in one :class:`~mlmkit.errors.UserError` that names the file
(:mod:`mlmkit.modeling.checks` finds what is wrong with a damaged directory).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from huggingface_hub import try_to_load_from_cache
from transformers import AutoModelForMaskedLM, AutoTokenizer

from mlmkit.errors import UserError, first_line
from mlmkit.modeling.checks import (
    JSON_FILES,
    TOKENIZER_FILES,
    diagnose_model_dir,
    json_problem,
    local_model_dir,
    model_load_error,
    read_json_file,
    resolve_model_name,
)
from mlmkit.modeling.presets import MAX_LENGTH, get_preset, is_from_scratch, scratch_config, source_has_tokenizer

#: architecture-name endings of fine-tuned task heads (not an encoder or a masked-LM checkpoint)
TASK_HEAD_SUFFIXES = ("ForSequenceClassification", "ForTokenClassification", "ForQuestionAnswering",
                      "ForMultipleChoice")
#: what each Auto class needs, in words: (the head, the short class name)
HEADS = {"AutoModelForMaskedLM": ("masked-language-model head", "masked-LM"),
         "AutoModelForSequenceClassification": ("sequence-classification head", "sequence-classification")}
#: model types whose position ids start after the padding id (usable positions = table size - pad id - 1)
OFFSET_POSITION_TYPES = ("roberta", "xlm-roberta", "camembert", "roberta-prelayernorm", "longformer")


def task_head(config: Any) -> str | None:
    """The fine-tuned task head a checkpoint's config names (e.g. ``BertForSequenceClassification``), if any."""
    architectures = config.get("architectures") if isinstance(config, dict) else getattr(config, "architectures",
                                                                                          None)
    heads = [a for a in architectures or [] if str(a).endswith(TASK_HEAD_SUFFIXES)]
    return heads[0] if heads and len(heads) == len(architectures) else None


def check_masked_lm_source(name: str, config: Any) -> None:
    """Refuse a fine-tuned classifier where masked-LM training or scoring needs an encoder or an MLM."""
    head = task_head(config)
    if head:
        raise UserError(f"{name!r} is a fine-tuned {head} checkpoint; masked language modeling continues from an "
                        "encoder or masked-LM checkpoint (for example the model it was fine-tuned from)")


def load_pretrained(auto_class: Any, name: str, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
    """``auto_class.from_pretrained(name, output_loading_info=True, **kwargs)`` with one-line errors.

    Args:
        auto_class: ``AutoModelForMaskedLM``, ``AutoModelForSequenceClassification``, ...
        name: A local directory, ``embedded`` or a Hub name.
        **kwargs: Passed to ``from_pretrained``.

    Returns:
        ``(model, loading_info)``.
    """
    resolved = resolve_model_name(name)
    try:
        return auto_class.from_pretrained(resolved, output_loading_info=True, **kwargs)
    except ValueError as exc:
        if "Unrecognized configuration class" in str(exc):
            head, short = HEADS.get(auto_class.__name__, (auto_class.__name__, auto_class.__name__))
            raise UserError(f"{name!r} has no {head}: transformers has no {short} class for its model type") from exc
        raise model_load_error(name, exc) from exc
    except Exception as exc:  # safetensors, torch and json raise many types for damaged files
        raise model_load_error(name, exc) from exc


def load_tokenizer(name: str, revision: str | None = None, trust_remote_code: bool = False, require_mask: bool = True):
    """Load a tokenizer; a missing mask token is a user error when ``require_mask``."""
    path = Path(name).expanduser()
    resolved = str(path) if path.is_dir() else resolve_model_name(name)  # a tokenizer directory has no config.json
    try:
        tokenizer = AutoTokenizer.from_pretrained(resolved, revision=revision, trust_remote_code=trust_remote_code)
    except Exception as exc:  # a damaged tokenizer.json raises the tokenizers library's plain Exception
        raise _tokenizer_error(name, path, exc) from exc
    if require_mask and tokenizer.mask_token is None:
        raise UserError(f"the tokenizer of {name!r} has no mask token, so it cannot do masked language modeling")
    return tokenizer


def _tokenizer_error(name: str, path: Path, exc: BaseException) -> UserError:
    """One line for a tokenizer that does not load: the damaged file, or what the library said."""
    if not path.is_dir():
        return model_load_error(name, exc, "tokenizer")
    problem = json_problem(path, JSON_FILES[:4])
    if problem:
        return UserError(problem)
    if not any((path / file).is_file() for file in TOKENIZER_FILES):
        return UserError(f"{path} holds no tokenizer (none of {', '.join(TOKENIZER_FILES)}); set model.tokenizer "
                         "or save the tokenizer next to the model")
    return UserError(f"cannot load the tokenizer in {path}: {type(exc).__name__}: {first_line(exc)}")


def model_config_dict(model_cfg: Any) -> dict[str, Any] | None:
    """The ``config.json`` contents of the configured model, read without loading the model.

    Covers a local or ``embedded`` model directory (checked with :func:`diagnose_model_dir`,
    so a damaged one is a UserError naming the file), a config file, a preset (its
    positions), and a Hub model whose config is already in the local cache. None when the
    config cannot be had without the network. ``model.config_overrides`` apply to
    from-scratch models.
    """
    overrides = dict(getattr(model_cfg, "config_overrides", None) or {})
    scratch = is_from_scratch(model_cfg)
    if getattr(model_cfg, "preset", None):
        family = get_preset(model_cfg.preset).family
        pad = 1 if family == "roberta" else 0
        positions = MAX_LENGTH + (pad + 1 if family == "roberta" else 0)
        return {"model_type": family, "pad_token_id": pad, "max_position_embeddings": positions, **overrides}
    name = model_cfg.name_or_path
    file = Path(name).expanduser()
    if name.endswith(".json") and file.is_file():
        config = read_json_file(file)
    elif (directory := local_model_dir(name)) is not None:
        problem = diagnose_model_dir(directory, weights=not scratch)
        if problem:
            raise UserError(problem)
        config = read_json_file(directory / "config.json")
    else:
        resolve_model_name(name)  # a path-like name that does not exist
        cached = _cached_hub_config(name, getattr(model_cfg, "revision", None))
        if cached is None:
            return None
        config = read_json_file(cached)
    if not isinstance(config, dict):
        return None
    return {**config, **overrides} if scratch else config


def _cached_hub_config(name: str, revision: str | None) -> Path | None:
    try:
        found = try_to_load_from_cache(name, "config.json", revision=revision)
    except Exception:  # an invalid repo id is reported by the load itself
        return None
    return Path(found) if isinstance(found, str) else None


def usable_positions(config: dict[str, Any]) -> int | None:
    """The longest input in tokens a model with this config accepts; None when it has no position table."""
    positions = config.get("max_position_embeddings")
    if not isinstance(positions, int) or config.get("position_biased_input") is False:
        return None  # relative positions (e.g. DeBERTa-v2) have no table to run past
    if config.get("model_type") in OFFSET_POSITION_TYPES:
        pad = config.get("pad_token_id")
        positions -= (pad if isinstance(pad, int) and pad >= 0 else 1) + 1
    return positions


def load_mlm_model(model_cfg: Any) -> tuple[Any, Any, list[str]]:
    """Load ``(model, tokenizer, newly_initialised_weight_names)`` for masked language modeling.

    ``model_cfg`` is a :class:`~mlmkit.config.schema.ModelConfig`. The returned list
    names the weights the checkpoint did not hold (for example a fresh MLM head when
    continuing from an encoder-only checkpoint). A fine-tuned classifier is refused.
    """
    if is_from_scratch(model_cfg):  # presets, config files, overrides; sized to the tokenizer
        return build_scratch_model(model_cfg)
    tokenizer = load_tokenizer(model_cfg.tokenizer or model_cfg.name_or_path, model_cfg.revision,
                               model_cfg.trust_remote_code)
    kwargs: dict[str, Any] = {"revision": model_cfg.revision, "trust_remote_code": model_cfg.trust_remote_code}
    if model_cfg.attn_implementation:
        kwargs["attn_implementation"] = model_cfg.attn_implementation
    model, info = load_pretrained(AutoModelForMaskedLM, model_cfg.name_or_path, **kwargs)
    check_masked_lm_source(model_cfg.name_or_path, model.config)
    fresh = sorted(info.get("missing_keys", []))
    if len(tokenizer) > model.get_input_embeddings().num_embeddings:
        model.resize_token_embeddings(len(tokenizer), pad_to_multiple_of=64)
    return model, tokenizer, fresh


def build_scratch_model(model_cfg: Any) -> tuple[Any, Any, list[str]]:
    """``(model, tokenizer, fresh)`` for a randomly initialised MLM model (see :func:`scratch_config`).

    Every weight is fresh, so ``fresh`` names them all.
    """
    if getattr(model_cfg, "preset", None) and not model_cfg.tokenizer:
        get_preset(model_cfg.preset)
        raise UserError("a preset has no tokenizer: set model.tokenizer, or run `mlmkit pretrain`, which trains one "
                        "on the corpus (see the tokenizer section)")
    if not model_cfg.tokenizer and not source_has_tokenizer(model_cfg.name_or_path):
        raise UserError(f"{model_cfg.name_or_path} has no tokenizer: set model.tokenizer, or let `mlmkit pretrain` "
                        "train one")
    tokenizer = load_tokenizer(model_cfg.tokenizer or model_cfg.name_or_path, model_cfg.revision,
                               model_cfg.trust_remote_code)
    config = scratch_config(model_cfg, tokenizer)
    kwargs: dict[str, Any] = {"trust_remote_code": model_cfg.trust_remote_code}
    if model_cfg.attn_implementation:
        kwargs["attn_implementation"] = model_cfg.attn_implementation
    try:
        model = AutoModelForMaskedLM.from_config(config, **kwargs)
    except ValueError as exc:
        raise UserError(f"cannot build the model: {str(exc).splitlines()[0]}") from exc
    return model, tokenizer, [name for name, _ in model.named_parameters()]
