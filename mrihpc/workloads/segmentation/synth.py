"""A synthetic twin of the ACDC-derived PNG set: short-axis cardiac phantoms with labels.

Each image shows a body ellipse, the LV blood pool (bright disc, label 3), the myocardial ring
around it (dark, label 2) and the RV crescent beside it (bright, label 1), at random sizes,
positions and rotations, under a smooth bias field with Rician-like noise. Written as 8-bit
PNGs in the real layout, so the same reader and checks serve both.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from skimage.io import imsave

from mrihpc.data.cache import cached_dataset

RV, MYO, LV = 1, 2, 3


def _smooth(rng: np.random.Generator, size: int) -> np.ndarray:
    """A slowly varying field in [0.7, 1.3] (coil sensitivity)."""
    y, x = np.mgrid[0:size, 0:size] / size
    a, b, c = rng.uniform(-0.3, 0.3, 3)
    return 1 + a * (x - 0.5) + b * (y - 0.5) + c * ((x - 0.5) ** 2 + (y - 0.5) ** 2 - 0.17)


def phantom(rng: np.random.Generator, size: int = 96) -> tuple[np.ndarray, np.ndarray]:
    """(image uint8 ``(size, size)``, labels uint8 ``(size, size)`` in 0..3)."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    s = size / 96
    cy, cx = size / 2 + rng.uniform(-8, 8, 2) * s
    r_lv = rng.uniform(9, 14) * s
    wall = rng.uniform(4, 7) * s
    theta = rng.uniform(0, 2 * np.pi)  # direction of the RV from the LV centre
    d = np.hypot(yy - cy, xx - cx)
    labels = np.zeros((size, size), np.uint8)
    # RV: a disc beside the LV minus the LV + wall: a crescent hugging the septum
    ry, rx = cy + np.sin(theta) * (r_lv + wall) * 1.1, cx + np.cos(theta) * (r_lv + wall) * 1.1
    r_rv = rng.uniform(0.8, 1.1) * (r_lv + wall)
    rv = (np.hypot(yy - ry, xx - rx) < r_rv) & (d >= r_lv + wall + 1.5 * s)
    labels[rv] = RV
    labels[(d >= r_lv) & (d < r_lv + wall)] = MYO
    labels[d < r_lv] = LV
    body = ((yy - size / 2) / (0.46 * size)) ** 2 + ((xx - size / 2) / (0.48 * size)) ** 2 < 1
    tissue = np.where(body, rng.uniform(0.25, 0.35), 0.02)
    tissue = tissue + body * 0.06 * np.sin(xx / (5 * s) + rng.uniform(0, 6)) * np.cos(yy / (7 * s))
    intensity = {
        RV: rng.uniform(0.75, 0.9),
        MYO: rng.uniform(0.12, 0.2),
        LV: rng.uniform(0.85, 1.0),
    }
    image = tissue.copy()
    for label, value in intensity.items():
        image[labels == label] = value
    image = image * _smooth(rng, size)
    noisy = np.hypot(image + rng.normal(0, 0.04, image.shape), rng.normal(0, 0.04, image.shape))
    return (np.clip(noisy, 0, 1) * 255).round().astype(np.uint8), labels


def generate(
    out: Path, train: int = 60, val: int = 12, test: int = 8, size: int = 96, seed: int = 0
) -> Path:
    """Write ``out/{train,val}/{image,mask}`` and ``out/test/image`` (names cmr<i> as in ACDC's
    set)."""
    rng = np.random.default_rng(seed)
    index = 1
    for split, count in (("train", train), ("val", val), ("test", test)):
        (out / split / "image").mkdir(parents=True, exist_ok=True)
        if split != "test":
            (out / split / "mask").mkdir(parents=True, exist_ok=True)
        for _ in range(count):
            image, labels = phantom(np.random.default_rng(rng.integers(2**32)), size)
            imsave(out / split / "image" / f"cmr{index}.png", image, check_contrast=False)
            if split != "test":
                imsave(out / split / "mask" / f"cmr{index}_mask.png", labels, check_contrast=False)
            index += 1
    return out


def ensure_synthetic(params) -> Path:
    """The cached synthetic set for a SyntheticSpec, generated once."""
    p = params.model_dump()  # prepare_data looks for the folder under the same kind and params
    return cached_dataset(
        "acdc", p, lambda out: generate(out, p["train"], p["val"], p["test"], p["size"], p["seed"])
    )


def write_twin(out: Path, args) -> str:
    """``mrihpc data synth acdc``."""
    generate(out, args.train, args.val, args.test, args.size, args.seed)
    return (
        f"wrote {args.train} train, {args.val} val and {args.test} test cardiac phantoms "
        f"(PNG) under {out}"
    )
