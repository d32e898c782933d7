"""Experiment trackers through Accelerate, fed with the same records as ``metrics.jsonl``.

``train.report_to`` names Accelerate trackers (TensorBoard, Trackio, Weights & Biases,
MLflow, ...). Accelerate's ``Accelerator(log_with=...)``, ``init_trackers`` and ``log``
do the writing; this module checks the names up front (a tracker that is not installed
is an error, where Accelerate would skip it silently) and forwards every ``metrics.jsonl``
record to the trackers as ``<split>/<key>`` at its optimizer step: ``train/loss``,
``train/mask_ratio``, ``train/pos_loss/NOUN``, ``eval/masked_accuracy``, ...
"""

from __future__ import annotations

import difflib
import json
from pathlib import Path
from typing import Any

import accelerate.utils

from mlmkit.config.loading import config_to_dict
from mlmkit.errors import UserError
from mlmkit.io.outputs import MetricsLog
from mlmkit.training.hub import check_push_settings

#: Accelerate's tracker names and the PyPI package that provides each
TRACKER_PACKAGES = {
    "tensorboard": "tensorboard",
    "trackio": "trackio",
    "wandb": "wandb",
    "mlflow": "mlflow",
    "comet_ml": "comet-ml",
    "aim": "aim",
    "clearml": "clearml",
    "dvclive": "dvclive",
    "swanlab": "swanlab",
}
#: folder of the run directory where local trackers (TensorBoard) write
LOGS_DIR = "logs"
#: the project name trackers group runs under (TensorBoard: a sub-folder of ``logs``)
PROJECT = "mlmkit"
#: record fields that are bookkeeping, not curves
_NOT_LOGGED = {"step", "split", "elapsed_s", "most_frequent_token"}


def tracker_names(report_to: Any) -> list[str]:
    """Normalise ``train.report_to`` to Accelerate tracker names, checking each is known and installed.

    Args:
        report_to: ``'none'``/``None``, one name, a comma-separated string or a list of names;
            ``'all'`` means every installed tracker.

    Raises:
        UserError: For an unknown name, or a tracker whose package is not installed.
    """
    raw = report_to.split(",") if isinstance(report_to, str) else list(report_to or [])
    names = list(dict.fromkeys(str(name).strip().lower() for name in raw if str(name).strip()))
    if names in ([], ["none"]):
        return []
    if "none" in names:
        raise UserError(f"train.report_to: 'none' cannot be combined with trackers (got {', '.join(names)})")

    def installed(name: str) -> bool:
        return getattr(accelerate.utils, f"is_{name}_available")()

    if "all" in names:
        return [name for name in TRACKER_PACKAGES if installed(name)]
    for name in names:
        if name not in TRACKER_PACKAGES:
            close = difflib.get_close_matches(name, list(TRACKER_PACKAGES), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise UserError(f"unknown tracker {name!r} in train.report_to{hint} "
                            f"(Accelerate supports: none, all, {', '.join(TRACKER_PACKAGES)})")
        if not installed(name):
            raise UserError(f"train.report_to asks for {name}, which is not installed: "
                            f"pip install {TRACKER_PACKAGES[name]}")
    return names


def reporting_options(cfg: Any) -> dict[str, Any]:
    """``build_accelerator`` keyword arguments for a run's trackers, checked before anything runs.

    Also checks the Hub settings (``output.push_to_hub`` needs a valid ``output.hub_repo_id``),
    so a misconfigured upload fails before training rather than after it.
    """
    check_push_settings(cfg.output)
    return {"log_with": tracker_names(cfg.train.report_to),
            "logging_dir": str(Path(cfg.output.dir).expanduser() / LOGS_DIR)}


def flat_config(cfg: Any) -> dict[str, bool | int | float | str | None]:
    """The resolved config as ``section.key -> scalar`` (lists and mappings inside ``masking`` as JSON text).

    TensorBoard's hyper-parameter table takes only scalars; other trackers accept them too.
    """
    flat: dict[str, Any] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict) and value:
            for key, item in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), item)
        elif value is None or isinstance(value, bool | int | float | str):
            flat[prefix] = value
        else:
            flat[prefix] = json.dumps(value)

    walk("", config_to_dict(cfg))
    return flat


class TrackedMetricsLog(MetricsLog):
    """``metrics.jsonl`` (unchanged format) whose every record also goes to the Accelerate trackers."""

    def __init__(self, path: Path, accelerator: Any) -> None:
        super().__init__(path, enabled=accelerator.is_main_process)
        self.accelerator = accelerator
        self.tracking = bool(accelerator.log_with)

    def write(self, **record: Any) -> None:
        """Append ``record`` to ``metrics.jsonl`` and log its numbers as ``<split>/<key>`` at ``record['step']``."""
        super().write(**record)
        if not self.tracking:
            return
        split = record.get("split", "train")
        values = {f"{split}/{key}": float(value) for key, value in record.items()
                  if key not in _NOT_LOGGED and isinstance(value, int | float) and not isinstance(value, bool)}
        if values:
            self.accelerator.log(values, step=int(record["step"]))


def open_metrics_log(accelerator: Any, cfg: Any, out: Path) -> TrackedMetricsLog:
    """Start the configured trackers (resolved config as hyper-parameters) and open ``<out>/metrics.jsonl``.

    Args:
        accelerator: Built with :func:`reporting_options`; trackers are started on the main process only.
        cfg: The run's resolved config.
        out: The run directory.
    """
    if accelerator.log_with:
        run_name = str(cfg.output.dir)
        accelerator.init_trackers(PROJECT, config=flat_config(cfg), init_kwargs={
            "wandb": {"name": run_name}, "trackio": {"name": run_name}, "mlflow": {"run_name": run_name},
        })
    return TrackedMetricsLog(out / "metrics.jsonl", accelerator)
