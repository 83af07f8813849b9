"""How a rank reads its data: the training order as a function of (seed, epoch), dealt to
ranks; validation by whole volumes; DataLoader workers that live across epochs, leave the
step's signals to the training process and send fixed-shape batches through ``BatchSlots``.
"""

from __future__ import annotations

import atexit
import math
import multiprocessing.util  # noqa: F401 - registers its exit hook (terminate, then join, live children) before ours
import signal
import weakref
from typing import Any, Iterator, Optional

import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, Sampler

from mrihpc.node.distributed import World
from mrihpc.node.datasets import Collated, EpochDependent
from mrihpc.node.slots import BatchSlots, IntoSlots, SlottedBatches

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


def _close_at_exit() -> None:
    """Shut down every loader's workers still alive at interpreter exit. atexit runs its hooks
    last-registered first, so this runs before multiprocessing's, whose SIGTERM the workers ignore
    and whose join() would then wait on them forever: a Trainer nobody closed (in a reference
    cycle, or kept by a traceback) would otherwise hang the process after its last line."""
    for workers in list(_LIVE):
        workers.close()


_LIVE: "weakref.WeakSet[Workers]" = weakref.WeakSet()
atexit.register(_close_at_exit)


class Workers:
    """A DataLoader whose worker processes are forked with the step's signals blocked (the
    training process gets its own signals once the workers exist), its batches copied out of
    their ``BatchSlots`` when it has them. ``batch_size``: samples per full batch."""

    def __init__(
        self,
        loader: DataLoader,
        batch_size: int,
        slots: Optional[BatchSlots] = None,
        pin: bool = False,
    ):
        self.loader, self.batch_size, self.slots, self.pin = loader, batch_size, slots, pin
        if loader.num_workers:
            _LIVE.add(self)

    def __iter__(self):
        if not self.loader.num_workers:
            return iter(self.loader)
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, STEP_SIGNALS)
        try:
            batches = iter(self.loader)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        return batches if self.slots is None else (self.slots.take(b, self.pin) for b in batches)

    def __len__(self) -> int:
        return len(self.loader)

    def close(self) -> None:
        """Stop the persistent workers now. They ignore SIGTERM (``leave_signals_to_parent``), so
        at interpreter exit multiprocessing's terminate() cannot stop them and its join() waits
        for their idle timeout loop forever; a failed point's traceback keeps the iterator alive
        past that exit, so its own ``__del__`` never runs first. The shutdown is the one torch
        runs from that ``__del__``."""
        iterator = getattr(self.loader, "_iterator", None)
        if iterator is not None and hasattr(iterator, "_shutdown_workers"):
            iterator._shutdown_workers()
        self.loader._iterator = None


def rank_loader(
    dataset: Dataset,
    sampler: Sampler,
    batch_size: int,
    drop_last: bool,
    workers: int,
    pin: bool,
    seed: int,
    keyed: Optional[Dataset] = None,
) -> Workers:
    """This rank's batches of ``dataset`` in ``sampler``'s order, read by ``workers`` processes that
    live across epochs (not re-forked, their files not re-opened, every epoch). ``keyed``: the
    dataset as the sampler's keys address it (``EpochIndexed(dataset)``), when not ``dataset``
    itself. The loader draws its workers' seeds from its own generator (seeded by ``seed``):
    creating an iterator must not draw from the global RNG, or a run resumed inside an epoch would
    see other dropout masks than the uninterrupted one."""
    source, collate = keyed or dataset, dataset.collate if isinstance(dataset, Collated) else None
    batches: Sampler = BatchSampler(sampler, batch_size, drop_last)
    slots = BatchSlots.for_loader(dataset, batch_size, workers, collate=collate)
    if slots is not None:
        source, batches, collate = (
            IntoSlots(source),
            SlottedBatches(batches, slots.count),
            slots.collate,
        )
    loader = DataLoader(
        source,
        batch_sampler=batches,
        collate_fn=collate,
        num_workers=workers,
        pin_memory=pin,
        worker_init_fn=leave_signals_to_parent if workers else None,
        persistent_workers=workers > 0,
        generator=torch.Generator().manual_seed(seed),
    )
    return Workers(loader, batch_size, slots, pin)


class EpochIndexed(Dataset):
    """The training set as workers that live across epochs see it: each index arrives with its
    epoch, ``(epoch, i)`` (``ShuffledShard`` yields them), and the worker's copy of the dataset gets
    ``set_epoch`` when the epoch changes; a ``set_epoch`` in the training process would not reach
    persistent workers, and the per-epoch draws (masks, crops) would repeat."""

    def __init__(self, dataset: Dataset):
        self.dataset, self.epoch = dataset, None
        self.follows_epochs = isinstance(dataset, EpochDependent)  # once: slow per item

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> Any:
        epoch, i = key
        if epoch != self.epoch and self.follows_epochs:
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
        return ((self.epoch, i) for i in order[self.world.rank :: self.world.size][self.skip :])

    def __len__(self) -> int:
        return math.ceil(self.size / self.world.size) - self.skip


class VolumeShard(Sampler[int]):
    """Whole volumes dealt round-robin to ranks, each volume's slices in order."""

    def __init__(self, volumes: list[list[int]], world: World):
        self.indices = [i for v in volumes[world.rank :: world.size] for i in v]

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)
