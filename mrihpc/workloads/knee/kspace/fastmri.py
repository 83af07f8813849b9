"""fastMRI single-coil HDF5 volumes and the seed's coursework (nc2019) variant.

fastmri: ``kspace`` complex64 (slices, H, W); ``reconstruction_esc`` float32 (slices, 320, 320);
         attrs ``max``, ``norm``, ``acquisition``, ``patient_id``; ``ismrmrd_header`` XML.
nc2019:  train files hold ``kspace`` only (the target is |ifft2c(kspace)|, cropped);
         test files hold already-undersampled ``kspace_4af`` / ``kspace_8af`` and no target.

The slice index is built once (cached in a JSON file keyed by path, size and mtime); each
worker opens each file once, lazily, and reads one slice at a time.
"""

from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional, Sequence

import h5py
import numpy as np

from mrihpc.data import DataError, all_finite, check_data_file

ISMRMRD_NS = {"m": "http://www.ismrm.org/ISMRMRD"}
TEST_KEYS = ("kspace_4af", "kspace_8af")


@dataclass(frozen=True)
class Volume:
    """What the index knows of one file, without reading its arrays."""

    path: str
    num_slices: int
    kspace_shape: tuple[int, int]
    kspace_keys: tuple[str, ...]
    """``("kspace",)`` or, in the coursework test layout, ``("kspace_4af", "kspace_8af")``."""
    target_key: Optional[str]
    recon_shape: tuple[int, int]
    padding: tuple[int, int]
    """(padding_left, padding_right): acquired phase-encoding columns are [left, right)."""
    max_value: Optional[float]

    @property
    def name(self) -> str:
        return Path(self.path).name


def parse_header(xml: bytes | str, path: str) -> dict:
    """The ISMRMRD header's matrix sizes and the acquired column range (fastMRI's formula)."""
    try:
        root = ET.fromstring(xml)

        def ints(p: str) -> list[int]:
            node = root.find(p, ISMRMRD_NS)
            if node is None:
                raise DataError(f"{path}: ismrmrd_header: no element {p}")
            return [int(node.find(f"m:{a}", ISMRMRD_NS).text) for a in ("x", "y", "z")]

        enc = ints("m:encoding/m:encodedSpace/m:matrixSize")
        recon = ints("m:encoding/m:reconSpace/m:matrixSize")
        limits = root.find("m:encoding/m:encodingLimits/m:kspace_encoding_step_1", ISMRMRD_NS)
        center = int(limits.find("m:center", ISMRMRD_NS).text)
        maximum = int(limits.find("m:maximum", ISMRMRD_NS).text)
    except (ET.ParseError, AttributeError, TypeError, ValueError) as e:
        raise DataError(f"{path}: ismrmrd_header is not a valid ISMRMRD header ({e})") from None
    left = enc[1] // 2 - center
    return {"encoded": enc, "recon": recon, "padding": (left, left + maximum + 1)}


def scan_volume(path: Path, layout: str) -> Volume:
    """Check one file's keys, dtypes and shapes; DataError naming the file on any problem."""
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise DataError(f"{path}: not a readable HDF5 file ({e})") from None
    with f:
        keys = ("kspace",) if "kspace" in f else tuple(k for k in TEST_KEYS if k in f)
        if not keys:
            raise DataError(
                f"{path}: no k-space dataset; expected 'kspace' or {' / '.join(TEST_KEYS)}, "
                f"found {', '.join(sorted(f.keys())) or 'nothing'}"
            )
        shapes = set()
        for key in keys:
            ds = f[key]
            if not isinstance(ds, h5py.Dataset) or ds.dtype.kind != "c" or ds.ndim != 3:
                raise DataError(
                    f"{path}: {key} must be a complex (slices, H, W) array, "
                    f"got {getattr(ds, 'dtype', type(ds).__name__)} {getattr(ds, 'shape', '')}"
                )
            shapes.add(ds.shape)
        if len(shapes) != 1:
            raise DataError(f"{path}: k-space datasets differ in shape: {sorted(shapes)}")
        num_slices, height, width = shapes.pop()
        target_key, recon, max_value = None, None, None
        if layout == "fastmri" and "kspace" in keys:
            if "reconstruction_esc" not in f:
                raise DataError(
                    f"{path}: missing 'reconstruction_esc' (fastmri layout); "
                    f"use data.format: nc2019 for files with k-space only"
                )
            target = f["reconstruction_esc"]
            if target.dtype != np.float32 or target.ndim != 3 or target.shape[0] != num_slices:
                raise DataError(
                    f"{path}: reconstruction_esc must be float32 ({num_slices}, h, w), "
                    f"got {target.dtype} {target.shape}"
                )
            target_key, recon = "reconstruction_esc", tuple(target.shape[1:])
            max_value = float(f.attrs["max"]) if "max" in f.attrs else None
        padding = (0, width)
        if "ismrmrd_header" in f:
            header = parse_header(f["ismrmrd_header"][()], str(path))
            recon = recon or tuple(header["recon"][:2])
            padding = header["padding"]
        elif layout == "fastmri":
            raise DataError(f"{path}: missing 'ismrmrd_header' (fastmri layout)")
    recon = recon or (min(320, height), min(320, width))
    return Volume(
        str(path),
        num_slices,
        (height, width),
        keys,
        target_key,
        tuple(recon),
        tuple(padding),
        max_value,
    )


def list_files(folder: Path) -> list[Path]:
    """The HDF5 files of a split, sorted by name; DataError when the folder is missing or empty."""
    if not folder.is_dir():
        raise DataError(f"{folder}: no such data folder")
    named = sorted(p for p in folder.iterdir() if p.suffix in (".h5", ".hdf5"))
    for p in named:
        check_data_file(p, "HDF5 files")
    if not named:
        raise DataError(f"{folder}: no .h5 files")
    return named


def index_volumes(files: Sequence[Path], layout: str, cache: Optional[Path] = None) -> list[Volume]:
    """Scan every file once; with ``cache`` reuse entries whose size and mtime are unchanged."""
    cached = {}
    if cache and cache.is_file():
        try:
            cached = json.loads(cache.read_text())
        except json.JSONDecodeError:
            cached = {}
    volumes, fresh = [], {}
    for path in files:
        st = os.stat(path)
        key = f"{layout}:{Path(path).resolve()}:{st.st_size}:{st.st_mtime_ns}"
        if key in cached:
            entry = cached[key]
            volume = Volume(
                **{
                    **entry,
                    **{
                        k: tuple(entry[k])
                        for k in ("kspace_shape", "kspace_keys", "recon_shape", "padding")
                    },
                }
            )
        else:
            volume = scan_volume(Path(path), layout)
        volumes.append(volume)
        fresh[key] = asdict(volume)
    if cache and fresh != cached:
        from mrihpc.paths import atomic_write_json

        atomic_write_json(cache, fresh)
    return volumes


def split_folds(files: Sequence[Path], folds: int, fold: int) -> tuple[list[Path], list[Path]]:
    """Seed 000's cross-validation, by volume: fold k holds out the k-th contiguous chunk."""
    n = len(files)
    lo, hi = (n * fold) // folds, (n * (fold + 1)) // folds
    val = list(files[lo:hi])
    if not val or len(val) == n:
        raise DataError(f"{folds} folds need at least {folds} training volumes, found {n}")
    return list(files[:lo]) + list(files[hi:]), val


class VolumeReader:
    """Reads single slices; opens each file once per process (h5py handles do not survive fork)
    and keeps its datasets (looking one up by name costs as much as reading a 320 x 320 slice)."""

    def __init__(self) -> None:
        self._files: dict[str, h5py.File] = {}
        self._datasets: dict[tuple[str, str], h5py.Dataset] = {}
        self._pid = os.getpid()

    def _dataset(self, path: str, key: str) -> h5py.Dataset:
        if self._pid != os.getpid():  # inherited from the parent: reopen in this worker
            self._files, self._datasets, self._pid = {}, {}, os.getpid()
        ds = self._datasets.get((path, key))
        if ds is None:
            if path not in self._files:
                self._files[path] = h5py.File(path, "r")
            ds = self._datasets[(path, key)] = self._files[path][key]
        return ds

    def _read(self, path: str, key: str, index: int, dtype) -> np.ndarray:
        ds = self._dataset(path, key)
        if ds.dtype != dtype:  # e.g. complex128 k-space: converted by the read
            out = ds[index].astype(dtype)
        else:
            out = np.empty(ds.shape[1:], dtype)
            ds.read_direct(out, np.s_[index])
        if not all_finite(out):  # NaN k-space would train on as if clean
            raise DataError(
                f"{path}: {key} slice {index} holds NaN or infinite values; allowed: finite values"
            )
        return out

    def kspace(self, volume: Volume, key: str, index: int) -> np.ndarray:
        """One slice of k-space, complex64 ``(H, W)``."""
        return self._read(volume.path, key, index, np.complex64)

    def target(self, volume: Volume, index: int) -> Optional[np.ndarray]:
        """The reference image of one slice, float32 ``(h, w)``, or None when the file has none."""
        if volume.target_key is None:
            return None
        return self._read(volume.path, volume.target_key, index, np.float32)

    def __getstate__(self) -> dict:
        return {"_files": {}, "_datasets": {}, "_pid": -1}
