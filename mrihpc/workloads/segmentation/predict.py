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

from mrihpc.node.trained import Trained
from mrihpc.workloads.segmentation.data import MASK_SUFFIX, PngSegmentation, root_of, scan

NUM_PANELS = 4


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
def predict(trained: Trained, split: str = "val") -> list[Path]:
    """Write the masks of ``split`` (val or test) under ``trained.output_dir(split)``; returns
    them. Images of one size go through the network ``Trained.batches`` at a time, on the
    prediction device."""
    spec, model = trained.spec, trained.nets["model"]
    pairs = scan(root_of(spec.data), split, with_masks=split != "test")
    dataset = PngSegmentation(pairs, spec.data, train=False)
    folder = trained.output_dir(split)
    mask_dir, panel_dir = folder / "mask", folder / "panels"
    mask_dir.mkdir(parents=True, exist_ok=True)
    panel_dir.mkdir(parents=True, exist_ok=True)
    written: dict[int, Path] = {}
    for part in trained.batches(len(pairs), lambda: dataset[0]["input"]):
        items = {i: dataset[i] for i in part}
        for shape in dict.fromkeys(
            item["input"].shape for item in items.values()
        ):  # images may differ in size
            same = [i for i, item in items.items() if item["input"].shape == shape]
            (x,) = trained.on_device(torch.from_numpy(np.stack([items[i]["input"] for i in same])))
            labels = model(x).argmax(dim=1).cpu().numpy().astype(np.uint8)  # (B, H, W)
            for i, pred in zip(same, labels):
                target = mask_dir / f"{pairs[i].stem}{MASK_SUFFIX}"
                imsave(target, pred, check_contrast=False)
                written[i] = target
                if i < NUM_PANELS:
                    imsave(
                        panel_dir / f"{pairs[i].stem}.png",
                        panel(items[i]["input"][0], pred, items[i].get("label")),
                        check_contrast=False,
                    )
    return [written[i] for i in sorted(written)]  # in the images' order
