"""Upload a run directory to the Hugging Face Hub with ``huggingface_hub`` (``create_repo``, ``upload_folder``).

The model, tokenizer, model card, ``training_curves.png``, ``config.yaml`` and ``metrics.jsonl``
go up; checkpoints, tracker logs and hidden files (staging folders, caches) stay local. Every
failure a user can meet (offline, no token, no network, a refused request) is one ``UserError``
line, and the local run is left as it was.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from huggingface_hub import constants
from huggingface_hub.errors import HfHubHTTPError
from huggingface_hub.utils import HFValidationError, validate_repo_id

from mlmkit.errors import UserError, first_line
from mlmkit.training.model_card import card_repo_id, write_model_card

#: what never goes to the Hub (fnmatch patterns on paths inside the run directory)
IGNORE_PATTERNS = ["checkpoints/*", "logs/*", ".*", "*/.*", "__pycache__/*", "*/__pycache__/*"]


def check_push_settings(output: Any) -> None:
    """Check ``output.push_to_hub`` / ``output.hub_repo_id`` before a run starts.

    Raises:
        UserError: ``push_to_hub`` without a repository id, or an id the Hub cannot accept.
    """
    if output.hub_repo_id is not None:
        _validate_repo_id(output.hub_repo_id)
    if output.push_to_hub and not output.hub_repo_id:
        raise UserError("output.push_to_hub=true needs output.hub_repo_id (e.g. output.hub_repo_id=you/my-mlm)")


def _validate_repo_id(repo_id: str) -> None:
    try:
        validate_repo_id(repo_id)
    except HFValidationError as exc:
        raise UserError(f"invalid Hub repository id {repo_id!r}: {str(exc).splitlines()[0]}") from exc


def _network_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean "the Hub could not be reached or refused": HTTP-library errors vary by version."""
    errors: list[type[BaseException]] = [OSError, ValueError, HfHubHTTPError]
    for module in ("httpx2", "httpx", "requests"):
        try:
            errors.append(importlib.import_module(module).HTTPError)
        except (ImportError, AttributeError):
            continue
    return tuple(errors)


def push_run(run_dir: str | Path, repo_id: str, private: bool = False, revision: str | None = None,
             token: str | None = None, endpoint: str | None = None) -> str:
    """Create (or reuse) ``repo_id`` and upload the run directory to it.

    Once the repository exists, a model card that names another model id in its usage snippet
    is rewritten to name ``repo_id`` (so the Hub page shows how to load it from there).

    Args:
        run_dir: A model directory written by ``mlmkit pretrain`` / ``finetune``.
        repo_id: ``namespace/name`` on the Hub.
        private: Create the repository as private (an existing repository keeps its visibility).
        revision: Branch to upload to; created from the default branch if missing.
        token: Hub token; default: the one ``hf auth login`` stored, or ``HF_TOKEN``.
        endpoint: Hub address; default: ``HF_ENDPOINT`` or huggingface.co.

    Returns:
        The URL of the uploaded commit.

    Raises:
        UserError: Not a model directory, offline mode, no token, or any network / Hub failure.
    """
    # lazy: looked up at each call, so a replaced huggingface_hub.HfApi or get_token (a fake Hub in tests) is used
    from huggingface_hub import HfApi, get_token

    run = Path(run_dir).expanduser()
    if not (run / "config.json").is_file():
        raise UserError(f"{run} is not a saved model directory (no config.json); push a finished run")
    _validate_repo_id(repo_id)
    if constants.is_offline_mode():
        raise UserError("cannot push: the Hugging Face Hub is switched off here (HF_HUB_OFFLINE=1); "
                        "unset HF_HUB_OFFLINE on a machine that reaches the Hub")
    token = token or get_token()
    if not token:
        raise UserError("cannot push: no Hugging Face token; run `hf auth login` or set HF_TOKEN")
    api = HfApi(endpoint=endpoint, token=token)
    where = endpoint or constants.ENDPOINT
    try:
        api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        if revision:
            api.create_branch(repo_id, branch=revision, exist_ok=True)
        _card_names_repo(run, repo_id)
        commit = api.upload_folder(repo_id=repo_id, folder_path=run, revision=revision,
                                   ignore_patterns=IGNORE_PATTERNS,
                                   commit_message=f"Upload {run.name} with mlmkit")
    except _network_errors() as exc:
        raise UserError(f"cannot push {run} to {repo_id} on {where}: {first_line(exc)}") from exc
    return str(getattr(commit, "commit_url", commit))


def _card_names_repo(run: Path, repo_id: str) -> None:
    """Re-render an mlmkit model card so that its usage snippet loads ``repo_id``."""
    if (run / "README.md").is_file() and (run / "config.yaml").is_file() and card_repo_id(run) != repo_id:
        write_model_card(run, repo_id=repo_id)


def push_after_run(output: Any, run_dir: Path, console: Any) -> None:
    """``output.push_to_hub``: upload the finished run and say where it went."""
    if not output.push_to_hub:
        return
    url = push_run(run_dir, output.hub_repo_id)
    console.print(f"pushed {run_dir} to {url}", highlight=False, soft_wrap=True)
