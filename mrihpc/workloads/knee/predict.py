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

from mrihpc import registry
from mrihpc.data import DataError
from mrihpc.data.fastmri import list_files
from mrihpc.data.masks import build_mask
from mrihpc.data.slices import KSpaceSlices
from mrihpc.node import checkpoint
from mrihpc.paths import PointPaths
from mrihpc.specfile import load_point_spec
from mrihpc.workloads.knee.files import data_root, split_files, volumes_of
from mrihpc.workloads.knee.task import crop_of


def load_model(spec, paths: PointPaths, which: str = "best") -> torch.nn.Module:
    model = registry.resolve(registry.MODELS, spec.model.name)(spec.model)
    model.load_state_dict(checkpoint.trained_nets(paths.best_checkpoint, paths.last_checkpoint, which)["model"])
    return model.eval()


def _original_scale(image: torch.Tensor, sample: dict) -> np.ndarray:
    """Undo the sample's normalisation: ``(h, w)`` -> ``(h, w)``."""
    return (image * sample["std"] + sample["mean"]).numpy()


@torch.no_grad()
def _reconstruct(model, dataset: KSpaceSlices) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(zero-filled, prediction, target) volumes ``(slices, h, w)`` in the original scale."""
    zf, pred, target = [], [], []
    for i in range(len(dataset)):
        s = dataset[i]
        out = model(s["input"].unsqueeze(0))[0, 0]
        zf.append(_original_scale(s["input"][0], s))
        pred.append(_original_scale(out, s))
        target.append(_original_scale(s["target"][0], s))
    return np.stack(zf), np.stack(pred).astype(np.float32), np.stack(target)


def panel(zf: np.ndarray, pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """uint8 ``(h, 4w)`` image of the middle slice: zero-filled | prediction | target | |error|."""
    mid = zf.shape[0] // 2
    top = max(float(target[mid].max()), float(zf[mid].max()), 1e-12)
    error = np.abs(pred[mid] - target[mid]) if target[mid].any() else np.zeros_like(pred[mid])
    tiles = [zf[mid], pred[mid], target[mid], error]
    return (np.clip(np.concatenate(tiles, axis=1) / top, 0, 1) * 255).astype(np.uint8)


def predict(paths: PointPaths, split: str = "val", which: str = "best") -> list[Path]:
    """Write the predictions of ``split`` (val or test) under ``paths.predictions/split``; returns the files."""
    spec = load_point_spec(paths)
    return write_predictions(spec, load_model(spec, paths, which), paths, split, which)


def write_predictions(spec, model: torch.nn.Module, paths: PointPaths, split: str, which: str = "best") -> list[Path]:
    """``model`` (zero-filled ``(1, 1, h, w)`` -> image) over the files of ``split``."""
    d = spec.data
    if split == "val":
        files = split_files(d)[1]
    else:
        files = list_files(data_root(d) / "test")
    out_dir = paths.prediction_dir(split, which)
    mask = build_mask(d.mask.kind, d.mask.accelerations, d.mask.center_fractions)
    written = []
    for volume in volumes_of(files, d):
        results = {}
        for key in volume.kspace_keys:
            if key == "kspace" and split == "test" and volume.target_key is None and d.format == "fastmri":
                raise DataError(f"{volume.path}: test file without reference; nothing to compare")
            # fully sampled files get the fixed validation mask; test files are undersampled already
            dataset = KSpaceSlices([volume], mask if key == "kspace" else None, crop_of(d), d.normalize,
                                   skip_slices=0, train=False, seed=spec.train.seed, kspace_key=key)
            name = "reconstruction" if key == "kspace" else key.replace("kspace", "reconstruction")
            results[name] = _reconstruct(model, dataset)
        target = out_dir / volume.name
        with h5py.File(target, "w") as f:
            for name, (_, pred, _) in results.items():
                f.create_dataset(name, data=pred)
        for name, volumes in results.items():
            imsave(out_dir / f"{Path(volume.name).stem}_{name}.png", panel(*volumes), check_contrast=False)
        written.append(target)
    return written
