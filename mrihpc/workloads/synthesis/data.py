"""IXI pairs: '<id> - <contrast>.pt' files matched by subject, the seeded split, value scaling.

The seed split ``list(set(ids))``, whose order changes with PYTHONHASHSEED: two DDP ranks (or
two runs) got different splits. Here the ids are sorted, then shuffled by ``data.split_seed``
with numpy's generator, so every process and every run agrees.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from mrihpc.data import DataError, check_data_file
from mrihpc.data.cache import cached_dataset

NAME = re.compile(r"^(?P<id>\S+) - (?P<contrast>[^.]+)\.pt$")
#: what an image file may hold: real values float32 represents exactly (a complex image would lose
#: its imaginary part, a mask or a 64-bit count its meaning, in the cast)
DTYPES = ("float16", "bfloat16", "float32", "float64", "uint8", "int8", "int16")
#: the smallest side: SSIM's 7 x 7 window (the default metric)
MIN_SIDE = 7


def data_root(data) -> Path:
    """The folder of .pt files (the synthetic one generated into the cache on first use)."""
    if data.synthetic is None:
        return Path(data.root)
    from mrihpc.workloads.synthesis.synth import generate

    p = data.synthetic.model_dump()
    return cached_dataset("ixi", p, lambda out: generate(out, **p))


def pair_files(data) -> tuple[dict[str, tuple[Path, Path]], list[str]]:
    """({id: (source file, target file)} for subjects with both, sorted ids missing one of them).
    DataError when the folder is missing or holds no complete pair."""
    root = data_root(data)
    if not root.is_dir():
        raise DataError(f"{root}: no such folder")
    found: dict[str, dict[str, Path]] = {}
    for path in sorted(root.iterdir()):
        m = NAME.match(path.name)
        if m and m["contrast"] in (data.source, data.target):
            check_data_file(path, "'<id> - <contrast>.pt' tensor files")
            found.setdefault(m["id"], {})[m["contrast"]] = path
    pairs = {i: (f[data.source], f[data.target]) for i, f in sorted(found.items()) if len(f) == 2}
    incomplete = sorted(set(found) - set(pairs))
    if not pairs:
        raise DataError(
            f"{root}: no subject with both '<id> - {data.source}.pt' and '<id> - {data.target}.pt'"
            f" ({len(found)} subjects with one of them)"
        )
    return pairs, incomplete


def split_subjects(
    ids: list[str], test_fraction: float, seed: int, val_fraction: float = 0.0
) -> dict[str, list[str]]:
    """Sorted ids and a seeded permutation: the last test_fraction are the test subjects (116 of
    577, as the seed's), the first (1 - test_fraction) are for training, of which the last
    ``val_fraction`` of all subjects validate (choose best.pt, val_*). The test subjects do not
    depend on val_fraction; the seed had no validation split and chose on its test subjects."""
    ordered = sorted(ids)
    order = np.random.default_rng(seed).permutation(len(ordered))
    n_train = int((1 - test_fraction) * len(ordered))
    n_val = min(n_train, round(val_fraction * len(ordered)))
    pick = lambda part: sorted(ordered[i] for i in part)  # noqa: E731
    return {
        "train": pick(order[: n_train - n_val]),
        "val": pick(order[n_train - n_val : n_train]),
        "test": pick(order[n_train:]),
    }


def load_image(path: Path):
    """One 2-D float32 tensor from a .pt file (``(H, W)`` or ``(1, H, W)``); DataError otherwise."""
    import torch

    try:
        t = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle, zip or tensor errors: name the file
        raise DataError(f"{path}: not a readable tensor file ({type(e).__name__}: {e})") from None
    if not torch.is_tensor(t):
        raise DataError(f"{path}: holds a {type(t).__name__}, expected a tensor")
    dtype = str(t.dtype).removeprefix("torch.")
    if dtype not in DTYPES:
        raise DataError(f"{path}: dtype {dtype}; allowed: {', '.join(DTYPES)}")
    t = t.squeeze(0) if t.dim() == 3 and t.shape[0] == 1 else t
    if t.dim() != 2 or min(t.shape) < MIN_SIDE:
        raise DataError(
            f"{path}: shape {list(t.shape)}; allowed: [H, W] or [1, H, W], each side >= {MIN_SIDE}"
        )
    t = t.float()
    if not torch.isfinite(t).all():
        raise DataError(f"{path}: holds NaN or infinite values; allowed: finite values")
    if (
        t.min() == t.max()
    ):  # no contrast: nothing to learn from or to score against (SSIM, PSNR undefined)
        raise DataError(
            f"{path}: every value is {float(t.min()):g}; allowed: an image with contrast"
        )
    return t


class PairedImages:
    """Subjects held in memory (64 x 64 x 2 each). Item: ``source`` and ``target`` ``(1, H, W)``
    scaled to [-1, 1] by their contrast's range, ``subject`` its index in ``ids``."""

    def __init__(self, ids: list[str], pairs: dict, ranges: dict[str, tuple[float, float]]):
        import torch

        self.ids, self.ranges = ids, ranges
        src = [load_image(pairs[i][0]) for i in ids]
        tgt = [load_image(pairs[i][1]) for i in ids]
        shapes = {tuple(t.shape) for t in src + tgt}
        if len(shapes) > 1:
            raise DataError(
                f"images of different sizes {sorted(shapes)}; every file must have one size"
            )
        self.source, self.target = (
            torch.stack(src)[:, None],
            torch.stack(tgt)[:, None],
        )  # (N, 1, H, W), original units

    def __len__(self) -> int:
        return len(self.ids)

    def volumes_index(self) -> list[list[int]]:
        return [[i] for i in range(len(self))]

    def head(self, n: int) -> "PairedImages":
        """The first ``n`` subjects, sharing this set's images and ranges."""
        part = object.__new__(PairedImages)
        part.ids, part.ranges = self.ids[:n], self.ranges
        part.source, part.target = self.source[:n], self.target[:n]
        return part

    def __getitem__(self, i: int) -> dict:
        return {
            "source": to_unit(self.source[i], self.ranges["source"]),
            "target": to_unit(self.target[i], self.ranges["target"]),
            "subject": i,
        }


def measured_range(images) -> tuple[float, float]:
    return float(images.min()), float(images.max())


def to_unit(x, value_range):
    """Original units -> [-1, 1]."""
    lo, hi = value_range
    return (x - lo) / (hi - lo) * 2 - 1


def from_unit(x, value_range):
    lo, hi = value_range
    return (x + 1) / 2 * (hi - lo) + lo


def split_json(split: dict, incomplete: list[str], ranges: dict) -> str:
    """split.json: the subjects of each split, those skipped, the value ranges mapped to [-1, 1]."""
    return json.dumps({**split, "incomplete": incomplete, "ranges": ranges}, indent=1)
