"""The training blocks as the loop sees them: one object for map-style and streamed corpora.

The pre-training loop asks only for "the batches of the current epoch, from where this run
stands" (:meth:`BlockStream.epoch_batches`) and for a state to save and restore. Behind it a
map-style corpus is read through a seeded epoch sampler and Accelerate's sharded loader
(resuming skips the batches already seen), and a streamed corpus is split by process and
resumes from the position ``datasets`` saved for each process.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch
from accelerate.utils import gather_object
from datasets.distributed import split_dataset_by_node
from torch.utils.data import DataLoader

from mlmkit.data.sampler import EpochShuffleSampler
from mlmkit.errors import UserError
from mlmkit.training.checkpoint import TrainerState


class BlockStream:
    """Batches of training blocks for the loop, with their position in the corpus.

    Args:
        blocks: Training blocks: a ``datasets.Dataset`` or, for a streamed corpus, an ``IterableDataset``.
        accelerator: The run's ``Accelerator`` (sharding, process index).
        batch_size: Micro-batch size per process.
        collate: Pads a list of blocks into a batch (the collator's ``pad``).
        seed: Seed of the epoch shuffle.
        streaming: ``blocks`` is a stream (``data.streaming``).
        num_workers: DataLoader workers (map-style only; a stream is read in the main process).
    """

    def __init__(self, blocks: Any, accelerator: Any, batch_size: int, collate: Callable[[list], Any], seed: int,
                 streaming: bool = False, num_workers: int = 0) -> None:
        self.accelerator = accelerator
        self.streaming = streaming
        if streaming:
            # each process reads its own part of the stream; the position is saved per process
            self.blocks = split_dataset_by_node(blocks, accelerator.process_index, accelerator.num_processes)
            self.sampler = None
            self.loader = DataLoader(self.blocks, batch_size=batch_size, collate_fn=collate, num_workers=0)
            return
        self.blocks = blocks
        self.sampler = EpochShuffleSampler(len(blocks), seed)
        loader = DataLoader(
            blocks, batch_size=batch_size, sampler=self.sampler, collate_fn=collate,
            num_workers=num_workers, persistent_workers=num_workers > 0,
            # its own generator, so creating an iterator never draws from the global RNG (exact resume)
            generator=torch.Generator().manual_seed(seed), drop_last=False,
        )
        # batches stay on the CPU, where the masking strategies draw from CPU generators; the loop moves them
        self.loader = accelerator.prepare_data_loader(loader, device_placement=False)

    def epoch_batches(self, state: TrainerState) -> Iterator[Any]:
        """The padded batches of epoch ``state.epoch`` that this run has not consumed yet."""
        if self.streaming:
            self.blocks.set_epoch(state.epoch)  # a resumed stream continues from its saved position
            return iter(self.loader)
        self.sampler.use_epoch(state.epoch)
        if state.batches_in_epoch:
            return iter(self.accelerator.skip_first_batches(self.loader, state.batches_in_epoch))
        return iter(self.loader)

    def next_epoch(self, state: TrainerState, batches_seen: int) -> None:
        """Move ``state`` to the next epoch; an epoch with no batch at all means there is nothing to train on."""
        if batches_seen == 0 and state.batches_in_epoch == 0:
            raise UserError("no training blocks are left after holding out the evaluation blocks; "
                            "use more text or lower data.eval_max_blocks")
        state.epoch += 1
        state.batches_in_epoch = 0

    def state_dict(self) -> list[Any]:
        """Every process's position in a streamed corpus (empty for a map-style one, whose position is the state's)."""
        if not self.streaming:
            return []
        return gather_object([self.blocks.state_dict()])

    def load_state_dict(self, state: TrainerState, checkpoint: Any) -> None:
        """Continue from a checkpoint's position, possibly written by another number of processes."""
        world = self.accelerator.num_processes
        if self.streaming:
            if len(state.data_state) != world:
                raise UserError(f"{checkpoint} was written by {len(state.data_state)} process(es); a streamed "
                                f"corpus resumes only with the same number (got {world})")
            self.blocks.load_state_dict(state.data_state[self.accelerator.process_index])
        elif state.num_processes != world:
            # the data position is kept in samples, whatever the process count
            state.batches_in_epoch = state.batches_in_epoch * state.num_processes // world
            state.num_processes = world
