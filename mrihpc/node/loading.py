"""How a rank reads its data: the training order as a function of (seed, epoch), dealt to
ranks; validation by whole volumes; DataLoader workers that live across epochs and leave the
step's signals to the training process.
"""
from __future__ import annotations

import math
import signal
from typing import Any, Iterator

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from mrihpc.node.distributed import World

#: what Slurm sends every process of a step: TERM (preemption, requeue, scancel), USR2 (before the
#: time limit), INT
STEP_SIGNALS = (signal.SIGTERM, signal.SIGUSR2, signal.SIGINT)


def leave_signals_to_parent(worker_id: int) -> None:
    """DataLoader workers ignore the step's signals: the training process decides, checkpoints at
    a step boundary and shuts its workers down. A worker killed by the signal would instead crash
    the loader before that checkpoint. Workers start with the signals blocked (``Workers``), so
    one arriving before this runs stays pending, and setting SIG_IGN discards it."""
    for sig in STEP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STEP_SIGNALS)


class Workers:
    """A DataLoader whose worker processes are forked with the step's signals blocked; the
    training process gets its own signals once the workers exist."""

    def __init__(self, loader: DataLoader):
        self.loader = loader

    def __iter__(self):
        if not self.loader.num_workers:
            return iter(self.loader)
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, STEP_SIGNALS)
        try:
            return iter(self.loader)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)

    def __len__(self) -> int:
        return len(self.loader)


class EpochIndexed(Dataset):
    """The training set as workers that live across epochs see it: each index arrives with its
    epoch, ``(epoch, i)`` (``ShuffledShard`` yields them), and the worker's copy of the dataset gets
    ``set_epoch`` when the epoch changes; a ``set_epoch`` in the training process would not reach
    persistent workers, and the per-epoch draws (masks, crops) would repeat."""

    def __init__(self, dataset: Dataset):
        self.dataset, self.epoch = dataset, None

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> Any:
        epoch, i = key
        if epoch != self.epoch and hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)
        self.epoch = epoch
        return self.dataset[i]


class ShuffledShard(Sampler[tuple[int, int]]):
    """A permutation seeded by (seed, epoch), padded to a multiple of the world size and dealt
    to ranks like DistributedSampler; on one process it is a seeded shuffle. Yields
    ``(epoch, index)`` for ``EpochIndexed``."""

    def __init__(self, size: int, seed: int, world: World, shuffle: bool = True):
        self.size, self.seed, self.world, self.shuffle, self.epoch = size, seed, world, shuffle, 0
        self.skip = 0  # indices of this rank already consumed (resuming inside an epoch)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _order(self) -> list[int]:
        if not self.shuffle:
            return list(range(self.size))
        g = torch.Generator().manual_seed((self.seed * 1_000_003 + self.epoch) % 2**63)
        return torch.randperm(self.size, generator=g).tolist()

    def __iter__(self) -> Iterator[tuple[int, int]]:
        order = self._order()
        total = math.ceil(self.size / self.world.size) * self.world.size
        order += order[: total - len(order)]
        return ((self.epoch, i) for i in order[self.world.rank::self.world.size][self.skip:])

    def __len__(self) -> int:
        return math.ceil(self.size / self.world.size) - self.skip


class VolumeShard(Sampler[int]):
    """Whole volumes dealt round-robin to ranks, each volume's slices in order."""

    def __init__(self, volumes: list[list[int]], world: World):
        self.indices = [i for v in volumes[world.rank::world.size] for i in v]

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)
