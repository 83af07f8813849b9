"""Segmentation predictions: one uint8 PNG label mask per input image, and overlay panels.

``predictions/<split>/mask/<stem>_mask.png`` holds values 0..K-1 (the layout the data came in,
so a test split's output can be submitted or read back as masks); each name comes from its
own image, so no mask ever overwrites another (the seed's writer lost half of them).
``predictions/<split>/panels/<stem>.png`` shows image | label | prediction for a few images.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from skimage.color import label2rgb
from skimage.io import imsave

from mrihpc import registry
from mrihpc.node import checkpoint
from mrihpc.paths import PointPaths
from mrihpc.specfile import load_point_spec
from mrihpc.workloads.segmentation.data import MASK_SUFFIX, PngSegmentation, root_of, scan

NUM_PANELS = 4


def load_model(spec, paths: PointPaths, which: str = "best") -> torch.nn.Module:
    model = registry.resolve(registry.MODELS, spec.model.name)(spec.model)
    model.load_state_dict(checkpoint.trained_nets(paths.best_checkpoint, paths.last_checkpoint, which)["model"])
    return model.eval()


def overlay(image: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """uint8 RGB ``(H, W, 3)``: the labels coloured over the grey image."""
    grey = (image - image.min()) / max(float(np.ptp(image)), 1e-12)
    return (label2rgb(labels, grey, alpha=0.35, bg_label=0) * 255).astype(np.uint8)


def panel(image: np.ndarray, pred: np.ndarray, label: np.ndarray | None) -> np.ndarray:
    """image | label | prediction (label omitted for test images), ``(H, 2W or 3W, 3)`` uint8."""
    grey = (image - image.min()) / max(float(np.ptp(image)), 1e-12)
    tiles = [np.repeat((grey * 255).astype(np.uint8)[..., None], 3, axis=2)]
    tiles += [overlay(image, label)] if label is not None else []
    return np.concatenate(tiles + [overlay(image, pred)], axis=1)


@torch.no_grad()
def predict(paths: PointPaths, split: str = "val", which: str = "best") -> list[Path]:
    """Write the masks of ``split`` (val or test) under ``paths.predictions/split``; returns them."""
    spec = load_point_spec(paths)
    model = load_model(spec, paths, which)
    pairs = scan(root_of(spec.data), split, with_masks=split != "test")
    dataset = PngSegmentation(pairs, spec.data, train=False)
    folder = paths.prediction_dir(split, which)
    mask_dir, panel_dir = folder / "mask", folder / "panels"
    mask_dir.mkdir(parents=True, exist_ok=True)
    panel_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for i, pair in enumerate(pairs):
        item = dataset[i]
        logits = model(torch.from_numpy(item["input"])[None])
        pred = logits.argmax(dim=1)[0].numpy().astype(np.uint8)
        target = mask_dir / f"{pair.stem}{MASK_SUFFIX}"
        imsave(target, pred, check_contrast=False)
        written.append(target)
        if i < NUM_PANELS:
            imsave(panel_dir / f"{pair.stem}.png", panel(item["input"][0], pred, item.get("label")), check_contrast=False)
    return written
