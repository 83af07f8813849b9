"""Cine data: the .npz converted once into an uncompressed, memory-mapped .npy in the cache;
per-frame Cartesian masks; the seeded case split; the forward model.

``np.load`` of an .npz decompresses the whole array into every process that touches it (the
course file is 200 x 20 x 192 x 192). Here the array is streamed out of the zip once, in
chunks, into ``<cache>/cine/<key>/data.npy`` (keyed by the source's path, size and mtime);
every DataLoader worker then reads only the bytes of the cases it serves (``pread`` at the
offset the map gives), so host memory stays flat as the number of cases grows.
"""

from __future__ import annotations

import json
import math
import os
import zipfile
from pathlib import Path

import numpy as np

from mrihpc.data import SSIM_WINDOW as MIN_SIDE, DataError
from mrihpc.data.cache import cached_dataset

CHUNK_BYTES = 32 << 20  # streamed conversion: at most this much of the array in memory


#: what a cine array may hold: real or complex floats (the course's file is complex64)
DTYPES = ("float32", "float64", "complex64", "complex128")


def _check_header(where: str, shape: tuple, fortran: bool, dtype: np.dtype) -> None:
    """DataError unless the header describes [N, T, X, Y] floats the split and metrics can use."""

    if len(shape) != 4 or fortran:
        raise DataError(
            f"{where} has shape {list(shape)}{' in Fortran order' if fortran else ''}; "
            "allowed: [N, T, X, Y] in C order"
        )
    if dtype.name not in DTYPES:
        raise DataError(f"{where} holds {dtype}; allowed: {', '.join(DTYPES)}")
    if shape[0] < 3:
        raise DataError(
            f"{where} holds {shape[0]} case(s); allowed: at least 3 (train, validation and test)"
        )
    if min(shape[1:]) < MIN_SIDE:
        raise DataError(
            f"{where} has frames x size {list(shape[1:])}; allowed: each >= {MIN_SIDE} "
            "(the 3-D SSIM's window)"
        )


def _convert(npz: Path, key: str, out: Path) -> None:
    """Stream ``npz[key]`` into ``out/data.npy`` and record its shape, dtype and value range;
    DataError naming the file for anything the training could not use (checked before a byte
    is written: the header against the member's size; while streaming: finite, non-constant
    cases)."""
    out.mkdir(parents=True)
    try:
        archive = zipfile.ZipFile(npz)
    except (zipfile.BadZipFile, OSError) as e:
        raise DataError(f"{npz}: not a readable .npz ({e})") from None
    with archive:
        member = f"{key}.npy"
        if member not in archive.namelist():
            keys = [n.removesuffix(".npy") for n in archive.namelist()]
            raise DataError(f"{npz}: no array {key!r}; it holds {', '.join(keys)} (set data.key)")
        where = f"{npz}: {key}"
        with archive.open(member) as f:
            try:
                version = np.lib.format.read_magic(f)
                read_header = (
                    np.lib.format.read_array_header_1_0
                    if version == (1, 0)
                    else np.lib.format.read_array_header_2_0
                )
                shape, fortran, dtype = read_header(f)
            except ValueError as e:
                raise DataError(f"{where} is not a NumPy array ({e})") from None
            _check_header(where, shape, fortran, dtype)
            per_case = int(np.prod(shape[1:])) * dtype.itemsize
            size, promised = archive.getinfo(member).file_size, f.tell() + shape[0] * per_case
            if (
                size != promised
            ):  # a member cut short, or a header claiming more cases than it holds
                raise DataError(
                    f"{where}: the header promises {list(shape)} {dtype} ({promised:,} bytes), the "
                    f"member holds {size:,} bytes; allowed: an array whose data matches its header"
                )
            step = max(1, CHUNK_BYTES // per_case)
            lo, hi = math.inf, -math.inf
            # plain writes, not a writable map: mapped dirty pages would count as this process's
            # memory
            with open(out / "data.npy", "wb") as target:
                np.lib.format.write_array_header_2_0(
                    target,
                    {
                        "descr": np.lib.format.dtype_to_descr(dtype),
                        "fortran_order": False,
                        "shape": tuple(shape),
                    },
                )
                for start in range(0, shape[0], step):
                    n = min(step, shape[0] - start)
                    chunk = f.read(n * per_case)
                    values = np.frombuffer(chunk, dtype=dtype).reshape(n, -1)
                    _check_cases(where, values, start)
                    target.write(chunk)
                    mag = np.abs(values)
                    lo, hi = min(lo, float(mag.min())), max(hi, float(mag.max()))
    meta = {
        "source": str(npz),
        "key": key,
        "shape": list(shape),
        "dtype": str(dtype),
        "min": lo,
        "max": hi,
        "in_unit_range": lo >= 0 and hi <= 1,
    }
    (out / "meta.json").write_text(json.dumps(meta, indent=2))


def _check_cases(where: str, values: np.ndarray, first: int) -> None:
    """DataError naming the first case (of ``values``: ``(cases, T*X*Y)``) with a NaN or
    infinite value, or whose magnitude is constant (an all-zero case has no PSNR)."""
    finite = np.isfinite(values).all(axis=1)
    if not finite.all():
        raise DataError(
            f"{where}: case {first + int(np.argmin(finite))} holds NaN or infinite values; "
            "allowed: finite values"
        )
    mag = np.abs(values)
    flat = mag.max(axis=1) == mag.min(axis=1)
    if flat.any():
        case = int(np.argmax(flat))
        raise DataError(
            f"{where}: case {first + case} is {float(mag[case, 0]):g} everywhere; allowed: cases "
            "whose images vary (a constant target has no PSNR and nothing to learn)"
        )


def source_array(data) -> Path:
    """The cached folder (data.npy, meta.json) of ``data``: the .npz converted, or phantoms
    written."""
    if data.synthetic is not None:
        from mrihpc.workloads.cine.synth import generate

        p = data.synthetic.model_dump()
        return (
            cached_dataset(
                "cine-phantoms",
                p,
                lambda out: _convert(generate(out / "src", **p), "dataset", out / "c"),
            )
            / "c"
        )
    npz = Path(data.root).resolve()
    if not npz.is_file():
        raise DataError(f"{npz}: no such file; data.root is the .npz holding [N, T, X, Y]")
    stat = npz.stat()
    ident = {"path": str(npz), "size": stat.st_size, "mtime": stat.st_mtime_ns, "key": data.key}
    return cached_dataset("cine", ident, lambda out: _convert(npz, data.key, out / "c")) / "c"


def meta(folder: Path) -> dict:
    return json.loads((folder / "meta.json").read_text())


def split_cases(num_cases: int, shares: tuple[int, int, int], seed: int) -> dict[str, list[int]]:
    """A seeded permutation of the cases cut in the given proportions (4:1:2 of 200 is
    114 / 29 / 57, the seed's). numpy's generator, so no hash seed changes it."""
    order = np.random.default_rng(seed).permutation(num_cases).tolist()
    total = sum(shares)
    n_val = max(1, round(num_cases * shares[1] / total))
    n_test = max(1, round(num_cases * shares[2] / total))
    n_train = num_cases - n_val - n_test
    return {
        "train": sorted(order[:n_train]),
        "val": sorted(order[n_train : n_train + n_val]),
        "test": sorted(order[n_train + n_val :]),
    }


def cartesian_mask(
    frames: int, nx: int, ny: int, acceleration: int, sample_n: int, rng: np.random.Generator
) -> np.ndarray:
    """One variable-density mask per frame, ``(frames, nx, ny)`` float32, lines along x.

    Schlemper's ``cartesian_mask(centred=True)``: pdf = exp(-0.5 / (nx/10)^2 (i - nx/2)^2)
    + 1/(2 acc), the ``sample_n`` centre lines excluded and always taken; nx // acc - sample_n
    further lines drawn without replacement from the normalised pdf, so every frame keeps
    exactly nx // acc lines (32 of 192 at 6x)."""
    i = np.arange(nx)
    pdf = np.exp(-0.5 / (nx / 10) ** 2 * (i - nx / 2) ** 2) + (nx / (2 * acceleration)) / nx
    centre = np.arange(nx // 2 - sample_n // 2, nx // 2 + (sample_n - sample_n // 2))
    pdf[centre] = 0
    pdf /= pdf.sum()
    n_lines = max(0, nx // acceleration - sample_n)
    mask = np.zeros((frames, nx, ny), np.float32)
    for t in range(frames):
        lines = rng.choice(nx, n_lines, replace=False, p=pdf)
        mask[t, lines, :] = 1
        mask[t, centre, :] = 1
    return mask


def fft2c(x: np.ndarray) -> np.ndarray:
    """Centred 2-D FFT over the last two axes (unnormalised; ``ifft2c`` undoes it)."""
    return np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(x, axes=(-2, -1))), axes=(-2, -1))


def ifft2c(k: np.ndarray) -> np.ndarray:
    return np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(k, axes=(-2, -1))), axes=(-2, -1))


class CineCases:
    """Cases of the mapped array. Item: ``input`` float32 ``(2, T, X, Y)`` (real and imaginary
    parts of the aliased frames), ``target`` ``(T, X, Y)`` (the fully sampled magnitude),
    ``kspace`` ``(2, T, X, Y)`` (measured lines, for data consistency), ``mask`` ``(T, X, 1)``,
    ``case`` its index in the file."""

    def __init__(self, folder: Path, cases: list[int], mask, train: bool, seed: int):
        self.path, self.cases, self.mask, self.train, self.seed = (
            folder / "data.npy",
            cases,
            mask,
            train,
            seed,
        )
        self.epoch, self._array = 0, None

    def __len__(self) -> int:
        return len(self.cases)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def volumes_index(self) -> list[list[int]]:
        """Each case is scored whole (all its frames)."""
        return [[i] for i in range(len(self))]

    def _array_map(self) -> np.ndarray:
        """The array's map: its shape, dtype and where the data starts in the file."""
        if self._array is None or self._pid != os.getpid():  # one per process (workers too)
            self._array, self._pid = np.load(self.path, mmap_mode="r"), os.getpid()
        return self._array

    def _case(self, case: int) -> np.ndarray:
        """One case ``(T, X, Y)``, read with pread at its offset in the map's file: only these
        bytes enter the process (touching the map would keep its pages in this process's RSS)."""
        array = self._array_map()
        per_case = int(np.prod(array.shape[1:])) * array.dtype.itemsize
        with open(self.path, "rb") as f:
            data = os.pread(f.fileno(), per_case, array.offset + case * per_case)
        return np.frombuffer(data, dtype=array.dtype).reshape(array.shape[1:])

    def masks(self, index: int) -> np.ndarray:
        case = self.cases[index]
        key = (
            [self.seed, self.epoch, case]
            if self.train and self.mask.fresh_per_epoch
            else [self.seed, case]
        )
        _, t, nx, ny = self._array_map().shape
        return cartesian_mask(
            t, nx, ny, self.mask.acceleration, self.mask.sample_n, np.random.default_rng(key)
        )

    def __getitem__(self, index: int) -> dict:
        image = self._case(self.cases[index])  # (T, X, Y): this case only
        mask = self.masks(index)
        k = fft2c(image.astype(np.complex64)) * mask
        zf = ifft2c(k)
        return {
            "input": np.stack([zf.real, zf.imag]).astype(np.float32),
            "target": np.abs(image).astype(np.float32),
            "kspace": np.stack([k.real, k.imag]).astype(np.float32),
            "mask": np.ascontiguousarray(mask[:, :, :1]),
            "case": self.cases[index],
        }

    def __getstate__(self):  # never pickle a map into a worker
        return {**self.__dict__, "_array": None}
