"""Cartesian undersampling masks with fastMRI's semantics, drawn from an explicit RNG.

A mask is a boolean vector over the ``W`` phase-encoding columns (the last k-space axis):
``num_low = round(W * centre_fraction)`` fully sampled columns starting at
``(W - num_low + 1) // 2``, plus outer columns so that about ``W / acceleration`` are kept.
Each call draws one (acceleration, centre fraction) pair. Randomness only comes from the
``rng`` argument, so the caller decides what is fixed (validation: seeded from the file
name) and what is fresh (training: seeded from seed, epoch and sample).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch


def seed_from_name(name: str) -> int:
    """fastMRI's fixed per-volume seed: the file name's characters, hashed to 32 bits."""
    return int(np.random.SeedSequence(list(map(ord, name))).generate_state(1)[0])


@dataclass
class MaskFunc:
    accelerations: Sequence[int]
    center_fractions: Sequence[float]

    def __post_init__(self) -> None:
        if len(self.accelerations) != len(self.center_fractions):
            raise ValueError("accelerations and center_fractions must have the same length")

    def __call__(self, num_cols: int, rng: np.random.Generator) -> tuple[torch.Tensor, int]:
        """Returns (mask bool ``(num_cols,)``, the acceleration drawn)."""
        choice = int(rng.integers(len(self.accelerations)))
        acc, fraction = int(self.accelerations[choice]), float(self.center_fractions[choice])
        num_low = int(round(num_cols * fraction))
        mask = self.outer(num_cols, acc, num_low, rng)
        start = (num_cols - num_low + 1) // 2
        mask[start : start + num_low] = True
        return torch.from_numpy(mask), acc

    def outer(self, num_cols: int, acc: int, num_low: int, rng: np.random.Generator) -> np.ndarray:
        raise NotImplementedError


class RandomMask(MaskFunc):
    """Outer columns kept independently with probability (W / acc - num_low) / (W - num_low)."""

    def outer(self, num_cols, acc, num_low, rng):
        prob = (num_cols / acc - num_low) / (num_cols - num_low)
        return rng.uniform(size=num_cols) < prob


class EquispacedMask(MaskFunc):
    """Outer columns on a regular grid with a random offset; the spacing is adjusted for the
    centre so that the overall sampling rate is 1 / acc (fastMRI's EquispacedMaskFractionFunc)."""

    def outer(self, num_cols, acc, num_low, rng):
        adjusted = (acc * (num_low - num_cols)) / (num_low * acc - num_cols)
        offset = int(rng.integers(0, max(1, round(adjusted))))
        mask = np.zeros(num_cols, dtype=bool)
        cols = np.around(np.arange(offset, num_cols - 1, adjusted)).astype(np.int64)
        mask[cols[cols < num_cols]] = True
        return mask


def build_mask(
    kind: str, accelerations: Sequence[int], center_fractions: Sequence[float]
) -> MaskFunc:
    from mrihpc import registry

    return registry.resolve(registry.MASKS, kind)(list(accelerations), list(center_fractions))
