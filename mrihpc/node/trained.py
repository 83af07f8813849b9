"""A trained point, ready to predict: the one place that rebuilds a point's networks and loads
its weights. Every workload's ``predict`` gets a ``Trained`` and writes only its own format.

The networks come from the point's own Task (as training built them), hold best.pt's or
last.pt's weights, sit in eval mode on the prediction device (the GPU where there is one), and
run in float32, as the Trainer's validation does: the predictions are what the scores in
metrics.jsonl were computed from. A forward pass takes a training batch on the GPU; on the CPU
it takes what it can without losing speed (``CPU_PASS_VALUES``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence, TypeVar

import numpy as np
import torch
from torch import nn

from mrihpc import workloads
from mrihpc.node import checkpoint
from mrihpc.node.distributed import World
from mrihpc.node.task import Task, TaskContext
from mrihpc.paths import PointPaths, RunPaths
from mrihpc.spec import JobSpec
from mrihpc.specfile import load_point_spec

T = TypeVar("T")

#: on the CPU, the most input values one forward pass takes. oneDNN's convolutions spread one
#: image over every core already; a batch of large images only spills the activations out of the
#: cache. Measured on a 2-core CPU (fastMRI U-Net, chans 32, 4 pools; slices/s at batch 1, 2, 4,
#: 8): 64x64 123, 175, 157, 181; 128x128 46, 45, 44, 36; 320x320 7.7, 6.5, 4.6, 4.1.
CPU_PASS_VALUES = 2**15


@dataclass
class Trained:
    """``nets``: name -> network on ``device``, eval mode, weights of ``which`` (best or last)."""

    paths: PointPaths
    spec: JobSpec
    task: Task
    nets: dict[str, nn.Module]
    device: torch.device
    which: str
    batch_size: int  # the most samples per forward pass
    batch_fixed: bool = False  # batch_size was asked for: every pass takes it, on any device

    def output_dir(self, split: str) -> Path:
        """``predictions/<split>/`` for best.pt, ``predictions/<split>_last/`` for last.pt."""
        return self.paths.prediction_dir(split, self.which)

    def on_device(self, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(t.to(self.device, non_blocking=True) for t in tensors)

    def batch_for(self, shape: Sequence[int]) -> int:
        """Samples per forward pass for network inputs of one sample's ``shape`` (no batch
        dimension): ``batch_size``, on the CPU no more than ``CPU_PASS_VALUES`` values a pass
        unless ``batch_fixed``."""
        if self.batch_fixed or self.device.type != "cpu":
            return self.batch_size
        values = max(1, int(np.prod(shape)))
        return max(1, min(self.batch_size, CPU_PASS_VALUES // values))

    def batches(self, count: int, first_input: Callable[[], Any]) -> Iterator[range]:
        """``range(count)`` in consecutive runs of ``batch_for`` the first sample's input
        (``first_input()``: an array or tensor, read only when ``count`` > 0)."""
        if count:
            yield from chunks(range(count), self.batch_for(tuple(first_input().shape)))


def prediction_device() -> torch.device:
    """The job's GPU (one is asked for: ``launch.submit_prediction``), else the CPU."""
    return (
        torch.device("cuda", torch.cuda.current_device())
        if torch.cuda.is_available()
        else torch.device("cpu")
    )


def load_trained(
    run_dir: Path,
    index: int,
    device: Optional[torch.device] = None,
    which: str = "best",
    batch_size: Optional[int] = None,
) -> Trained:
    """Point ``index`` of the run at ``run_dir`` with its ``which`` checkpoint (``best``: best.pt,
    else last.pt when no epoch was validated; ``last``: last.pt), on ``device`` (default
    ``prediction_device()``), predicting ``batch_size`` samples per forward pass (default:
    training's batch, which the device held with gradients, so it holds it without; on the CPU
    fewer where the samples are large, ``Trained.batch_for``)."""
    paths = RunPaths(Path(run_dir)).point(index)
    spec = load_point_spec(paths)
    device = device or prediction_device()
    task = workloads.resolve(workloads.get(spec.task).task)(
        spec, TaskContext(World(device=device), paths.root)
    )
    weights = checkpoint.trained_nets(paths.best_checkpoint, paths.last_checkpoint, which)
    nets = task.networks()
    for name, net in nets.items():
        if name in weights:  # every trained network (a CycleGAN's four); predictions use some
            net.load_state_dict(weights[name])
        nets[name] = net.to(device).eval()
    missing = [name for name in nets if name not in weights]
    if missing:
        raise checkpoint.CheckpointError(
            f"{paths.root}: {which}.pt holds no weights of {', '.join(missing)}"
        )
    return Trained(
        paths,
        spec,
        task,
        nets,
        device,
        which,
        max(1, batch_size or spec.train.batch_size),
        batch_fixed=batch_size is not None,
    )


def chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    """``items`` in consecutive runs of at most ``size``."""
    for start in range(0, len(items), size):
        yield items[start : start + size]
