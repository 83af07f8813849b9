"""The Task interface: what one workload supplies; the Trainer owns everything else.

A task builds its datasets and networks, and says how one training batch updates them
(``train_step``) and how validation volumes are scored (``evaluate``). Networks and
optimisers are named, so a GAN (generator + discriminator, two optimisers, alternating
steps), a CycleGAN (four networks) or a two-U-Net cine model fit without touching the
Trainer: ``train_step`` calls ``ctx.step(loss, "name")`` for each optimiser it updates.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Protocol, Sequence

import torch
from torch import nn
from torch.utils.data import Dataset

from mrihpc.node.distributed import World
from mrihpc.spec import JobSpec
from mrihpc.workloads import Workload


#: key of a row of ``Task.evaluate`` that scores a batch rather than a volume (a seed's per-batch
#: metric): its values are averaged with the other rows holding the same keys, and it is not
#: counted as a volume (``val_volumes``)
BATCH_ROW = "_batch_row"


class StepContext(Protocol):
    """What the Trainer lends a task during one training step."""

    def autocast(self) -> Any:
        """Context manager running the forward pass in the spec's precision."""

    def lr(self, optimizer: str = "main") -> float:
        """The named optimiser's current learning rate."""

    def step(self, loss: torch.Tensor, optimizer: str | Sequence[str] = "main") -> None:
        """Backward ``loss`` (scaled for fp16), clip, step the named optimiser(s) and schedule(s)."""


class Task:
    """Base class of every workload."""

    #: the descriptor this task belongs to (its losses, metrics and directions)
    workload: Workload

    #: the point's folder when the runner knows it (a task may record e.g. its split there)
    point_dir: Optional[Path] = None

    #: the epoch being trained and evaluated (set by the Trainer), e.g. to name per-epoch outputs
    epoch: int = 0

    def __init__(self, spec: JobSpec, world: World):
        self.spec, self.world = spec, world

    def datasets(self) -> tuple[Dataset, Dataset]:
        """(train, validation). The validation set must offer ``volumes() -> list[list[int]]``:
        the sample indices of each volume, so a volume is never split across ranks."""
        raise NotImplementedError

    def test_dataset(self) -> Optional[Dataset]:
        """The test split with targets, built like the validation set (``volumes_index`` too),
        scored once when training ends, with best.pt and with last.pt (``test_*``,
        ``test_last_*``); never used to choose a model. None: no test split with targets."""
        return None

    def networks(self) -> dict[str, nn.Module]:
        raise NotImplementedError

    def optimizers(self, networks: Sequence[str]) -> dict[str, list[str]]:
        """Optimiser name -> the networks it updates. Default: one optimiser for all."""
        return {"main": list(networks)}

    def on_device(self, batch: dict) -> dict:
        """The batch once on the training device, before ``train_step`` (and, by the task's own
        call, ``evaluate``) sees it: where a workload runs batched transforms on the GPU."""
        return batch

    def train_step(self, batch: dict, nets: dict[str, nn.Module], ctx: StepContext) -> dict[str, float]:
        """Update the networks on one batch; return scalars to log (at least ``loss``)."""
        raise NotImplementedError

    def evaluate(self, loader: Any, nets: dict[str, nn.Module]) -> list[dict[str, float]]:
        """Score this rank's validation volumes: one dict of metrics per volume."""
        raise NotImplementedError

    def preview(self) -> Optional[dict[str, torch.Tensor]]:
        """Images from the last ``evaluate`` for live plots: name -> (H, W), e.g. input,
        prediction, target, error. None: nothing to show."""
        return None


def to_device(value: Any, device: torch.device) -> Any:
    """Tensors (also inside lists and tuples) moved to ``device``; anything else as it is."""
    if torch.is_tensor(value):
        return value.to(device, non_blocking=True)
    if isinstance(value, (list, tuple)) and any(torch.is_tensor(v) for v in value):
        return type(value)(to_device(v, device) for v in value)
    return value
