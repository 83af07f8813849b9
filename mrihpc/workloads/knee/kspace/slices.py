"""Slices of k-space volumes as training samples for reconstruction.

A sample is one slice: k-space ``(H, W)`` -> mask the columns -> zero-filled magnitude,
centre-cropped to ``(h, w)`` -> normalised. The mask RNG is seeded per sample: in training
from (seed, epoch, index), so masks are fresh every epoch yet identical after a resume and
independent of the number of workers; in validation from the file name, so each volume
keeps one fixed mask.

With ``raw=True`` (``data.transform_on: device``) a sample stops after the read and the mask
draw: it carries only the sampled columns of its k-space (about a quarter of it at 4x, so the
trip through shared memory and to the GPU is short) and their indices; zero-filling them back,
the inverse FFT, crop and normalisation run batched on the training device (``finish_batch``).
k-space widths differ between fastMRI volumes (368, 372, ...), so ``collate_raw`` stacks each
k-space shape separately, padding to the most sampled columns in the group.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, default_collate

from mrihpc.data import DataError
from mrihpc.workloads.knee.kspace.fastmri import Volume, VolumeReader
from mrihpc.workloads.knee.kspace.masks import MaskFunc, seed_from_name
from mrihpc.workloads.knee.kspace.transforms import (
    center_crop,
    complex_abs,
    ifft2c,
    normalize_batch,
    normalize_instance,
    normalize_max,
    zero_filled_batch,
    zero_filled_columns,
)

RAW_KEYS = ("kspace", "columns", "width", "group")


class KSpaceSlices(Dataset):
    """Sample dict: ``input`` and ``target`` ``(1, h, w)`` float32, ``mean`` / ``std`` (undo the
    normalisation), ``fname``, ``slice``, ``acceleration``. Raw: ``kspace`` complex64 ``(H, c)``,
    the c sampled columns, ``columns`` int64 ``(c,)`` their indices, ``width`` W, ``target``
    ``(h, w)`` unnormalised, ``fname``, ``slice``, ``acceleration``."""

    def __init__(
        self,
        volumes: Sequence[Volume],
        mask: Optional[MaskFunc],
        crop: Optional[tuple[int, int]],
        normalize: str,
        skip_slices: int,
        train: bool,
        seed: int,
        kspace_key: str = "kspace",
        raw: bool = False,
    ):
        if raw and mask is None:
            raise ValueError(
                "raw samples need a mask (undersampled test files are reconstructed on the host)"
            )
        self.volumes, self.mask, self.crop = list(volumes), mask, crop
        self.normalize = normalize_max if normalize == "zero_filled_max" else normalize_instance
        self.train, self.seed, self.epoch, self.kspace_key, self.raw = (
            train,
            seed,
            0,
            kspace_key,
            raw,
        )
        self.collate = collate_raw if raw else collate_slices  # the Trainer's DataLoader takes it
        self.reader = VolumeReader()
        self.index = [
            (v, s)
            for v, vol in enumerate(self.volumes)
            for s in range(min(skip_slices, vol.num_slices - 1), vol.num_slices)
        ]

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.index)

    def slot_shapes(self) -> Optional[dict[str, tuple[tuple[int, ...], torch.dtype]]]:
        """When every slice has one crop (workers then send these through ``BatchSlots``): ``input``
        /
        ``target`` ``(1, h, w)`` float32; raw samples, ``target`` ``(h, w)`` only (the number of
        sampled columns varies, so their k-space goes the DataLoader's way). None for volumes of
        several sizes."""
        crops = {self.crop or v.recon_shape for v in self.volumes}
        if len(crops) != 1:
            return None
        crop = next(iter(crops))
        if self.raw:
            return {"target": (crop, torch.float32)}
        return {"input": ((1, *crop), torch.float32), "target": ((1, *crop), torch.float32)}

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

    def _mask(self, i: int, volume: Volume, width: int) -> tuple[torch.Tensor, int]:
        mask, acceleration = self.mask(width, self._rng(i, volume))
        left, right = volume.padding  # never "sample" the zero-padded columns
        mask[: max(left, 0)] = False
        mask[right:] = False
        return mask, acceleration

    def _target(self, volume: Volume, s: int, crop: tuple[int, int]) -> Optional[torch.Tensor]:
        """The reference image ``(h, w)``, unnormalised; None for undersampled test files."""
        target = self.reader.target(volume, s)
        if target is not None:
            return center_crop(torch.from_numpy(target), crop)
        if self.kspace_key == "kspace":  # nc2019 training files: the fully sampled k-space's image
            return complex_abs(
                center_crop(ifft2c(torch.from_numpy(self.reader.kspace(volume, "kspace", s))), crop)
            )
        return None

    def __getitem__(self, i: int) -> dict:
        v, s = self.index[i]
        volume = self.volumes[v]
        crop = self.crop or volume.recon_shape
        kspace = torch.from_numpy(self.reader.kspace(volume, self.kspace_key, s))
        about = {"fname": volume.name, "slice": s}
        if self.raw:
            mask, acceleration = self._mask(i, volume, kspace.shape[-1])
            columns = mask.nonzero().squeeze(1)
            return {
                "kspace": kspace[:, columns],
                "columns": columns,
                "width": kspace.shape[-1],
                "target": self._target(volume, s, crop),
                **about,
                "acceleration": acceleration,
            }
        acceleration = 0
        if self.mask is not None:
            mask, acceleration = self._mask(i, volume, kspace.shape[-1])
            image = zero_filled_columns(
                kspace, mask, crop
            )  # = |crop(ifft2c(masked))|, less FFT work
        else:  # test files: undersampled already
            image = complex_abs(center_crop(ifft2c(kspace), crop))
        image, mean, std = self.normalize(image)
        target = self._target(volume, s, crop)
        target = torch.zeros_like(image) if target is None else (target - mean) / std
        return {
            "input": image.unsqueeze(0).float(),
            "target": target.unsqueeze(0).float(),
            "mean": mean,
            "std": std,
            **about,
            "acceleration": acceleration,
        }


# Why lists: every tensor leaves a DataLoader worker through a shared-memory file of its own, so
# four one-number-per-slice tensors per batch cost more than the two images (measured: 1/7 of the
# loader's rate at 2 workers); lists are pickled inline. ``numbers_on`` makes the tensors.
PER_SLICE = ("mean", "std", "fname", "slice", "acceleration")


def stack(tensors: list[torch.Tensor]) -> torch.Tensor:
    """``torch.stack``; in a worker, straight into shared memory (default_collate's way), which
    saves the copy that sending a private tensor to the main process would make."""
    return default_collate(tensors)


def collate_slices(samples: list[dict]) -> dict:
    """Host samples -> a batch: ``input`` / ``target`` ``(N, 1, h, w)`` (those the samples still
    hold:
    ``BatchSlots`` stacks them itself), the per-slice values as lists."""
    batch = {k: stack([s[k] for s in samples]) for k in ("input", "target") if k in samples[0]}
    return batch | {k: [s[k] for s in samples] for k in PER_SLICE if k in samples[0]}


def numbers_on(batch: dict, device: torch.device) -> dict:
    """``mean`` / ``std`` lists -> float32 tensors ``(N,)`` on ``device`` (the rest unchanged)."""
    return batch | {
        k: torch.tensor(batch[k], dtype=torch.float32, device=device)
        for k in ("mean", "std")
        if isinstance(batch.get(k), list)
    }


def _padded(samples: list[dict], size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Sampled columns ``(n, H, size)`` and their indices ``(n, size)``; the padding is zero
    columns at index W (one past the last column, dropped after the scatter)."""
    cols, where = [], []
    for s in samples:
        c = s["columns"].numel()
        k = s["kspace"].new_zeros((s["kspace"].shape[0], size))
        k[:, :c] = s["kspace"]
        cols.append(k)
        where.append(torch.cat([s["columns"], s["columns"].new_full((size - c,), s["width"])]))
    return stack(cols), stack(where)


def collate_raw(samples: list[dict]) -> dict:
    """Raw samples -> a batch: ``kspace`` / ``columns`` / ``width`` / ``group``, one entry per
    k-space shape: its slices' sampled columns ``(n, H, C)``, their indices ``(n, C)``, W, and the
    slices' positions in the batch; ``target`` ``(N, h, w)`` (unless ``BatchSlots`` holds it); the
    per-slice values as lists."""
    batch = {}
    if "target" in samples[0]:
        crops = {tuple(s["target"].shape) for s in samples}
        if len(crops) > 1:
            raise DataError(
                f"data.transform_on: device batches slices of one image size; this batch has "
                f"{sorted(crops)} from {sorted({s['fname'] for s in samples})}: set data.crop"
            )
        batch["target"] = stack([s["target"] for s in samples])
    groups: dict[tuple, list[int]] = {}
    for j, s in enumerate(samples):
        groups.setdefault((s["kspace"].shape[0], s["width"]), []).append(j)
    batch |= {k: [s[k] for s in samples] for k in PER_SLICE if k in samples[0]}
    batch["kspace"], batch["columns"], batch["width"], batch["group"] = [], [], [], []
    for (_, width), idx in groups.items():
        members = [samples[j] for j in idx]
        cols, where = _padded(members, max(s["columns"].numel() for s in members))
        batch["kspace"].append(cols)
        batch["columns"].append(where)
        batch["width"].append(width)
        batch["group"].append(torch.tensor(idx))
    return batch


def finish_batch(batch: dict, normalize: str) -> dict:
    """A raw batch, on its device -> the batch the host path gives: ``input`` / ``target``
    ``(N, 1, h, w)``, ``mean`` / ``std`` ``(N,)``. One batched zero-filled transform per k-space
    shape."""
    target = batch["target"].float()
    image = torch.empty_like(target)
    for cols, where, width, group in zip(
        batch["kspace"], batch["columns"], batch["width"], batch["group"]
    ):
        image[group.to(image.device)] = zero_filled_batch(
            cols, where, width, tuple(target.shape[-2:])
        )
    image, mean, std = normalize_batch(image, normalize)
    target = (target - mean.view(-1, 1, 1)) / std.view(-1, 1, 1)
    rest = {k: v for k, v in batch.items() if k not in RAW_KEYS}
    return {
        **rest,
        "input": image.unsqueeze(1),
        "target": target.unsqueeze(1),
        "mean": mean,
        "std": std,
    }
