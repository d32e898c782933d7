"""What every training run does last: its report files, then the optional upload to the Hub."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from mlmkit.io.outputs import write_text_atomic
from mlmkit.training.hub import push_after_run
from mlmkit.training.model_card import write_model_card
from mlmkit.training.run_plots import write_training_curves
from mlmkit.training.run_summary import RESULTS_FILE


def finish_run(run_dir: Path, output: Any, console: Any, results: Any = None) -> None:
    """What every run does last, on the main process: the report files, then the optional upload.

    Writes ``eval_results.json`` (when ``results``, a result dataclass, is given),
    ``training_curves.png`` and the model card, then pushes to the Hub if ``output.push_to_hub``.
    """
    if results is not None:
        write_text_atomic(run_dir / RESULTS_FILE, json.dumps(asdict(results), indent=2) + "\n")
    write_training_curves(run_dir)
    write_model_card(run_dir)
    push_after_run(output, run_dir, console)
