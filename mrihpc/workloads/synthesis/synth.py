"""A synthetic twin of the IXI size64 set: brain phantoms with one anatomy and two contrasts.

Each subject: a head ellipse with a skull ring, cortex (grey matter), white matter, ventricles
(CSF) and a few lesions, with a smooth bias field and noise; T1 maps WM bright and CSF dark, T2
the reverse (as real T1- / T2-weighted images do). Written as ``<id> - T1.pt`` and
``<id> - T2.pt`` (float32 ``(H, W)`` in [0, 1]) with ids ``sub-IXI002``, ...; ``incomplete``
further subjects get a T1 file only.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

#: tissue -> (T1, T2) intensity
CONTRASTS = {
    "background": (0.0, 0.0),
    "skull": (0.9, 0.3),
    "gm": (0.55, 0.6),
    "wm": (0.8, 0.35),
    "csf": (0.12, 0.95),
    "lesion": (0.4, 0.85),
}


def tissues(rng: np.random.Generator, size: int) -> np.ndarray:
    """Integer label map ``(size, size)`` indexing CONTRASTS."""
    names = list(CONTRASTS)
    yy, xx = np.mgrid[-1 : 1 : size * 1j, -1 : 1 : size * 1j]
    ay, ax = rng.uniform(0.78, 0.9), rng.uniform(0.62, 0.75)
    r = (yy / ay) ** 2 + (xx / ax) ** 2
    out = np.zeros((size, size), int)
    out[r < 1] = names.index("skull")
    out[r < 0.82] = names.index("gm")
    wm = (yy / (ay * 0.75)) ** 2 + (xx / (ax * 0.72)) ** 2 + 0.08 * np.sin(
        7 * np.arctan2(yy, xx)
    ) < 1
    out[wm & (r < 0.82)] = names.index("wm")
    for side in (-1, 1):  # the lateral ventricles
        cy, cx = rng.uniform(-0.15, 0.1), side * rng.uniform(0.08, 0.16)
        out[
            ((yy - cy) / rng.uniform(0.2, 0.3)) ** 2 + ((xx - cx) / rng.uniform(0.05, 0.09)) ** 2
            < 1
        ] = names.index("csf")
    for _ in range(rng.integers(0, 4)):
        cy, cx = rng.uniform(-0.4, 0.4, 2)
        out[
            ((yy - cy) ** 2 + (xx - cx) ** 2 < rng.uniform(0.002, 0.008))
            & (out == names.index("wm"))
        ] = names.index("lesion")
    return out


def contrast(labels: np.ndarray, which: int, rng: np.random.Generator) -> np.ndarray:
    values = np.array([v[which] for v in CONTRASTS.values()])
    image = values[labels]
    yy, xx = np.mgrid[-1 : 1 : labels.shape[0] * 1j, -1 : 1 : labels.shape[1] * 1j]
    bias = 1 + 0.1 * (rng.uniform(-1, 1) * yy + rng.uniform(-1, 1) * xx)
    image = image * bias + rng.normal(0, 0.02, image.shape) * (labels > 0)
    return np.clip(image, 0, 1).astype(np.float32)


def generate(
    out: Path, subjects: int = 60, incomplete: int = 2, size: int = 64, seed: int = 0
) -> Path:
    import torch

    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for k in range(subjects + incomplete):
        labels = tissues(rng, size)
        name = f"sub-IXI{k + 2:03d}"
        torch.save(torch.from_numpy(contrast(labels, 0, rng)), out / f"{name} - T1.pt")
        if k < subjects:
            torch.save(torch.from_numpy(contrast(labels, 1, rng)), out / f"{name} - T2.pt")
    return out


def write_twin(out: Path, args) -> str:
    """``mrihpc data synth ixi``."""
    generate(out, args.subjects, args.incomplete, args.size, args.seed)
    return (
        f"wrote {args.subjects} subjects ('<id> - T1.pt' and '<id> - T2.pt') and {args.incomplete} "
        f"with T1 only under {out}"
    )
