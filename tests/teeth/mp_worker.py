"""One process of a multi-process run started by tests/teeth/test_multiprocess_equivalence.py.

Usage (through ``accelerate launch``): ``mp_worker.py synced|unsynced RANK_DIR MLMKIT_ARGS...``. Runs the
``mlmkit`` command line in this process, then saves this rank's trained weights as ``RANK_DIR/rank-<i>.pt``
(a suite's later runs as ``rank-<i>-run-<n>.pt``).
``unsynced`` is the control: every backward pass runs inside DDP's ``no_sync()``, so gradients are never
averaged across processes (patched here, in the test's worker, never in the library).
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path


def main(mode: str, rank_dir: str, argv: list[str]) -> None:
    import torch
    from accelerate import Accelerator

    from mlmkit.cli.app import app
    from mlmkit.modeling.sparse_head import SparseMLM

    prepared: list[torch.nn.Module] = []
    real_prepare = Accelerator.prepare

    def prepare(self, *args, **kwargs):
        out = real_prepare(self, *args, **kwargs)
        prepared.extend(o for o in (out if isinstance(out, tuple) else (out,)) if isinstance(o, torch.nn.Module))
        return out

    Accelerator.prepare = prepare
    if mode == "unsynced":
        real_accumulate = Accelerator.accumulate

        @contextlib.contextmanager
        def accumulate_without_sync(self, *models):
            with real_accumulate(self, *models), contextlib.ExitStack() as stack:
                for model in models:
                    stack.enter_context(model.no_sync())
                yield

        Accelerator.accumulate = accumulate_without_sync
    elif mode != "synced":
        raise SystemExit(f"unknown mode {mode!r}")
    app(args=argv, prog_name="mlmkit", standalone_mode=False)
    rank = int(os.environ.get("RANK", "0"))  # the process group may already be gone
    for number, prepared_model in enumerate(prepared):  # a suite trains one model per run
        model = getattr(prepared_model, "module", prepared_model)  # DDP -> the module it wraps
        model = model.model if isinstance(model, SparseMLM) else model
        weights = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        torch.save(weights, Path(rank_dir) / (f"rank-{rank}.pt" if number == 0 else f"rank-{rank}-run-{number}.pt"))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3:])
