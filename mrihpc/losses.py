"""Loss terms named in ``loss:`` and their weighted sum.

Every term takes pred, target ``(N, C, H, W)`` and data_range ``(N,)`` and returns a scalar.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch.nn import functional as F

from mrihpc import registry
from mrihpc.metrics import ssim_map


def l1_loss(pred: torch.Tensor, target: torch.Tensor, data_range: torch.Tensor) -> torch.Tensor:
    return F.l1_loss(pred, target)


def mse_loss(pred: torch.Tensor, target: torch.Tensor, data_range: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(pred, target)


def ssim_loss(pred: torch.Tensor, target: torch.Tensor, data_range: torch.Tensor) -> torch.Tensor:
    """1 - SSIM (7x7 uniform window), differentiable; channels are folded into the batch."""
    n, c = pred.shape[:2]
    flat = lambda t: t.reshape(n * c, 1, *t.shape[2:])  # noqa: E731
    return 1 - ssim_map(flat(pred).float(), flat(target).float(), data_range.float().repeat_interleave(c)).mean()


class WeightedLoss:
    """sum_k w_k * term_k(pred, target, data_range); also reports each term."""

    def __init__(self, weights: dict[str, float]):
        self.terms: dict[str, tuple[float, Callable]] = {
            name: (w, registry.resolve(registry.LOSSES, name)) for name, w in weights.items() if w > 0}

    def __call__(self, pred, target, data_range) -> tuple[torch.Tensor, dict[str, float]]:
        parts = {name: fn(pred, target, data_range) for name, (_, fn) in self.terms.items()}
        total = sum(self.terms[name][0] * value for name, value in parts.items())
        return total, {f"loss_{k}": float(v.detach()) for k, v in parts.items()}
