"""What the Trainer and its loaders ask of a workload's datasets, as typed protocols: every
set is a map-style ``torch.utils.data.Dataset`` of dict items; the rest is one of the protocols
here, which a workload's descriptor declares by name (``workloads.Datasets``) and the Trainer
checks against the sets at start (``check_declared``).
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Protocol, Sequence, runtime_checkable

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


#: ``workloads.DATASET_TRAITS`` name -> its protocol
PROTOCOLS: dict[str, type] = {
    "scored": ScoredSet,
    "epoch_dependent": EpochDependent,
    "slotted": Slotted,
    "collated": Collated,
}

#: what a set lacks, in words, per protocol
_OFFERS = {
    "scored": "volumes_index()",
    "epoch_dependent": "set_epoch(epoch)",
    "slotted": "slot_shapes()",
    "collated": "collate",
}


def followed(data: Any) -> set[str]:
    """The protocol names ``data`` follows."""
    return {name for name, proto in PROTOCOLS.items() if isinstance(data, proto)}


def check_declared(
    data: Any, declared: Sequence[str], what: str, unused: Sequence[str] = ()
) -> None:
    """TypeError naming ``what`` unless ``data`` follows exactly the ``declared`` protocols, those
    never asked of it (``unused``) aside: a declared one it lacks would fail later inside a
    loader; one it follows undeclared would be used behind the descriptor's back."""
    have = followed(data) - set(unused)
    missing = [n for n in declared if n not in have]
    if "scored" in missing:
        scored_set(data, what)  # the message that names volumes_index
    if missing:
        raise TypeError(
            f"{what} ({type(data).__name__}) lacks {', '.join(_OFFERS[n] for n in missing)}, "
            f"declared in its workload's datasets as {', '.join(missing)} (node/datasets.py)"
        )
    extra = sorted(have - set(declared))
    if extra:
        raise TypeError(
            f"{what} ({type(data).__name__}) offers {', '.join(_OFFERS[n] for n in extra)} but "
            f"its workload's datasets do not declare {', '.join(extra)}; add them to the "
            "descriptor's Datasets (workloads/__init__.py)"
        )
