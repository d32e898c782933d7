"""Architecture presets for pre-training from scratch, and building such a model.

Sizes follow Turc et al. (2019, "Well-Read Students Learn Better", the BERT-tiny ...
BERT-medium family) and BERT-base; each has a RoBERTa-style twin (position ids offset
past the padding id, one token type, LayerNorm eps 1e-5). Any config field can be
overridden (``model.config_overrides``); a model config file or a checkpoint/Hub name
in ``model.name_or_path`` can be used instead of a preset. The vocabulary size and the
special-token ids always come from the tokenizer, so model and tokenizer agree.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from transformers import AutoConfig, BertConfig, RobertaConfig

from mlmkit.config.presets import PRESETS, Preset, get_preset, preset_names
from mlmkit.config.schema import EMBEDDED
from mlmkit.errors import UserError
from mlmkit.modeling.checks import TOKENIZER_FILES, model_load_error, resolve_model_name

__all__ = ["PRESETS", "Preset", "get_preset", "preset_names"]  # the table lives with the config that names it

#: files whose presence means a directory holds a tokenizer
#: model types whose tokenizers use RoBERTa's special tokens
ROBERTA_TYPES = ("roberta", "xlm-roberta", "camembert", "roberta-prelayernorm", "longformer")
#: longest sequence a preset model accepts (special tokens included)
MAX_LENGTH = 512


def is_from_scratch(model_cfg: Any) -> bool:
    """True when the model starts from random weights (``from_scratch`` or a preset)."""
    return bool(model_cfg.from_scratch or getattr(model_cfg, "preset", None))


def _is_config_file(name: str) -> bool:
    return name.endswith(".json") and Path(name).expanduser().is_file()


def source_has_tokenizer(name_or_path: str) -> bool:
    """Whether ``name_or_path`` provides a tokenizer (a config file or a config-only directory does not).

    Hub names are assumed to have one; loading says otherwise if they don't.
    """
    if name_or_path == EMBEDDED:
        return True
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return False
    if path.is_dir():
        return any((path / f).is_file() for f in TOKENIZER_FILES)
    return True


def _base_config(model_cfg: Any):
    """The architecture config before overrides: a preset, a config file, or a checkpoint's config."""
    preset_name = getattr(model_cfg, "preset", None)
    if preset_name:
        preset = get_preset(preset_name)
        common = dict(num_hidden_layers=preset.layers, hidden_size=preset.hidden, num_attention_heads=preset.heads,
                      intermediate_size=preset.ffn)
        if preset.family == "roberta":
            return RobertaConfig(type_vocab_size=1, layer_norm_eps=1e-5, **common)
        return BertConfig(max_position_embeddings=MAX_LENGTH, **common)
    name = model_cfg.name_or_path
    source = str(Path(name).expanduser()) if _is_config_file(name) else resolve_model_name(name)
    try:
        return AutoConfig.from_pretrained(source, revision=model_cfg.revision,
                                          trust_remote_code=model_cfg.trust_remote_code)
    except (OSError, ValueError) as exc:
        raise model_load_error(name, exc, "model config") from exc


def model_family(model_cfg: Any) -> str:
    """``roberta`` or ``bert``: whose special tokens a tokenizer trained for this model should use."""
    preset_name = getattr(model_cfg, "preset", None)
    if preset_name:
        return get_preset(preset_name).family
    model_type = getattr(_base_config(model_cfg), "model_type", "")
    return "roberta" if model_type in ROBERTA_TYPES else "bert"


def _apply_overrides(config: Any, overrides: dict[str, Any]) -> None:
    known = config.to_dict()
    unknown = sorted(set(overrides) - set(known))
    if unknown:
        valid = ", ".join(sorted(k for k in known if not k.startswith("_") and k != "transformers_version"))
        raise UserError(f"unknown model config field(s) {', '.join(unknown)} in model.config_overrides; "
                        f"{type(config).__name__} has: {valid}")
    for key, value in overrides.items():
        setattr(config, key, value)


def scratch_config(model_cfg: Any, tokenizer: Any):
    """The config of a from-scratch model: preset/config + overrides, sized and labelled by ``tokenizer``.

    ``vocab_size`` is the tokenizer's length (an override may only make it larger, e.g. to
    pad to a multiple of 64); ``pad``/``bos``/``eos`` ids are the tokenizer's (``bos``/``eos``
    are ``[CLS]``/``[SEP]`` for BERT-style tokenizers, which have no separate ones). For
    RoBERTa-style models the position table is widened by ``pad_token_id + 1``, the offset
    RoBERTa's position ids start at.
    """
    config = _base_config(model_cfg)
    overrides = dict(getattr(model_cfg, "config_overrides", None) or {})
    _apply_overrides(config, overrides)
    size = len(tokenizer)
    vocab = int(overrides.get("vocab_size", size))
    if vocab < size:
        raise UserError(f"model.config_overrides.vocab_size={vocab} is smaller than the tokenizer's {size} tokens")
    config.vocab_size = vocab
    config.pad_token_id = tokenizer.pad_token_id
    config.bos_token_id = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.cls_token_id
    config.eos_token_id = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.sep_token_id
    if getattr(model_cfg, "preset", None) and config.model_type == "roberta" \
            and "max_position_embeddings" not in overrides:
        config.max_position_embeddings = MAX_LENGTH + (config.pad_token_id or 0) + 1
    return config
