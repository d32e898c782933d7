"""One process of a multi-process pre-training run started by tests/teeth/test_multiprocess_equivalence.py.

Usage (through ``accelerate launch``): ``mp_worker.py synced|unsynced OVERRIDES...``. Runs
:func:`mlmkit.training.pretrain.pretrain` and then saves this rank's weights as ``rank-<i>.pt`` in
``output.dir``. ``unsynced`` is the control: every backward pass runs inside DDP's ``no_sync()``, so
gradients are never averaged across processes (patched here, in the test's worker, not in the library).
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path


def main(mode: str, overrides: list[str]) -> None:
    import torch
    from accelerate import Accelerator

    from mlmkit.config import PretrainConfig, load_config
    from mlmkit.training import pretrain as pretrain_module

    models = []
    real_evaluate = pretrain_module.evaluate_mlm

    def evaluate(model, batches, accelerator=None):
        models.append(model)
        return real_evaluate(model, batches, accelerator)

    pretrain_module.evaluate_mlm = evaluate
    if mode == "unsynced":
        real_accumulate = Accelerator.accumulate

        @contextlib.contextmanager
        def accumulate_without_sync(self, *wrapped):
            with real_accumulate(self, *wrapped), contextlib.ExitStack() as stack:
                for model in wrapped:
                    stack.enter_context(model.no_sync())
                yield

        Accelerator.accumulate = accumulate_without_sync
    elif mode != "synced":
        raise SystemExit(f"unknown mode {mode!r}")
    cfg = load_config(PretrainConfig, None, overrides)
    pretrain_module.pretrain(cfg)
    rank = int(os.environ.get("RANK", "0"))  # the process group may already be gone after end_training
    model = models[-1]
    inner = getattr(model, "module", model).model  # DDP -> SparseMLM -> the transformers model
    torch.save({k: v.detach().cpu() for k, v in inner.state_dict().items()}, Path(cfg.output.dir) / f"rank-{rank}.pt")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
