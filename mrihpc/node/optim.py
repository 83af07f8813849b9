"""Optimisers by name, and the warm-up + cosine-warm-restart schedule built from torch's own
schedulers (LinearLR then CosineAnnealingWarmRestarts, chained by SequentialLR), so its
position lives in ``state_dict()`` and a resumed run continues the exact LR sequence."""

from __future__ import annotations

from typing import Iterable

import torch
from torch.optim import lr_scheduler

from mrihpc import registry
from mrihpc.spec import OptimSpec, ScheduleSpec


def build_optimizer(spec: OptimSpec, params: Iterable[torch.nn.Parameter]) -> torch.optim.Optimizer:
    cls = registry.resolve(registry.OPTIMIZERS, spec.name)
    kwargs = {"lr": spec.lr, "weight_decay": spec.weight_decay}
    if spec.name in ("adam", "adamw"):
        kwargs["betas"] = spec.betas
    elif spec.name == "sgd":
        kwargs.update(momentum=spec.momentum, nesterov=spec.nesterov)
    elif spec.name == "rmsprop":
        kwargs["momentum"] = spec.momentum
    return cls(params, **kwargs)


class DecayRestarts(lr_scheduler.LRScheduler):
    """Seed 003's schedule: lr = base x decay^(epochs since the period began); periods L, L, L + I,
    L + 2I, ... (in schedule steps). ``restarted`` is true right after a step that began a period:
    the Trainer then clears the optimiser's state. Its position is ``last_epoch``, so it resumes."""

    def __init__(
        self, optimizer: torch.optim.Optimizer, period: int, increment: int, decay: float, unit: int
    ):
        self.period, self.increment, self.decay, self.unit = period, increment, decay, unit
        self.restarted = False
        super().__init__(optimizer)

    def period_start(self, t: int) -> int:
        """First schedule step of the period holding step ``t``."""
        start, length, k = 0, self.period, 0
        while start + length <= t:
            start, k = start + length, k + 1
            length = self.period + (k - 1) * self.increment
        return start

    def get_lr(self) -> list[float]:
        t = self.last_epoch
        start = self.period_start(t)
        self.restarted = 0 < t == start
        return [base * self.decay ** ((t - start) / self.unit) for base in self.base_lrs]


def build_schedule(
    spec: ScheduleSpec, optimizer: torch.optim.Optimizer, steps_per_epoch: int
) -> lr_scheduler.LRScheduler:
    """Stepped once per optimiser step (interval: step) or once per epoch (interval: epoch)."""
    unit = steps_per_epoch if spec.interval == "step" else 1
    if spec.kind == "decay_restarts":
        return DecayRestarts(
            optimizer,
            max(1, round(spec.restart_epochs * unit)),
            round(spec.restart_increment * unit),
            spec.decay,
            unit,
        )
    warmup = round(spec.warmup_epochs * unit)
    if (
        spec.kind == "constant"
    ):  # a factor of 1 from the start: the lr as given, and a state_dict like the others'
        after = lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)
    else:
        after = lr_scheduler.CosineAnnealingWarmRestarts(
            optimizer,
            T_0=max(1, round(spec.restart_epochs * unit)),
            T_mult=spec.restart_mult,
            eta_min=spec.min_lr,
        )
    if warmup <= 0:
        return after
    ramp = lr_scheduler.LinearLR(
        optimizer, start_factor=spec.warmup_start_factor, end_factor=1.0, total_iters=warmup
    )
    return lr_scheduler.SequentialLR(optimizer, [ramp, after], milestones=[warmup])
