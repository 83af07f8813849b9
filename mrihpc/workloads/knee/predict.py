"""Reconstructions of a trained point, in fastMRI's submission layout.

One HDF5 file per input file, under the input's name, with ``reconstruction`` float32
``(slices, h, w)`` in the original intensity scale; for the coursework test layout the file
holds ``reconstruction_4af`` and ``reconstruction_8af``. A PNG panel per file shows the
middle slice: zero-filled | prediction | target | error.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import torch
from skimage.io import imsave

from mrihpc.data import DataError
from mrihpc.workloads.knee.kspace.fastmri import list_files
from mrihpc.workloads.knee.kspace.masks import build_mask
from mrihpc.workloads.knee.kspace.slices import KSpaceSlices
from mrihpc.node.trained import Trained
from mrihpc.workloads.knee.files import data_root, split_files, volumes_of
from mrihpc.workloads.knee.task import crop_of


def _original_scale(images: torch.Tensor, samples: list[dict]) -> np.ndarray:
    """Undo each sample's normalisation: ``(B, h, w)`` -> ``(B, h, w)``."""
    mean = torch.tensor([float(s["mean"]) for s in samples]).view(-1, 1, 1)
    std = torch.tensor([float(s["std"]) for s in samples]).view(-1, 1, 1)
    return (images * std + mean).numpy()


@torch.no_grad()
def _reconstruct(
    trained: Trained, model, dataset: KSpaceSlices
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(zero-filled, prediction, target) volumes ``(slices, h, w)`` in the original scale; the
    slices go through ``model`` (``(B, 1, h, w)`` -> ``(B, 1, h, w)``) ``Trained.batches`` at a
    time, on the prediction device."""
    zf, pred, target = [], [], []
    for part in trained.batches(len(dataset), lambda: dataset[0]["input"]):
        samples = [dataset[i] for i in part]
        inputs = torch.stack([s["input"] for s in samples])  # (B, 1, h, w)
        (x,) = trained.on_device(inputs)
        out = model(x).float().cpu()[:, 0]
        zf.append(_original_scale(inputs[:, 0], samples))
        pred.append(_original_scale(out, samples))
        target.append(_original_scale(torch.stack([s["target"][0] for s in samples]), samples))
    return np.concatenate(zf), np.concatenate(pred).astype(np.float32), np.concatenate(target)


def panel(zf: np.ndarray, pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """uint8 ``(h, 4w)`` image of the middle slice: zero-filled | prediction | target | |error|."""
    mid = zf.shape[0] // 2
    top = max(float(target[mid].max()), float(zf[mid].max()), 1e-12)
    error = np.abs(pred[mid] - target[mid]) if target[mid].any() else np.zeros_like(pred[mid])
    tiles = [zf[mid], pred[mid], target[mid], error]
    return (np.clip(np.concatenate(tiles, axis=1) / top, 0, 1) * 255).astype(np.uint8)


def predict(trained: Trained, split: str = "val") -> list[Path]:
    """Write the predictions of ``split`` (val or test) under ``trained.output_dir(split)``; returns
    the files."""
    return write_predictions(trained, trained.nets["model"], split)


def write_predictions(trained: Trained, model: torch.nn.Module, split: str) -> list[Path]:
    """``model`` (zero-filled ``(B, 1, h, w)`` -> image) over the files of ``split``."""
    spec = trained.spec
    d = spec.data
    if split == "val":
        files = split_files(d)[1]
    else:
        files = list_files(data_root(d) / "test")
    out_dir = trained.output_dir(split)
    mask = build_mask(d.mask.kind, d.mask.accelerations, d.mask.center_fractions)
    written = []
    for volume in volumes_of(files, d):
        results = {}
        for key in volume.kspace_keys:
            if (
                key == "kspace"
                and split == "test"
                and volume.target_key is None
                and d.format == "fastmri"
            ):
                raise DataError(f"{volume.path}: test file without reference; nothing to compare")
            # fully sampled files get the fixed validation mask; test files are undersampled already
            dataset = KSpaceSlices(
                [volume],
                mask if key == "kspace" else None,
                crop_of(d),
                d.normalize,
                skip_slices=0,
                train=False,
                seed=spec.train.seed,
                kspace_key=key,
            )
            name = "reconstruction" if key == "kspace" else key.replace("kspace", "reconstruction")
            results[name] = _reconstruct(trained, model, dataset)
        target = out_dir / volume.name
        with h5py.File(target, "w") as f:
            for name, (_, pred, _) in results.items():
                f.create_dataset(name, data=pred)
        for name, volumes in results.items():
            imsave(
                out_dir / f"{Path(volume.name).stem}_{name}.png",
                panel(*volumes),
                check_contrast=False,
            )
        written.append(target)
    return written
