"""The knee workload's files, torch-free (the login node checks them at submit): the split
folders, folds, and the index of every volume's header (cached by path, size and mtime)."""

from __future__ import annotations

import hashlib
from pathlib import Path

from mrihpc.data.cache import cache_root
from mrihpc.workloads.knee.kspace.fastmri import Volume, index_volumes, list_files, split_folds
from mrihpc.workloads.knee.kspace.synth import ensure_synthetic

DEFAULT_HOLDOUT_FOLDS = (
    5  # no val/ folder and no folds: hold out one fifth of train/ (one volume at least)
)


def data_root(data) -> Path:
    """The dataset folder, generating the synthetic one into the cache on first use."""
    if data.synthetic is not None:
        return ensure_synthetic(data.synthetic.model_dump(), data.format)
    return Path(data.root)


def split_files(data) -> tuple[list[Path], list[Path]]:
    """(train files, validation files): val/ when present and no folds are asked for, else a fold of
    train/."""
    root = data_root(data)
    train = list_files(root / "train")
    if data.folds is None and (root / "val").is_dir():
        val = list_files(root / "val")
    else:
        folds = data.folds or min(DEFAULT_HOLDOUT_FOLDS, max(2, len(train)))
        train, val = split_folds(train, folds, data.fold or 0)
    if data.max_volumes:
        train, val = train[: data.max_volumes], val[: data.max_volumes]
    return train, val


def volumes_of(files: list[Path], data) -> list[Volume]:
    """Every file's header, checked (DataError naming the file), from the index cache when
    unchanged."""
    key = hashlib.sha1(str(Path(files[0]).parent.resolve()).encode()).hexdigest()[:12]
    return index_volumes(files, data.format, cache_root() / "index" / f"{key}.json")
