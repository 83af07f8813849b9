"""What the Trainer and its loaders ask of a workload's datasets, as typed protocols: every
set is a map-style ``torch.utils.data.Dataset`` of dict items; the rest is declared here and
checked with ``isinstance``, not looked up by name where it is used.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Protocol, runtime_checkable

import torch


@runtime_checkable
class ScoredSet(Protocol):
    """A validation or test set: which items form one volume, so a volume is never split over
    ranks and is scored whole."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> dict: ...

    def volumes_index(self) -> list[list[int]]:
        """The item indices of each volume, in order."""


@runtime_checkable
class EpochDependent(Protocol):
    """A set whose items depend on the epoch (augmentation, training masks): its loader's workers
    are told when the epoch changes."""

    def set_epoch(self, epoch: int) -> None: ...


@runtime_checkable
class Slotted(Protocol):
    """A set whose items have fixed shapes: its batches can leave the workers through shared
    memory allocated once (``node.slots``)."""

    def slot_shapes(self) -> Optional[dict[str, tuple[tuple[int, ...], torch.dtype]]]: ...


@runtime_checkable
class Collated(Protocol):
    """A set that batches its own items (k-space of varying widths)."""

    collate: Callable[[list[dict]], Any]


def scored_set(data: Any, what: str) -> ScoredSet:
    """``data`` when it is a ScoredSet; else TypeError naming ``what`` and what is missing."""
    if not isinstance(data, ScoredSet):
        raise TypeError(
            f"{what} ({type(data).__name__}) has no volumes_index(): a validation or "
            "test set says which items form one volume (node/datasets.py ScoredSet)"
        )
    return data
