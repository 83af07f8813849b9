"""A synthetic twin of the course's cine.npz: beating-heart phantoms in [0, 1].

Each case: a static body ellipse with texture, and a heart whose blood pool and myocardium
radii vary periodically over the frames (one beat per case, random phase and rate), with
Gaussian noise. Saved as ``cine.npz`` with one float32 array ``dataset`` [N, T, X, Y].
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def phantom(rng: np.random.Generator, frames: int, size: int) -> np.ndarray:
    """One case ``(frames, size, size)`` float32 in [0, 1]."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size - 0.5
    body = (yy / rng.uniform(0.38, 0.45)) ** 2 + (xx / rng.uniform(0.40, 0.47)) ** 2 < 1
    background = body * (
        0.25 + 0.08 * np.sin(xx * rng.uniform(12, 20)) * np.cos(yy * rng.uniform(10, 18))
    )
    cy, cx = rng.uniform(-0.08, 0.08, 2)
    phase, r0, beat = rng.uniform(0, 2 * np.pi), rng.uniform(0.07, 0.1), rng.uniform(0.2, 0.35)
    out = np.empty((frames, size, size), np.float32)
    for t in range(frames):
        squeeze = 1 + beat * np.sin(2 * np.pi * t / frames + phase)  # systole -> diastole
        d = np.hypot(yy - cy, (xx - cx) * 0.9)
        pool, wall = r0 * squeeze, r0 * squeeze + 0.04
        frame = background.copy()
        frame[d < wall] = 0.15
        frame[d < pool] = 0.9
        rv = np.hypot(yy - cy, xx - cx - wall * 1.6) < r0 * 1.2 * squeeze
        frame[rv & (d >= wall)] = 0.75
        out[t] = frame
    out += rng.normal(0, 0.02, out.shape).astype(np.float32)
    return np.clip(out, 0, 1)


def generate(out: Path, cases: int = 28, frames: int = 20, size: int = 192, seed: int = 0) -> Path:
    """Write ``out/cine.npz`` (compressed, like the course file); returns its path."""
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    data = np.stack(
        [phantom(np.random.default_rng(rng.integers(2**32)), frames, size) for _ in range(cases)]
    )
    path = out / "cine.npz"
    np.savez_compressed(path, dataset=data)
    return path


def write_twin(out: Path, args) -> str:
    """``mrihpc data synth cine``."""
    path = generate(out, args.cases, args.frames, args.size, args.seed)
    return (
        f"wrote {args.cases} beating-heart cases of {args.frames} frames ([N, T, X, Y] as "
        f"'dataset') to {path}"
    )
