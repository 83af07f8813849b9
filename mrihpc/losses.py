"""Loss terms a spec names in ``loss:``, and their weighted sum.

Every term is ``term(out, batch) -> scalar``: ``out`` holds the networks' outputs of one step
and ``batch`` the batch, so each workload picks what its terms read. Image terms read
``out["pred"]`` and ``batch["target"]`` ``(N, C, H, W)``; segmentation terms read
``out["logits"]`` ``(N, K, H, W)`` (never probabilities: the activation lives inside the loss)
and ``batch["label"]`` ``(N, H, W)`` integers in 0..K-1. The segmentation terms are MONAI's.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Callable

import torch
from torch.nn import functional as F

from mrihpc.gan import bce_logits
from mrihpc.metrics import ssim_map


def l1_loss(out: dict, batch: dict) -> torch.Tensor:
    return F.l1_loss(out["pred"], batch["target"])


def mse_loss(out: dict, batch: dict) -> torch.Tensor:
    return F.mse_loss(out["pred"], batch["target"])


def ssim_loss(out: dict, batch: dict) -> torch.Tensor:
    """1 - SSIM (7x7 uniform window, data range max(target) per sample); channels fold into the
    batch."""
    pred, target = out["pred"].float(), batch["target"].float()
    n, c = pred.shape[:2]
    data_range = target.amax(dim=(1, 2, 3)).repeat_interleave(c)
    flat = lambda t: t.reshape(n * c, 1, *t.shape[2:])  # noqa: E731
    return 1 - ssim_map(flat(pred), flat(target), data_range).mean()


def adversarial(out: dict, batch: dict) -> torch.Tensor:
    """The generator's adversarial term: BCE-with-logits of the discriminator's logits on the
    fakes, ``out["d_fake"]`` ``(N, 1)``, against the real label."""
    return bce_logits(out["d_fake"], real=True)


def cycle_l1(out: dict, batch: dict) -> torch.Tensor:
    """CycleGAN's cycle consistency: L1 of ``out["cycle"]`` (the image mapped there and back)
    against ``out["cycle_target"]`` (where it started)."""
    return F.l1_loss(out["cycle"], out["cycle_target"])


def identity_l1(out: dict, batch: dict) -> torch.Tensor:
    """CycleGAN's identity term: L1 of ``out["identity"]`` (a generator fed its own output domain)
    against ``out["identity_target"]`` (that input)."""
    return F.l1_loss(out["identity"], out["identity_target"])


def msssim_loss(out: dict, batch: dict) -> torch.Tensor:
    """1 - MS-SSIM (window 9, up to 5 scales, fewer on small images; data range 1: scaled data)."""
    from mrihpc.msssim import ms_ssim

    return (
        1 - ms_ssim(out["pred"].float(), batch["target"].float(), data_range=1.0, win_size=9).mean()
    )


def cross_entropy(out: dict, batch: dict) -> torch.Tensor:
    """Softmax cross-entropy on logits (the seed applied a sigmoid first: never)."""
    return F.cross_entropy(out["logits"].float(), batch["label"])


@lru_cache(maxsize=None)
def _monai(name: str):
    from monai import losses

    return {  # include_background: the seed averages its soft Dice over all four classes
        "dice": lambda: losses.DiceLoss(softmax=True, to_onehot_y=True, include_background=True),
        "dice_ce": lambda: losses.DiceCELoss(
            softmax=True, to_onehot_y=True, include_background=True
        ),
        "focal": lambda: losses.FocalLoss(
            to_onehot_y=True, gamma=2.0, alpha=0.25, use_softmax=False
        ),
    }[name]()


def _monai_term(name: str) -> Callable:
    def term(out: dict, batch: dict) -> torch.Tensor:
        return _monai(name)(out["logits"].float(), batch["label"].unsqueeze(1))

    term.__name__ = name
    return term


soft_dice = _monai_term("dice")
"""1 - soft Dice with the 2x numerator, softmax over the logits, mean over classes (MONAI
DiceLoss)."""
dice_ce = _monai_term("dice_ce")
"""soft Dice + cross-entropy (MONAI DiceCELoss)."""
focal = _monai_term("focal")
"""Sigmoid focal loss on the one-hot labels, alpha 0.25, gamma 2 (seed 004's; MONAI FocalLoss)."""


def bce_onehot(out: dict, batch: dict) -> torch.Tensor:
    """Binary cross-entropy with logits against the one-hot labels (seed 004's 'bcewithlogits')."""
    logits = out["logits"].float()
    onehot = F.one_hot(batch["label"], logits.shape[1]).permute(0, 3, 1, 2).to(logits.dtype)
    return F.binary_cross_entropy_with_logits(logits, onehot)


class WeightedLoss:
    """sum_k w_k * term_k(out, batch); also reports each term as ``loss_<name>``."""

    def __init__(self, weights: dict[str, float], table: dict[str, str]):
        from mrihpc.workloads import resolve

        self.terms: dict[str, tuple[float, Callable]] = {
            name: (w, resolve(table[name])) for name, w in weights.items() if w > 0
        }

    def __call__(self, out: dict, batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
        parts = {name: fn(out, batch) for name, (_, fn) in self.terms.items()}
        total = sum(self.terms[name][0] * value for name, value in parts.items())
        return total, {f"loss_{k}": float(v.detach()) for k, v in parts.items()}
