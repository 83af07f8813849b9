"""Raw sinograms: layout checks, memory-light slice reads, wrap padding, the sampled dataset.

A file is many GB, so nothing ever holds one: a sample reads its few slices with ``pread`` at
their offsets (``[TOF, Slice, W, L]`` in C order puts each ``W x L`` slice in one contiguous run),
and the per-file input maximum (the default scale) is computed once, streamed, and cached.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
from mrihpc.data import DataError, all_finite, check_data_file
from mrihpc.data.cache import cache_root, cached_dataset

SPLIT_DIRS = {"train": "train_dir", "val": "val_dir", "test": "test_dir"}


@dataclass(frozen=True)
class Layout:
    """Where the files are and what they hold (the spec's, or the synthetic twin's)."""

    dirs: dict  # split -> folder (test falls back to val)
    shape: tuple[int, int, int, int]
    dtype: str
    mask_file: Optional[Path]


@dataclass(frozen=True)
class Case:
    stem: str
    clean: Optional[Path]
    """None for a new acquisition in a test folder: predicted, not scored."""
    noisy: Optional[Path]


def resolve_layout(data) -> Layout:
    if data.synthetic is not None:
        from mrihpc.workloads.sinogram.synth import generate

        p = data.synthetic.model_dump()
        root = cached_dataset("sinogram", p, lambda out: generate(out, **p))
        meta = json.loads((root / "layout.json").read_text())
        return Layout(
            {s: root / s for s in SPLIT_DIRS},
            tuple(meta["shape"]),
            meta["dtype"],
            root / "mask.npy",
        )
    dirs = {s: Path(getattr(data, key)) for s, key in SPLIT_DIRS.items() if getattr(data, key)}
    dirs.setdefault("test", dirs["val"])
    return Layout(
        dirs, tuple(data.shape), data.dtype, Path(data.mask_file) if data.mask_file else None
    )


def list_cases(folder: Path, data, unpaired: bool = False) -> list[Case]:
    """The clean files of ``folder`` (sorted) with their noisy partners; DataError lists every
    clean file without its partner when denoising. ``unpaired`` (the folder predicted, when
    denoising): noisy files without a clean one are cases too, predicted but not scored."""
    for path in sorted(
        p for suffix in {data.clean_suffix, data.noisy_suffix} for p in folder.glob(f"*{suffix}")
    ):
        check_data_file(path, "raw sinogram files")
    cleans = sorted(folder.glob(f"*{data.clean_suffix}"))
    extra = []
    if unpaired and data.mode == "denoise":
        stems = {p.name[: -len(data.clean_suffix)] for p in cleans}
        extra = [
            Case(p.name[: -len(data.noisy_suffix)], None, p)
            for p in sorted(folder.glob(f"*{data.noisy_suffix}"))
            if p.is_file() and p.name[: -len(data.noisy_suffix)] not in stems
        ]
    if not cleans and not extra:
        also = (
            f" or *{data.noisy_suffix} (data.noisy_suffix)"
            if unpaired and data.mode == "denoise"
            else ""
        )
        raise DataError(f"{folder}: no *{data.clean_suffix} files (data.clean_suffix){also}")
    cases, missing = [], []
    for clean in cleans:
        stem = clean.name[: -len(data.clean_suffix)]
        noisy = clean.with_name(stem + data.noisy_suffix)
        if data.mode == "denoise" and not noisy.is_file():
            missing.append(
                f"{clean}: no noisy partner {noisy.name} (data.noisy_suffix) for mode denoise"
            )
        cases.append(Case(stem, clean, noisy if data.mode == "denoise" else None))
    if missing:
        raise DataError("\n".join(missing))
    return sorted(cases + extra, key=lambda c: c.stem)


def expected_bytes(shape, dtype: str) -> int:
    return int(np.prod(shape)) * np.dtype(dtype).itemsize


def read_mask(path: Path, shape) -> np.ndarray:
    """The bad-block mask as float32 ``(Slice, W, L)`` (1 measured, 0 missing); DataError
    otherwise."""
    _, slices, w, length = shape
    if path.suffix != ".npy" or not path.is_file():
        raise DataError(
            f"{path}: no such .npy file; expected a .npy of [W, L] or [Slice, W, L] (1 "
            "measured, 0 missing)"
        )
    try:
        mask = np.load(path, allow_pickle=False)
    except (ValueError, EOFError, OSError) as e:  # a pickle, a 0-byte or cut-short file
        raise DataError(
            f"{path}: not a readable .npy ({type(e).__name__}: {e or 'empty file'})"
        ) from None
    if mask.shape not in ((w, length), (slices, w, length)):
        raise DataError(
            f"{path}: mask shape {list(mask.shape)}; expected [{w}, {length}] or [{slices}, {w}, "
            f"{length}] for data.shape {list(shape)}"
        )
    if not np.isin(mask, (0, 1)).all():
        raise DataError(f"{path}: mask values must be 0 (missing) or 1 (measured)")
    if (
        mask.min() == mask.max()
    ):  # all missing: no input; none missing: nothing to inpaint, hole metrics undefined
        raise DataError(
            f"{path}: every block is {'measured (1)' if mask.min() else 'missing (0)'}; allowed: a "
            "mask with both measured (1) and missing (0) blocks"
        )
    return np.broadcast_to(mask.astype(np.float32), (slices, w, length))


def check_folders(data) -> list[str]:
    """Every problem with the raw files (sizes, partners, mask), each naming its file."""
    if data.synthetic is not None:
        return []
    layout, problems = resolve_layout(data), []
    want = expected_bytes(layout.shape, layout.dtype)
    for split, folder in layout.dirs.items():
        if split == "test" and not data.test_dir:
            continue  # predicting the test split falls back to val_dir
        key = f"data.{SPLIT_DIRS[split]}"
        if not folder.is_dir():
            problems.append(f"{key}: {folder} is not a folder")
            continue
        try:
            cases = list_cases(folder, data, unpaired=split == "test")
        except DataError as e:
            problems += [f"{key}: {line}" for line in str(e).splitlines()]
            continue
        for path in [p for c in cases for p in (c.clean, c.noisy) if p is not None]:
            size = path.stat().st_size
            if size != want:
                problems.append(
                    f"{key}: {path}: {size} bytes; data.shape {list(layout.shape)} of "
                    f"{layout.dtype} needs {want} bytes"
                )
            elif why := value_problem(
                path, layout.dtype, target=path.name.endswith(data.clean_suffix)
            ):
                problems.append(f"{key}: {path}: {why}")
    if data.mode == "inpaint":
        try:
            read_mask(layout.mask_file, layout.shape)
        except DataError as e:
            problems.append(f"data.mask_file: {e}")
    return problems


def read_planes(path: Path, shape, dtype: str, planes: list[tuple[int, int]]) -> np.ndarray:
    """``(len(planes), W, L)`` float32 of the (TOF bin, slice) planes: one open, one ``pread``
    each."""
    _, n_slices, w, length = shape
    size = w * length * np.dtype(dtype).itemsize
    out = np.empty((len(planes), w, length), np.float32)
    with open(path, "rb") as f:
        for i, (t, s) in enumerate(planes):
            data = os.pread(f.fileno(), size, (t * n_slices + s) * size)
            if len(data) != size:
                raise DataError(
                    f"{path}: short read at TOF {t} slice {s}: the file is smaller than "
                    "data.shape says"
                )
            out[i] = np.frombuffer(data, dtype=dtype).reshape(w, length)
            if not all_finite(out[i]):  # changed since the submit's check: fail naming it
                raise DataError(
                    f"{path}: TOF {t} slice {s} holds NaN or infinite values; allowed: "
                    "finite values"
                )
    return out


def file_stats(path: Path, dtype: str, chunk: int = 1 << 24) -> dict:
    """{max, min, finite, max_abs} of a raw file, streamed once; cached on disk by (path, size,
    mtime), so the submit's check and the nodes' scales read each file once between them."""
    st = path.stat()
    key = hashlib.sha1(
        f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}|{dtype}|stats".encode()
    ).hexdigest()[:16]
    cached = cache_root() / "sinogram-stats" / f"{key}.json"
    if cached.is_file():
        return json.loads(cached.read_text())
    top, bottom, finite, nonzero, subnormal = -np.inf, np.inf, True, 0, 0
    with open(path, "rb") as f:
        while block := f.read(chunk):
            values = np.frombuffer(block, dtype=dtype)
            ok = np.isfinite(values)
            finite = finite and bool(ok.all())
            values = values if finite else values[ok]
            if values.size:
                top, bottom = max(top, float(values.max())), min(bottom, float(values.min()))
                nonzero += int(np.count_nonzero(values))
                if values.dtype.kind == "f":
                    magnitude = np.abs(values)
                    subnormal += int(
                        np.count_nonzero(
                            (magnitude > 0) & (magnitude < np.finfo(values.dtype).tiny)
                        )
                    )
    stats = {
        "path": str(path),
        "max": top,
        "min": bottom,
        "max_abs": max(abs(top), abs(bottom), 0.0),
        "finite": finite,
        "nonzero": nonzero,
        "subnormal": subnormal,
    }
    cached.parent.mkdir(parents=True, exist_ok=True)
    tmp = cached.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(stats))
    os.replace(tmp, cached)
    return stats


def file_max(path: Path, dtype: str) -> float:
    """The largest value in a raw file (the default scale)."""
    return max(file_stats(path, dtype)["max"], 0.0)


#: a float32 file whose every value is this small is not float32 data: uint16 counts read as
#: float32 (the same byte count) are mostly subnormal (a pair of counts below 128 makes one around
#: 1e-40) and all tiny for counts below a few thousand. Real float32 sinograms hold no subnormals.
TINY = 1e-30
SUBNORMAL_FRACTION = 0.01


def value_problem(path: Path, dtype: str, target: bool) -> str:
    """What is wrong with a raw file's values ('' when nothing): NaN or infinite values, another
    dtype's bytes, and for a target (the clean file) no signal at all."""
    stats = file_stats(path, dtype)
    if not stats["finite"]:
        return "holds NaN or infinite values; allowed: finite values"
    if dtype == "float32" and (
        0 < stats["max_abs"] < TINY or stats["subnormal"] > SUBNORMAL_FRACTION * stats["nonzero"]
    ):
        return (
            f"not float32 data (uint16 counts read as float32?): {stats['subnormal']} of "
            f"{stats['nonzero']} non-zero values are subnormal, the largest "
            f"{stats['max_abs']:.3g}; allowed: data.dtype the files were written in"
        )
    if target and stats["max"] == stats["min"]:
        return (
            f"every value is {stats['max']:g}; allowed: a clean sinogram with counts (the target)"
        )
    return ""


def pad_amounts(n: int, multiple: int) -> tuple[int, int]:
    """(before, after) bringing ``n`` up to a multiple of ``multiple``, split evenly (50 -> 64: 7,
    7)."""
    extra = -n % multiple
    return extra // 2, extra - extra // 2


def wrap_pad(x: np.ndarray, multiple: int) -> np.ndarray:
    """Wrap-pad the last two axes of ``(..., W, L)`` up to multiples of ``multiple``: a sinogram is
    periodic in angle, and the wrap keeps the padded border free of edges the model would learn."""
    pads = [(0, 0)] * (x.ndim - 2) + [pad_amounts(n, multiple) for n in x.shape[-2:]]
    return np.pad(x, pads, mode="wrap")


def crop(x, size: tuple[int, int], multiple: int):
    """Undo ``wrap_pad``: the central ``size`` of the last two axes (numpy arrays or tensors)."""
    (top, _), (left, _) = pad_amounts(size[0], multiple), pad_amounts(size[1], multiple)
    return x[..., top : top + size[0], left : left + size[1]]


def neighbours(centre: int, count: int, n: int) -> list[int]:
    """``count`` indices centred on ``centre``, clamped to [0, n) (edges repeat)."""
    half = count // 2
    return [min(max(centre + k, 0), n - 1) for k in range(-half, half + 1)]


class SinogramSlices:
    """Samples ``(case, tof, slice)`` of the raw files. Item: ``input`` float32 ``(C, Wp, Lp)`` (C
    neighbouring slices, scaled, wrap-padded), ``target`` ``(1, Wp, Lp)`` (the clean centre slice),
    ``hole`` ``(1, Wp, Lp)`` (1 where inpainting must fill in; zeros when denoising), ``scale``
    (the divisor, to write predictions back in counts). Training draws ``epoch_size`` samples per
    epoch from (seed, epoch, index); validation is a fixed seeded draw of ``val_samples``."""

    def __init__(
        self, cases: list[Case], layout: Layout, data, train: bool, seed: int, scales: list[float]
    ):
        self.cases, self.layout, self.data, self.train, self.seed = cases, layout, data, train, seed
        self.scales = scales
        self.mask = read_mask(layout.mask_file, layout.shape) if data.mode == "inpaint" else None
        self.epoch = 0
        tof, slices = layout.shape[:2]
        if not train:
            rng = np.random.default_rng([seed, 1 << 30])
            self.fixed = [
                (int(rng.integers(len(cases))), int(rng.integers(tof)), int(rng.integers(slices)))
                for _ in range(data.val_samples)
            ]

    def __len__(self) -> int:
        return self.data.epoch_size if self.train else len(self.fixed)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def volumes_index(self) -> list[list[int]]:
        """Each validation slice is scored on its own."""
        return [[i] for i in range(len(self))]

    def where(self, i: int) -> tuple[int, int, int]:
        if not self.train:
            return self.fixed[i]
        rng = np.random.default_rng([self.seed, self.epoch, i])
        tof, slices = self.layout.shape[:2]
        return int(rng.integers(len(self.cases))), int(rng.integers(tof)), int(rng.integers(slices))

    def sample(self, case: int, tof: int, slc: int) -> dict:
        """One sample at (case, TOF bin, slice), unaugmented."""
        c, shape, dtype, d = self.cases[case], self.layout.shape, self.layout.dtype, self.data
        if d.neighbours == "slice":
            picks = [(tof, s) for s in neighbours(slc, d.channels, shape[1])]
        else:
            picks = [(t, slc) for t in neighbours(tof, d.channels, shape[0])]
        source = c.noisy if d.mode == "denoise" else c.clean
        stack = read_planes(source, shape, dtype, picks)
        hole = np.zeros((1, *shape[2:]), np.float32)
        if self.mask is not None:
            stack *= np.stack([self.mask[s] for _, s in picks])
            hole = 1 - self.mask[slc][None]
        scale = self.scales[case]
        item = {"input": stack / scale, "hole": hole.astype(np.float32), "scale": np.float32(scale)}
        if c.clean is not None:  # an unpaired test case has no target
            item["target"] = read_planes(c.clean, shape, dtype, [(tof, slc)]) / scale
        return item

    def __getitem__(self, i: int) -> dict:
        item = self.sample(*self.where(i))
        if self.train and (self.data.augment.rotate_deg or self.data.augment.zoom_max > 1):
            item = self._augmented(item, np.random.default_rng([self.seed, self.epoch, i, 1]))
        m = self.data.pad_multiple
        padded = {
            k: np.ascontiguousarray(wrap_pad(v, m)) if k != "scale" else v for k, v in item.items()
        }
        return padded | {"index": i}  # what validation scores it as

    def _augmented(self, item: dict, rng: np.random.Generator) -> dict:
        """The same rotation and zoom (centre crop back) for input, target and hole; nearest for the
        hole."""
        from scipy import ndimage

        a = self.data.augment
        angle = rng.uniform(-a.rotate_deg, a.rotate_deg) if rng.random() < a.rotate_p else 0.0
        zoom = rng.uniform(1.1, a.zoom_max) if a.zoom_max > 1 and rng.random() < a.zoom_p else 1.0

        def warp(x: np.ndarray, order: int) -> np.ndarray:
            if angle:
                x = ndimage.rotate(
                    x, angle, axes=(1, 2), reshape=False, order=order, mode="nearest"
                )
            if zoom != 1.0:
                big = ndimage.zoom(x, (1, zoom, zoom), order=order)
                top, left = (big.shape[1] - x.shape[1]) // 2, (big.shape[2] - x.shape[2]) // 2
                x = big[:, top : top + x.shape[1], left : left + x.shape[2]]
            return x.astype(np.float32)

        return {
            "input": warp(item["input"], 1),
            "target": warp(item["target"], 1),
            "hole": warp(item["hole"], 0),
            "scale": item["scale"],
        }
