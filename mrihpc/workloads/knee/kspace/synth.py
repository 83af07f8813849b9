"""Synthetic knee-like volumes written in the real layouts, header included.

Each volume is a phantom with anatomy-like structure: a soft-tissue body, two bone
ellipses with a dark cortical rim and bright marrow, fat layers, smooth texture and a smooth
complex phase. The shapes change smoothly along the slices and the outer slices fade into
noise (which is why the seed skips the first five). Zero-filled reconstructions of it show
real aliasing, so a network has something to learn.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from mrihpc.data.cache import cached_dataset

HEADER = """<?xml version="1.0" encoding="utf-8"?>
<ismrmrdHeader xmlns="http://www.ismrm.org/ISMRMRD">
  <encoding>
    <encodedSpace><matrixSize><x>{ex}</x><y>{ey}</y><z>1</z></matrixSize></encodedSpace>
    <reconSpace><matrixSize><x>{rx}</x><y>{ry}</y><z>1</z></matrixSize></reconSpace>
    <encodingLimits>
      <kspace_encoding_step_1><minimum>0</minimum><maximum>{maximum}</maximum><center>{center}</center></kspace_encoding_step_1>
    </encodingLimits>
  </encoding>
</ismrmrdHeader>"""


def _smooth_field(rng: np.random.Generator, shape: tuple[int, int], cutoff: float) -> np.ndarray:
    """Low-pass random field in [-1, 1]: noise filtered by a Gaussian of relative width
    ``cutoff``."""
    ky = np.fft.fftfreq(shape[0])[:, None]
    kx = np.fft.fftfreq(shape[1])[None, :]
    spectrum = np.fft.fft2(rng.standard_normal(shape)) * np.exp(-(kx**2 + ky**2) / (2 * cutoff**2))
    field = np.real(np.fft.ifft2(spectrum))
    return field / (np.abs(field).max() + 1e-12)


def _ellipse(yy, xx, cy, cx, ry, rx, angle=0.0) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    y, x = yy - cy, xx - cx
    return ((c * x + s * y) / rx) ** 2 + ((-s * x + c * y) / ry) ** 2 <= 1.0


def phantom_volume(
    rng: np.random.Generator, slices: int, fov: tuple[int, int], body: tuple[int, int]
) -> np.ndarray:
    """Complex images ``(slices, H, W)`` of one volume; the anatomy fits inside ``body`` (h, w)."""
    h, w = fov
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    cy, cx = h / 2, w / 2
    by, bx = body[0] / 2, body[1] / 2
    texture = 1 + 0.15 * _smooth_field(rng, fov, 0.08)
    fine = 1 + 0.05 * _smooth_field(rng, fov, 0.25)
    params = rng.uniform(0.85, 1.15, size=8)
    phase_coef = rng.normal(0, 1.0, size=3)
    out = np.zeros((slices, h, w), np.complex64)
    for s in range(slices):
        z = (s + 0.5) / slices - 0.5
        profile = max(0.0, 1 - (2.2 * z) ** 2)  # outer slices fade to noise
        if profile <= 0:
            continue
        sc = np.sqrt(profile)
        body_mask = _ellipse(yy, xx, cy, cx, 0.92 * by * sc * params[0], 0.85 * bx * sc * params[1])
        fat = body_mask & ~_ellipse(yy, xx, cy, cx, 0.82 * by * sc, 0.76 * bx * sc * params[1])
        image = 0.45 * body_mask + 0.45 * fat
        for sign, k in ((-1, 2), (1, 4)):  # femur above, tibia below the joint line
            oy = cy + sign * 0.42 * by * params[k]
            bone = _ellipse(
                yy,
                xx,
                oy,
                cx + 0.05 * bx * z,
                0.38 * by * sc,
                0.42 * bx * sc * params[k + 1],
                0.2 * z,
            )
            marrow = _ellipse(
                yy,
                xx,
                oy,
                cx + 0.05 * bx * z,
                0.32 * by * sc,
                0.36 * bx * sc * params[k + 1],
                0.2 * z,
            )
            image = np.where(bone, 0.08, image)
            image = np.where(marrow, 0.75, image)
        cartilage = _ellipse(yy, xx, cy, cx, 0.05 * by * sc, 0.35 * bx * sc * params[6]) & body_mask
        image = np.where(cartilage, 0.95, image) * texture * fine * profile
        phase = phase_coef[0] * (yy - cy) / h + phase_coef[1] * (xx - cx) / w + phase_coef[2] * z
        out[s] = image * np.exp(1j * np.pi * phase)
    return out


def write_volume(
    path: Path,
    rng: np.random.Generator,
    slices: int,
    shape: tuple[int, int],
    recon: tuple[int, int],
    layout: str,
    split: str,
) -> None:
    """One HDF5 file in ``layout`` for ``split`` (train / val / test)."""
    # here, not at the top: submitting with the data already cached never imports torch
    import h5py
    import torch

    from mrihpc.workloads.knee.kspace.masks import RandomMask, seed_from_name
    from mrihpc.workloads.knee.kspace.transforms import apply_mask, center_crop, fft2c

    images = phantom_volume(rng, slices, shape, (recon[0], min(recon[1], shape[1])))
    kspace = fft2c(torch.from_numpy(images))
    noise = (rng.standard_normal(kspace.shape) + 1j * rng.standard_normal(kspace.shape)) * 0.002
    kspace = (kspace + torch.from_numpy(noise.astype(np.complex64))).to(torch.complex64)
    target = (
        center_crop(
            torch.fft.fftshift(
                torch.fft.ifft2(torch.fft.ifftshift(kspace, dim=(-2, -1)), norm="ortho"),
                dim=(-2, -1),
            ).abs(),
            recon,
        )
        .numpy()
        .astype(np.float32)
    )
    width = shape[1]
    header = HEADER.format(
        ex=shape[0], ey=width, rx=recon[0], ry=recon[1], maximum=width - 1, center=width // 2
    )
    with h5py.File(path, "w") as f:
        if layout == "nc2019" and split == "test":
            for acc, fraction in ((4, 0.08), (8, 0.04)):
                mask, _ = RandomMask([acc], [fraction])(
                    width, np.random.default_rng(seed_from_name(path.name) + acc)
                )
                f.create_dataset(f"kspace_{acc}af", data=apply_mask(kspace, mask).numpy())
            return
        f.create_dataset("kspace", data=kspace.numpy())
        if layout == "fastmri":
            f.create_dataset("reconstruction_esc", data=target)
            f.create_dataset("ismrmrd_header", data=header.encode())
            f.attrs.update(
                {
                    "max": float(target.max()),
                    "norm": float(np.linalg.norm(target)),
                    "acquisition": "CORPD_FBK",
                    "patient_id": hashlib.sha1(path.name.encode()).hexdigest(),
                }
            )


def split_counts(volumes: int) -> dict[str, int]:
    """How many volumes go to each split: about a quarter held out."""
    held = max(1, round(volumes / 4))
    return {"train": volumes - held, "val": held}


def generate(
    out: Path,
    volumes: int,
    slices: int = 16,
    shape=(640, 368),
    recon_shape=(320, 320),
    layout: str = "fastmri",
    seed: int = 0,
) -> Path:
    """Write a dataset under ``out`` (train/ and val/, nc2019 also test/); returns ``out``."""
    rng = np.random.default_rng(seed)
    counts = split_counts(volumes)
    if layout == "nc2019":
        counts = {"train": counts["train"], "test": counts["val"]}
    index = 0
    for split, n in counts.items():
        (out / split).mkdir(parents=True, exist_ok=True)
        for _ in range(n):
            name = f"file{1000 + index}.h5"
            write_volume(
                out / split / name,
                np.random.default_rng(rng.integers(2**32)),
                slices,
                tuple(shape),
                tuple(recon_shape),
                layout,
                split,
            )
            index += 1
    return out


def ensure_synthetic(params: dict, layout: str) -> Path:
    """The cached dataset for ``params`` (SyntheticSpec as a dict), generated once."""
    return cached_dataset(
        layout,
        params,
        lambda out: generate(
            out,
            params["volumes"],
            params["slices"],
            params["shape"],
            params["recon_shape"],
            layout,
            params["seed"],
        ),
    )


def write_twin(out: Path, args) -> str:
    """``mrihpc data synth knee``."""
    generate(
        out,
        args.volumes,
        args.slices,
        tuple(args.shape),
        tuple(args.recon_shape),
        args.layout,
        args.seed,
    )
    return f"wrote {args.volumes} {args.layout} volumes under {out}"
