"""Resolve model names (``embedded``, local directories, Hub names) and load models and tokenizers.

Every way a model directory can be broken (no ``config.json``, a damaged JSON file, no
weights, a truncated ``model.safetensors``, a missing shard, the wrong architecture)
ends in one :class:`~mlmkit.errors.UserError` that names the file: :func:`diagnose_model_dir`
finds the problem, :func:`model_load_error` turns a failed ``from_pretrained`` into that
line, and :func:`load_pretrained` is the ``from_pretrained`` call every command uses.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

from mlmkit.config.schema import EMBEDDED
from mlmkit.errors import UserError
from mlmkit.modeling.presets import TOKENIZER_FILES

#: weight files ``from_pretrained`` reads, in the order it prefers them
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")
#: JSON files of a model or tokenizer directory; each must parse when present
JSON_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
              "generation_config.json", "model.safetensors.index.json", "pytorch_model.bin.index.json")
#: architecture-name endings of fine-tuned task heads (not an encoder or a masked-LM checkpoint)
TASK_HEAD_SUFFIXES = ("ForSequenceClassification", "ForTokenClassification", "ForQuestionAnswering",
                      "ForMultipleChoice")
#: what each Auto class needs, in words: (the head, the short class name)
HEADS = {"AutoModelForMaskedLM": ("masked-language-model head", "masked-LM"),
         "AutoModelForSequenceClassification": ("sequence-classification head", "sequence-classification")}
#: model types whose position ids start after the padding id (usable positions = table size - pad id - 1)
OFFSET_POSITION_TYPES = ("roberta", "xlm-roberta", "camembert", "roberta-prelayernorm", "longformer")
_DAMAGED = "it is damaged or was only partly copied; copy or save the model again"


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


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def read_json_file(path: Path) -> Any:
    """Parse a JSON file of a model directory; a damaged one is a UserError naming it."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise UserError(f"{path} is not valid JSON ({_first_line(exc)}); {_DAMAGED}") from exc
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror or exc}") from exc


def safetensors_problem(path: Path) -> str | None:
    """Why a ``.safetensors`` file cannot be loaded (truncated, bad header), or None when it looks whole.

    Reads only the header: 8 bytes of length, the JSON header, and the file size, which must
    equal the end of the last tensor.
    """
    size = path.stat().st_size
    with open(path, "rb") as handle:
        head = handle.read(8)
        if len(head) < 8:
            return f"{path} is truncated ({size} bytes, not even a header); {_DAMAGED}"
        length = int.from_bytes(head, "little")
        if 8 + length > size:
            return (f"{path} is truncated or not a safetensors file: its header length field ({length:,} bytes) "
                    f"exceeds the file ({size:,} bytes); {_DAMAGED}")
        try:
            header = json.loads(handle.read(length))
            ends = [int(meta["data_offsets"][1]) for key, meta in header.items() if key != "__metadata__"]
        except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
            return f"{path} has a corrupt header ({_first_line(exc)}); {_DAMAGED}"
    expected = 8 + length + max(ends, default=0)
    if size < expected:
        return f"{path} is truncated: it holds {size:,} bytes of the {expected:,} its header describes; {_DAMAGED}"
    if size > expected:
        return f"{path} has {size - expected:,} bytes more than its header describes; {_DAMAGED}"
    return None


def _weights_problem(path: Path) -> str | None:
    present = [name for name in WEIGHT_FILES if (path / name).is_file()]
    if not present:
        return (f"{path} has no weights file ({' or '.join(WEIGHT_FILES[::2])}); save the model with "
                "save_pretrained, or use the directory of a finished `mlmkit pretrain` run")
    name = present[0]
    if name.endswith(".index.json"):
        weight_map = read_json_file(path / name).get("weight_map", {})
        shards = sorted(set(weight_map.values())) if isinstance(weight_map, dict) else []
        for shard in shards:
            if not (path / shard).is_file():
                return f"{path / shard}, a shard listed in {path / name}, is missing"
        files = [path / shard for shard in shards]
    else:
        files = [path / name]
    for file in files:
        if file.suffix == ".safetensors":
            problem = safetensors_problem(file)
            if problem:
                return problem
        elif not zipfile.is_zipfile(file):  # torch.save writes zip archives; a cut one loses its directory
            return f"{file} is not a complete PyTorch weights archive; {_DAMAGED}"
    return None


def _json_problem(path: Path, names: tuple[str, ...]) -> str | None:
    for name in names:
        if (path / name).is_file():
            try:
                read_json_file(path / name)
            except UserError as exc:
                return str(exc)
    return None


def diagnose_model_dir(path: str | Path, weights: bool = True) -> str | None:
    """What is wrong with a local model directory, naming the file; None when nothing is.

    Args:
        path: The directory.
        weights: Also check the weight files (a from-scratch run needs only the config).
    """
    path = Path(path)
    if not (path / "config.json").is_file():
        return f"{path} is not a model directory (no config.json)"
    problem = _json_problem(path, JSON_FILES)
    if problem:
        return problem
    config = read_json_file(path / "config.json")
    if not isinstance(config, dict) or not config.get("model_type"):
        return f"{path / 'config.json'} names no model_type, so transformers cannot tell which model it describes"
    return _weights_problem(path) if weights else None


def local_model_dir(name: str) -> Path | None:
    """The local directory ``name`` refers to (``embedded`` included), or None for a Hub name."""
    if name == EMBEDDED:
        return Path(resolve_model_name(name))
    path = Path(name).expanduser()
    return path if path.is_dir() else None


def model_load_error(name: str, exc: BaseException, what: str = "model") -> UserError:
    """Turn a failed ``from_pretrained`` of ``what`` (model, tokenizer, model config) into one clear line."""
    if isinstance(exc, UserError):
        return exc
    directory = local_model_dir(name)
    if directory is not None:
        problem = diagnose_model_dir(directory, weights=what == "model")
        if problem:
            return UserError(problem)
        return UserError(f"cannot load the {what} in {directory}: {type(exc).__name__}: {_first_line(exc)}")
    return UserError(f"cannot load {what} {name!r} (not a local directory, and the Hub load failed: "
                     f"{_first_line(exc)})")


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
    from transformers import AutoTokenizer

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
    problem = _json_problem(path, JSON_FILES[:4])
    if problem:
        return UserError(problem)
    if not any((path / file).is_file() for file in TOKENIZER_FILES):
        return UserError(f"{path} holds no tokenizer (none of {', '.join(TOKENIZER_FILES)}); set model.tokenizer "
                         "or save the tokenizer next to the model")
    return UserError(f"cannot load the tokenizer in {path}: {type(exc).__name__}: {_first_line(exc)}")


def _hub_error(kind: str, name: str, exc: BaseException) -> UserError:
    return model_load_error(name, exc, kind)


def model_config_dict(model_cfg: Any) -> dict[str, Any] | None:
    """The ``config.json`` contents of the configured model, read without loading the model.

    Covers a local or ``embedded`` model directory (checked with :func:`diagnose_model_dir`,
    so a damaged one is a UserError naming the file), a config file, a preset (its
    positions), and a Hub model whose config is already in the local cache. None when the
    config cannot be had without the network. ``model.config_overrides`` apply to
    from-scratch models.
    """
    from mlmkit.modeling.presets import MAX_LENGTH, get_preset, is_from_scratch

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
        from huggingface_hub import try_to_load_from_cache

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
    from transformers import AutoModelForMaskedLM

    from mlmkit.modeling.presets import build_scratch_model, is_from_scratch

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
