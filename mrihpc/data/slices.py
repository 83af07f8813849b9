"""Slices of k-space volumes as training samples for reconstruction.

A sample is one slice: k-space ``(H, W)`` -> mask the columns -> zero-filled magnitude,
centre-cropped to ``(h, w)`` -> normalised. The mask RNG is seeded per sample: in training
from (seed, epoch, index), so masks are fresh every epoch yet identical after a resume and
independent of the number of workers; in validation from the file name, so each volume
keeps one fixed mask.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from mrihpc.data.fastmri import Volume, VolumeReader
from mrihpc.data.masks import MaskFunc, seed_from_name
from mrihpc.data.transforms import (center_crop, complex_abs, ifft2c, normalize_instance, normalize_max,
                                   zero_filled_columns)


class KSpaceSlices(Dataset):
    """Sample dict: ``input`` and ``target`` ``(1, h, w)`` float32, ``mean`` / ``std`` (undo the
    normalisation), ``fname``, ``slice``, ``acceleration``."""

    def __init__(self, volumes: Sequence[Volume], mask: Optional[MaskFunc], crop: Optional[tuple[int, int]],
                 normalize: str, skip_slices: int, train: bool, seed: int, kspace_key: str = "kspace"):
        self.volumes, self.mask, self.crop = list(volumes), mask, crop
        self.normalize = normalize_max if normalize == "zero_filled_max" else normalize_instance
        self.train, self.seed, self.epoch, self.kspace_key = train, seed, 0, kspace_key
        self.reader = VolumeReader()
        self.index = [(v, s) for v, vol in enumerate(self.volumes)
                      for s in range(min(skip_slices, vol.num_slices - 1), vol.num_slices)]

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.index)

    def volumes_index(self) -> list[list[int]]:
        """Sample indices of each volume, in slice order."""
        groups: dict[int, list[int]] = {}
        for i, (v, _) in enumerate(self.index):
            groups.setdefault(v, []).append(i)
        return list(groups.values())

    def _rng(self, i: int, volume: Volume) -> np.random.Generator:
        if self.train:
            return np.random.default_rng([self.seed & 0xFFFFFFFF, self.epoch, i])
        return np.random.default_rng(seed_from_name(volume.name))

    def __getitem__(self, i: int) -> dict:
        v, s = self.index[i]
        volume = self.volumes[v]
        crop = self.crop or volume.recon_shape
        kspace = torch.from_numpy(self.reader.kspace(volume, self.kspace_key, s))
        acceleration = 0
        if self.mask is not None:
            mask, acceleration = self.mask(kspace.shape[-1], self._rng(i, volume))
            left, right = volume.padding  # never "sample" the zero-padded columns
            mask[:max(left, 0)] = False
            mask[right:] = False
            image = zero_filled_columns(kspace, mask, crop)  # = |crop(ifft2c(masked))|, less FFT work
        else:  # test files: undersampled already
            image = complex_abs(center_crop(ifft2c(kspace), crop))
        image, mean, std = self.normalize(image)
        target = self.reader.target(volume, s)
        if target is None and self.kspace_key == "kspace":  # nc2019 training files: fully sampled k-space
            full = torch.from_numpy(self.reader.kspace(volume, "kspace", s))
            target = complex_abs(center_crop(ifft2c(full), crop)).numpy()
        target_t = torch.zeros_like(image) if target is None else (center_crop(torch.from_numpy(target), crop) - mean) / std
        return {"input": image.unsqueeze(0).float(), "target": target_t.unsqueeze(0).float(),
                "mean": torch.tensor(mean, dtype=torch.float32), "std": torch.tensor(std, dtype=torch.float32),
                "fname": volume.name, "slice": s, "acceleration": acceleration}

