"""Batches that leave DataLoader workers through shared memory allocated once.

A DataLoader worker sends every tensor of a batch through a new shared-memory file: created,
sized, page-faulted in as the batch is stacked, its descriptor sent over a socket and mapped
again by the training process. For the knee pipeline (two ``(4, 1, 320, 320)`` float32 tensors
a batch) that costs as much CPU as reading and transforming the slices (measured on 2 cores:
3.2 ms of worker CPU a slice with it, 1.9 ms without).

``BatchSlots`` allocates ``count`` batch-sized blocks of shared memory in the training process
before the workers fork, so every worker maps the same pages. ``SlottedBatches`` tags the i-th
batch of an epoch with slot ``i % count``; the worker stacks the batch's fixed-shape tensors into
that slot (``collate``) and sends only the rest (lists, numbers, names) and the slot number. The
training process copies the slot out (``take``) before the slot can be written again: the
DataLoader has at most ``prefetch_factor * workers`` batches in flight beyond the one it hands
over, so ``prefetch_factor * workers + 2`` slots are never written while they are read.

A dataset opts in with ``slot_shapes()``: each key whose tensor (or NumPy array) has one shape in
every sample, ``{key: (shape, dtype)}`` per sample, or None (shapes vary: the DataLoader's own path
is taken). The knee reconstruction slices do (with ``data.transform_on: device``, their targets;
the sampled k-space columns vary in number); the other workloads' samples are a fraction of their
size and take the DataLoader's path.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator, Optional

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler, default_collate

from mrihpc.data import DataError
from mrihpc.node.datasets import Slotted

NUMPY_DTYPES = {
    torch.float32,
    torch.float64,
    torch.float16,
    torch.complex64,
    torch.complex128,
    torch.int64,
    torch.int32,
    torch.int16,
    torch.int8,
    torch.uint8,
    torch.bool,
}
#: the key a sample and a batch carry their slot number under, between worker and training process
SLOT = "_slot"


class BatchSlots:
    """``count`` blocks of shared memory, each holding one batch of every slotted key:
    ``blocks[slot][key]`` is ``(batch_size, *shape)``."""

    def __init__(
        self,
        shapes: dict[str, tuple[tuple[int, ...], torch.dtype]],
        batch_size: int,
        count: int,
        collate: Optional[Callable[[list], Any]] = None,
    ):
        self.shapes, self.count = shapes, count
        self.blocks = [
            {
                k: torch.empty((batch_size, *shape), dtype=dtype).share_memory_()
                for k, (shape, dtype) in shapes.items()
            }
            for _ in range(count)
        ]
        self.rest = (
            collate or default_collate
        )  # the dataset's own collate, for the keys that stay inline

    @classmethod
    def for_loader(
        cls,
        dataset: Dataset,
        batch_size: int,
        workers: int,
        prefetch_factor: int = 2,
        collate: Optional[Callable[[list], Any]] = None,
    ) -> Optional["BatchSlots"]:
        """Slots for a DataLoader over ``dataset`` with ``workers`` processes; None when there are
        no workers (batches never leave the process) or the dataset's shapes vary."""
        shapes = dataset.slot_shapes() if isinstance(dataset, Slotted) else None
        if not workers or not shapes:
            return None
        return cls(shapes, batch_size, prefetch_factor * workers + 2, collate)

    def collate(self, samples: list[dict]) -> dict:
        """In a worker: stack each slotted key into the batch's slot, the rest through the dataset's
        collate. Returns the rest and ``{SLOT: (slot, n)}``."""
        slot, n = samples[0][SLOT], len(samples)
        for key, (shape, _) in self.shapes.items():
            for s in samples:
                if tuple(s[key].shape) != shape:
                    raise DataError(
                        f"sample {s.get('fname', '?')} slice {s.get('slice', '?')}: {key} "
                        "has shape "
                        f"{tuple(s[key].shape)}, the dataset declared {shape} for every sample"
                    )
            torch.stack([torch.as_tensor(s[key]) for s in samples], out=self.blocks[slot][key][:n])
        rest = self.rest(
            [{k: v for k, v in s.items() if k not in self.shapes and k != SLOT} for s in samples]
        )
        return rest | {SLOT: (slot, n)}

    def take(self, batch: dict, pin: bool = False) -> dict:
        """In the training process: the batch with its slotted tensors copied out of the slot (into
        page-locked memory when ``pin``, for asynchronous copies to the GPU). The copy is NumPy's,
        single-threaded: torch would split it over OpenMP threads that wait on cores the workers
        hold."""
        slot, n = batch.pop(SLOT)
        out = {}
        for key, block in self.blocks[slot].items():
            source = block[:n]
            copy = torch.empty(source.shape, dtype=source.dtype, pin_memory=pin)
            if source.dtype in NUMPY_DTYPES:
                np.copyto(copy.numpy(), source.numpy())
            else:  # bfloat16 and such have no NumPy twin
                copy.copy_(source)
            out[key] = copy
        return batch | out


class SlottedBatches(Sampler[list]):
    """A batch sampler's batches with each key tagged by its batch's slot:
    ``[(slot, key), ...]``."""

    def __init__(self, batches: Sampler, count: int):
        self.batches, self.count = batches, count

    def __iter__(self) -> Iterator[list]:
        for i, keys in enumerate(self.batches):
            yield [(i % self.count, key) for key in keys]

    def __len__(self) -> int:
        return len(self.batches)


class IntoSlots(Dataset):
    """``dataset`` read by ``(slot, key)``: the sample at ``key`` with its slot number under
    ``SLOT``."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, tagged: tuple[int, Any]) -> dict:
        slot, key = tagged
        return self.dataset[key] | {SLOT: slot}
