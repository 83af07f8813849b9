"""The Task interface: what one workload supplies; the Trainer owns everything else.

A task builds its datasets and networks, and says how one training batch updates them
(``train_step``) and what one validation batch yields (``eval_step``: per-item outputs keyed by
the volume, case or image they belong to) and how a key's outputs are scored (``score``); the
Trainer runs the loops, moves batches to the device, shards volumes over ranks and gathers the
scores. Networks and
optimisers are named, so a GAN (generator + discriminator, two optimisers, alternating
steps), a CycleGAN (four networks) or a two-U-Net cine model fit without touching the
Trainer: ``train_step`` calls ``ctx.step(loss, "name")`` for each optimiser it updates.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Hashable, Optional, Protocol, Sequence

import torch
from torch import nn
from torch.utils.data import Dataset

from mrihpc.node.distributed import World
from mrihpc.paths import atomic_write_bytes
from mrihpc.spec import JobSpec
from mrihpc.workloads import Workload


#: key of a row that scores a batch rather than a volume (``Evaluated.batch_rows``: a seed's
#: per-batch metric): its values are averaged with the other rows holding the same keys, and it is
#: not counted as a volume (``val_volumes``)
BATCH_ROW = "_batch_row"


@dataclass
class Evaluated:
    """What ``Task.eval_step`` makes of one validation batch (already on the device)."""

    parts: list[tuple[Hashable, dict[str, Any]]]
    """``(key, outputs)`` per item: the key names what is scored as one (a volume's slices share
    it; a case or an image has its own). The Trainer collects each key's outputs, in loader
    order, over the batches and passes them to ``Task.score``."""
    batch_rows: list[dict[str, float]] = field(default_factory=list)
    """Metrics of the batch as a whole (a seed's per-batch definition): averaged over the batches,
    not counted as volumes."""
    preview: Optional[dict[str, torch.Tensor]] = None
    """When asked for (rank 0's first batch): name -> ``(H, W)`` image on the CPU for the live
    plots, e.g. input, prediction, target, error."""


class StepContext(Protocol):
    """What the Trainer lends a task during one training step."""

    def autocast(self) -> Any:
        """Context manager running the forward pass in the spec's precision."""

    def lr(self, optimizer: str = "main") -> float:
        """The named optimiser's current learning rate."""

    def step(self, loss: torch.Tensor, optimizer: str | Sequence[str] = "main") -> None:
        """Backward ``loss`` (scaled for fp16), clip, step the named optimiser(s) and
        schedule(s)."""


@dataclass
class TaskContext:
    """Where a task runs: the ranks, the point's folder (None outside a run: a benchmark, a
    test) and the epoch being trained (the Trainer advances it). The task writes to the point
    folder and prints through it, once (rank 0), and never through a link."""

    world: World
    point_dir: Optional[Path] = None
    epoch: int = 0

    @property
    def is_main(self) -> bool:
        return self.world.is_main

    def write(self, name: str, data: bytes | str) -> Optional[Path]:
        """Rank 0 writes ``<point folder>/<name>`` whole (readers never see half of it); nothing
        on the other ranks or without a point folder. Returns the path written, or None."""
        if self.point_dir is None or not self.is_main:
            return None
        path = Path(self.point_dir) / name
        atomic_write_bytes(path, data.encode() if isinstance(data, str) else data)
        return path

    def log(self, message: str) -> None:
        """``[mrihpc] message`` on rank 0's output (the point's log)."""
        if self.is_main:
            print(f"[mrihpc] {message}", flush=True)


class Task:
    """Base class of every workload."""

    #: the descriptor this task belongs to (its losses, metrics and directions)
    workload: Workload

    def __init__(self, spec: JobSpec, context: TaskContext | World):
        """``context``: a World alone gives a context without a point folder."""
        self.spec = spec
        self.ctx = context if isinstance(context, TaskContext) else TaskContext(context)

    @property
    def world(self) -> World:
        return self.ctx.world

    def datasets(self) -> tuple[Dataset, Dataset]:
        """(train, validation), following the protocols the workload's descriptor declares
        (``Workload.datasets``, checked at start): the validation set offers at least
        ``volumes_index() -> list[list[int]]``, the item indices of each volume, so a volume is
        never split across ranks."""
        raise NotImplementedError

    def test_dataset(self) -> Optional[Dataset]:
        """The test split with targets, built like the validation set (``volumes_index`` too),
        scored once when training ends, with best.pt and with last.pt (``test_*``,
        ``test_last_*``); never used to choose a model. None: no test split with targets."""
        return None

    def networks(self) -> dict[str, nn.Module]:
        raise NotImplementedError

    def optimizers(self, networks: Sequence[str]) -> dict[str, list[str]]:
        """Optimiser name -> the networks it updates, from the one declaration the spec validates
        ``optim:`` against (the descriptor's ``optimizers`` / ``optimizers_of``): ``main``
        updates every network; otherwise each optimiser updates the network of its name, and a
        network without one (or an optimiser without its network) is an error here, not a
        network silently left untrained."""
        from mrihpc import workloads

        names = workloads.get(self.spec.task).built_optimizers(
            {"model": self.spec.model.model_dump()}
        )
        if tuple(names) == ("main",):
            return {"main": list(networks)}
        if set(names) != set(networks):
            raise ValueError(
                f"task {self.spec.task}: its model builds networks {', '.join(networks)} but "
                f"declares optimisers {', '.join(names)}; each network needs the optimiser of its "
                "name"
            )
        return {name: [name] for name in names}

    def on_device(self, batch: dict) -> dict:
        """The batch once on the training device, before ``train_step`` or ``eval_step`` sees it:
        where a workload runs batched transforms on the GPU."""
        return batch

    def train_step(
        self, batch: dict, nets: dict[str, nn.Module], ctx: StepContext
    ) -> dict[str, float]:
        """Update the networks on one batch; return scalars to log (at least ``loss``)."""
        raise NotImplementedError

    def eval_batch_size(self, split: str) -> Optional[int]:
        """Samples per batch on each rank when ``split`` (val, test or a name of ``also_scored``)
        is scored; None: the training batch per rank. A workload whose metric is defined over
        fixed batches (a seed's) sets its own."""
        return None

    def eval_step(self, batch: dict, nets: dict[str, nn.Module], preview: bool) -> Evaluated:
        """One validation batch through the networks (eval mode, no gradients, float32):
        per-item outputs keyed by what they belong to, and the preview images when asked."""
        raise NotImplementedError

    def score(self, key: Hashable, parts: list[dict[str, Any]]) -> dict[str, float]:
        """The metrics of one key (a volume from its slices' outputs, in order). Default: a key
        has one part, which holds its metrics already."""
        if len(parts) != 1:
            raise ValueError(
                f"{type(self).__name__}: {len(parts)} outputs for {key!r}; score() must "
                "combine them"
            )
        return parts[0]

    def also_scored(self) -> dict[str, Any]:
        """Other sets scored at every validation, name -> dataset (``volumes_index`` too), logged
        as ``val_<name>_<metric>``: synthesis scores its training subjects beside the held-out
        ones."""
        return {}


def to_device(value: Any, device: torch.device) -> Any:
    """Tensors (also inside lists and tuples) moved to ``device``; anything else as it is."""
    if torch.is_tensor(value):
        return value.to(device, non_blocking=True)
    if isinstance(value, (list, tuple)) and any(torch.is_tensor(v) for v in value):
        return type(value)(to_device(v, device) for v in value)
    return value
