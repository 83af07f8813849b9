"""A synthetic twin of seed 003's scanner data: sinograms of phantoms in the raw layout.

Each file is one object of ``slices`` slices (ellipses whose size and position drift smoothly
across slices, so neighbouring slices share structure). Each TOF bin sees the object through a
smooth window along one axis (the bins sum to the whole object). Sinograms come from
scikit-image's Radon transform over ``angles`` projection angles (W) and ``bins`` radial bins (L),
scaled so the brightest bin of the file expects ``counts`` counts. Written as headerless uint16,
``[TOF, Slice, W, L]``: ``<case>_clean.raw`` holds the expected counts (rounded), and
``<case>_noisy.raw`` a Poisson draw of them. ``mask.npy`` ``[W, L]`` uint8 marks the detector
pairs of a ring whose ``bad_blocks`` blocks of crystals are dead (0): a line of response is lost
when either end lands in a dead block.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from skimage.transform import radon


def phantom_volume(rng: np.random.Generator, slices: int, size: int) -> np.ndarray:
    """``(slices, size, size)`` float64 activity, zero outside the inscribed circle."""
    yy, xx = np.mgrid[-1 : 1 : size * 1j, -1 : 1 : size * 1j]
    out = np.zeros((slices, size, size))
    for _ in range(rng.integers(4, 8)):
        c0, drift = rng.uniform(-0.45, 0.45, 2), rng.uniform(-0.02, 0.02, 2)
        axes, angle, value = (
            rng.uniform(0.08, 0.35, 2),
            rng.uniform(0, np.pi),
            rng.uniform(0.3, 1.0),
        )
        for s in range(slices):
            cy, cx = c0 + drift * s
            grow = 1 + 0.15 * np.sin(s / max(slices, 1) * np.pi)
            u = ((yy - cy) * np.cos(angle) + (xx - cx) * np.sin(angle)) / (axes[0] * grow)
            v = (-(yy - cy) * np.sin(angle) + (xx - cx) * np.cos(angle)) / (axes[1] * grow)
            out[s][u**2 + v**2 < 1] += value
    out[:, yy**2 + xx**2 > 0.95] = 0
    return out


def tof_windows(tof: int, size: int) -> np.ndarray:
    """``(tof, 1, size)`` smooth weights along x that sum to 1 at every x."""
    x = np.linspace(0, tof - 1, size)
    w = np.stack([np.exp(-0.5 * ((x - t) / 0.6) ** 2) for t in range(tof)])
    return (w / w.sum(axis=0))[:, None, :]


def bad_block_mask(
    angles: int,
    bins: int,
    blocks: int,
    rng: np.random.Generator,
    crystals: int = 288,
    block: int = 8,
) -> np.ndarray:
    """``(angles, bins)`` uint8: 0 where a line of response ends in a dead block of ``block``
    crystals on a ring of ``crystals`` (radius just outside the field of view)."""
    theta = np.deg2rad(np.linspace(0, 180, angles, endpoint=False))[:, None]
    s = (np.arange(bins) - bins / 2 + 0.5)[None, :]
    radius = bins / 2 * 1.05
    half = np.arccos(np.clip(s / radius, -1, 1))
    ends = np.stack([theta + half, theta - half]) % (2 * np.pi)  # the two crystals' angles
    crystal = (ends / (2 * np.pi) * crystals).astype(int) % crystals
    dead = rng.choice(crystals // block, size=blocks, replace=False)
    lost = np.isin(crystal // block, dead).any(axis=0)
    return (~lost).astype(np.uint8)


def generate(
    out: Path,
    train_files: int = 4,
    val_files: int = 1,
    test_files: int = 1,
    tof: int = 2,
    slices: int = 8,
    angles: int = 50,
    bins: int = 64,
    counts: float = 100.0,
    bad_blocks: int = 3,
    seed: int = 0,
) -> Path:
    """Write ``train/``, ``val/``, ``test/``, ``mask.npy`` and ``layout.json`` under ``out``."""
    rng = np.random.default_rng(seed)
    theta = np.linspace(0, 180, angles, endpoint=False)
    windows = tof_windows(tof, bins)
    for split, n in (("train", train_files), ("val", val_files), ("test", test_files)):
        (out / split).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            volume = phantom_volume(rng, slices, bins)
            sino = np.empty((tof, slices, angles, bins))
            for t in range(tof):
                for s in range(slices):
                    sino[t, s] = radon(volume[s] * windows[t], theta=theta, circle=True).T  # [W, L]
            expected = sino * (counts / max(sino.max(), 1e-12))
            np.round(expected).astype(np.uint16).tofile(out / split / f"case{i:03d}_clean.raw")
            rng.poisson(expected).clip(0, 65535).astype(np.uint16).tofile(
                out / split / f"case{i:03d}_noisy.raw"
            )
    np.save(out / "mask.npy", bad_block_mask(angles, bins, bad_blocks, rng))
    layout = {"shape": [tof, slices, angles, bins], "dtype": "uint16", "counts": counts}
    (out / "layout.json").write_text(json.dumps(layout, indent=1))
    return out


def write_twin(out: Path, args) -> str:
    """``mrihpc data synth sinogram``."""
    generate(
        out,
        args.train,
        args.val,
        args.test,
        args.tof,
        args.slices,
        args.angles,
        args.size,
        args.counts,
        args.bad_blocks,
        args.seed,
    )
    return (
        f"wrote {args.train} train, {args.val} val and {args.test} test raw uint16 sinograms "
        f"[{args.tof}, {args.slices}, {args.angles}, {args.size}] and mask.npy under {out}"
    )
