"""The damaged-data cases of ``bad_inputs.py``: for each workload, a clean twin in its real
format and the ways to damage a copy of it (truncated, wrong shapes, wrong dtypes, NaNs, links,
missing keys), each returning the file a refusal must name."""

from __future__ import annotations

import io
import os
import shutil
import zipfile
from pathlib import Path
from typing import Callable

import numpy as np
import torch

TRAIN = {"epochs": 1, "batch_size": 2, "workers": 0, "precision": "fp32", "threads": 1}
CLUSTER = {"executor": "local", "time": "10:00"}
NOT_UTF8 = os.fsdecode(b"case\xff")


def _knee(work: Path) -> tuple[Path, Callable]:
    from mrihpc.workloads.knee.kspace.synth import generate

    root = generate(work / "knee", 4, slices=8, shape=(96, 80), recon_shape=(64, 64), seed=1)
    data = {
        "format": "fastmri",
        "skip_slices": 3,
        "mask": {"kind": "random", "accelerations": [4], "center_fractions": [0.08]},
    }
    return root, lambda r: {
        "name": "knee",
        "task": "reconstruction",
        "data": {**data, "root": str(r)},
        "model": {"channels": 8, "depth": 2, "residual": True},
        "train": TRAIN,
        "cluster": CLUSTER,
    }


def _h5(path: Path, key: str, change) -> None:
    import h5py

    with h5py.File(path, "a") as f:
        value = change(f[key][()])
        del f[key]
        f.create_dataset(key, data=value)


def _cine(work: Path) -> tuple[Path, Callable]:
    from mrihpc.workloads.cine.synth import generate

    npz = generate(work / "cine", cases=7, frames=7, size=32, seed=2)
    return npz.parent, lambda r: {
        "name": "cine",
        "task": "cine",
        "train": TRAIN,
        "cluster": CLUSTER,
        "data": {"root": str(r / npz.name), "mask": {"acceleration": 4, "sample_n": 4}},
        "model": {
            "unet": {"preset": "cine", "channels": 4, "depth": 2},
            "refiner": {"width": 4, "blocks": 1},
        },
    }


def _npz(root: Path, change) -> None:
    path = next(root.glob("*.npz"))
    a = np.load(path)["dataset"]
    np.savez(path, dataset=change(a.copy()))


def _npz_member(root: Path, header_shape, cut: int) -> None:
    path = next(root.glob("*.npz"))
    a = np.load(path)["dataset"]
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf,
        {
            "descr": np.lib.format.dtype_to_descr(a.dtype),
            "fortran_order": False,
            "shape": tuple(header_shape or a.shape),
        },
    )
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("dataset.npy", buf.getvalue() + a.tobytes()[: len(a.tobytes()) - cut])


def _ixi(work: Path) -> tuple[Path, Callable]:
    from mrihpc.workloads.synthesis.synth import generate

    root = generate(work / "ixi", subjects=8, incomplete=1, size=32, seed=3)
    return root, lambda r: {
        "name": "ixi",
        "task": "synthesis",
        "data": {"root": str(r)},
        "train": TRAIN,
        "model": {"mode": "generator", "G": {"widths": [8, 16, 16]}},
        "cluster": CLUSTER,
    }


def _pt(root: Path, name: str, value) -> None:
    torch.save(value, root / name)


def _sino(work: Path) -> tuple[Path, Callable]:
    from mrihpc.workloads.sinogram.synth import generate

    root = generate(
        work / "sino", train_files=2, val_files=1, test_files=1, tof=2, slices=8, angles=50, bins=64
    )
    for raw in root.rglob("*.raw"):  # float32, so NaN and subnormal cases can be written
        np.fromfile(raw, np.uint16).astype(np.float32).tofile(raw)
    return root, lambda r: {
        "name": "sino",
        "task": "sinogram",
        "train": TRAIN,
        "cluster": CLUSTER,
        "model": {"width": 4},
        "data": {
            "train_dir": str(r / "train"),
            "val_dir": str(r / "val"),
            "shape": [2, 8, 50, 64],
            "dtype": "float32",
            "epoch_size": 4,
            "val_samples": 2,
        },
    }


def _raw(path: Path, change) -> None:
    change(np.fromfile(path, np.float32)).astype(np.float32).tofile(path)


def _inpaint(spec: dict, root: Path) -> dict:
    return {
        **spec,
        "data": {**spec["data"], "mode": "inpaint", "mask_file": str(root / "mask.npy")},
    }


def _acdc(work: Path) -> tuple[Path, Callable]:
    from mrihpc.workloads.segmentation.synth import generate

    root = generate(work / "acdc", train=4, val=2, test=2, size=64, seed=1)
    return root, lambda r: {
        "name": "acdc",
        "task": "segmentation",
        "data": {"root": str(r)},
        "train": TRAIN,
        "model": {"preset": "acdc_small", "channels": 8, "depth": 2},
        "cluster": CLUSTER,
    }


def _png(path: Path, array: np.ndarray) -> None:
    from PIL import Image

    Image.fromarray(array).save(path)


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _loop(path: Path) -> None:
    os.symlink(path.name, path)


def _rename(path: Path, name: str) -> None:
    path.rename(path.with_name(name))


#: workload -> (clean data maker, [(case, damage(root) -> the file named, spec change or None)])
DATA = {
    "knee": (
        _knee,
        [
            ("not HDF5", lambda r: _write(r / "train" / "zz.h5", b"not hdf5")),
            ("folder named .h5", lambda r: (r / "train" / "d.h5").mkdir() or r / "train" / "d.h5"),
            ("link loop named .h5", lambda r: _loop(r / "val" / "l.h5") or r / "val" / "l.h5"),
            (
                "real k-space",
                lambda r: (
                    _h5(r / "train" / "file1000.h5", "kspace", np.abs)
                    or r / "train" / "file1000.h5"
                ),
            ),
            (
                "target cut short",
                lambda r: (
                    _h5(r / "train" / "file1000.h5", "reconstruction_esc", lambda t: t[:3])
                    or r / "train" / "file1000.h5"
                ),
            ),
            (
                "header not XML",
                lambda r: (
                    _h5(r / "train" / "file1000.h5", "ismrmrd_header", lambda h: b"<x")
                    or r / "train" / "file1000.h5"
                ),
            ),
            (
                "non-UTF-8 name",
                lambda r: (
                    shutil.copy(r / "train" / "file1000.h5", r / "train" / f"{NOT_UTF8}.h5")
                    and r / "train" / "case\\xff"
                ),
            ),
        ],
    ),
    "cine": (
        _cine,
        [
            ("all zero", lambda r: _npz(r, np.zeros_like) or r),
            ("NaN", lambda r: _npz(r, lambda a: a.__setitem__((2, 3, 5, 5), np.nan) or a) or r),
            ("int64", lambda r: _npz(r, lambda a: (a * 100).astype(np.int64)) or r),
            ("object", lambda r: _npz(r, lambda a: a[:, :, :8, :8].astype(object)) or r),
            ("six frames", lambda r: _npz(r, lambda a: a[:, :6]) or r),
            ("two cases", lambda r: _npz(r, lambda a: a[:2]) or r),
            ("member cut short", lambda r: _npz_member(r, None, 1000) or r),
            ("header claims 10^9 cases", lambda r: _npz_member(r, (10**9, 7, 32, 32), 0) or r),
        ],
    ),
    "synthesis": (
        _ixi,
        [
            (
                "complex",
                lambda r: (
                    _pt(r, "sub-IXI002 - T2.pt", torch.ones(32, 32, dtype=torch.complex64))
                    or r / "sub-IXI002 - T2.pt"
                ),
            ),
            (
                "bool",
                lambda r: (
                    _pt(r, "sub-IXI002 - T1.pt", torch.rand(32, 32) > 0.5)
                    or r / "sub-IXI002 - T1.pt"
                ),
            ),
            (
                "NaN",
                lambda r: (
                    _pt(r, "sub-IXI002 - T2.pt", torch.full((32, 32), float("nan")))
                    or r / "sub-IXI002 - T2.pt"
                ),
            ),
            (
                "constant target",
                lambda r: (
                    _pt(r, "sub-IXI002 - T2.pt", torch.zeros(32, 32)) or r / "sub-IXI002 - T2.pt"
                ),
            ),
            (
                "3-D",
                lambda r: (
                    _pt(r, "sub-IXI002 - T2.pt", torch.rand(2, 32, 32)) or r / "sub-IXI002 - T2.pt"
                ),
            ),
            (
                "another size",
                lambda r: (
                    _pt(r, "sub-IXI003 - T2.pt", torch.rand(40, 40)) or r / "sub-IXI003 - T2.pt"
                ),
            ),
            (
                "folder named .pt",
                lambda r: (r / "sub-IXI900 - T2.pt").mkdir() or r / "sub-IXI900 - T2.pt",
            ),
            (
                "one subject",
                lambda r: (
                    [p.unlink() for p in r.glob("*.pt") if not p.name.startswith("sub-IXI002")]
                    and r
                ),
            ),
            (
                "non-UTF-8 name",
                lambda r: (
                    shutil.copy(r / "sub-IXI002 - T1.pt", r / f"{NOT_UTF8} - T1.pt")
                    and r / "case\\xff"
                ),
            ),
        ],
    ),
    "sinogram": (
        _sino,
        [
            (
                "NaN",
                lambda r: (
                    _raw(
                        r / "val" / "case000_noisy.raw",
                        lambda v: np.where(np.arange(v.size) == 9, np.nan, v),
                    )
                    or r / "val" / "case000_noisy.raw"
                ),
            ),
            (
                "uint16 read as float32",
                lambda r: (
                    [
                        np.fromfile(p, np.float32).astype(np.uint16).tofile(p)
                        or p.write_bytes(p.read_bytes() * 2)
                        for p in r.rglob("*.raw")
                    ]
                    and r / "train" / "case000_clean.raw"
                ),
            ),
            (
                "constant target",
                lambda r: (
                    _raw(r / "train" / "case001_clean.raw", np.zeros_like)
                    or r / "train" / "case001_clean.raw"
                ),
            ),
            (
                "folder named like data",
                lambda r: (r / "train" / "x_clean.raw").mkdir() or r / "train" / "x_clean.raw",
            ),
            (
                "mask all missing",
                lambda r: np.save(r / "mask.npy", np.zeros((50, 64), np.uint8)) or r / "mask.npy",
            ),
            (
                "mask none missing",
                lambda r: np.save(r / "mask.npy", np.ones((50, 64), np.uint8)) or r / "mask.npy",
            ),
            ("0-byte mask", lambda r: _write(r / "mask.npy", b"")),
            (
                "non-UTF-8 name",
                lambda r: (
                    shutil.copy(
                        r / "train" / "case000_clean.raw", r / "train" / f"{NOT_UTF8}_clean.raw"
                    )
                    and r / "train" / "case\\xff"
                ),
            ),
        ],
    ),
    "segmentation": (
        _acdc,
        [
            (
                "1-bit image",
                lambda r: (
                    _png(r / "train/image/cmr1.png", np.eye(64, dtype=bool))
                    or r / "train/image/cmr1.png"
                ),
            ),
            (
                "blank image",
                lambda r: (
                    _png(r / "val/image/cmr5.png", np.zeros((64, 64), np.uint8))
                    or r / "val/image/cmr5.png"
                ),
            ),
            ("0-byte image", lambda r: _write(r / "train/image/cmr2.png", b"")),
            (
                "mask value 7",
                lambda r: (
                    _png(r / "val/mask/cmr5_mask.png", np.full((64, 64), 7, np.uint8))
                    or r / "val/mask/cmr5_mask.png"
                ),
            ),
            (
                "image without a mask",
                lambda r: (
                    (r / "train/mask/cmr2_mask.png").unlink() or r / "train/mask/cmr2_mask.png"
                ),
            ),
            (
                "link loop named .png",
                lambda r: _loop(r / "val/mask/l_mask.png") or r / "val/mask/l_mask.png",
            ),
            (
                "non-UTF-8 name",
                lambda r: (
                    shutil.copy(r / "train/image/cmr1.png", r / f"train/image/{NOT_UTF8}.png")
                    and r / "train/image/case\\xff"
                ),
            ),
        ],
    ),
}
INPAINT = {"mask all missing", "mask none missing", "0-byte mask"}
