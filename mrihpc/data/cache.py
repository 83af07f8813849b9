"""The per-user data cache: synthetic datasets generated once, never seen half-written.

Torch-free, so the login node can generate a demo dataset before submitting.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Callable


def cache_root() -> Path:
    return Path(os.environ.get("MRIHPC_CACHE", Path.home() / ".cache" / "mrihpc"))


def dataset_folder(kind: str, params: dict) -> Path:
    """Where ``cached_dataset`` keeps the dataset of ``kind`` made with ``params`` (it may not
    exist). A submission asks this before importing the generator (numpy, scikit-image: 0.1-0.3
    s)."""
    key = hashlib.sha1(
        json.dumps({**params, "layout": kind, "v": 1}, sort_keys=True).encode()
    ).hexdigest()[:12]
    return cache_root() / "synthetic" / f"{kind}-{key}"


def cached_dataset(kind: str, params: dict, generate: Callable[[Path], object]) -> Path:
    """The folder ``<cache>/synthetic/<kind>-<hash of params>``, made by ``generate(folder)`` once:
    under a lock, into a temporary folder renamed into place, so concurrent points never see
    half of it and a killed generation leaves nothing that blocks the next try."""
    final = dataset_folder(kind, params)
    if final.is_dir():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    with open(final.parent / f".{final.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not final.is_dir():
            for stale in final.parent.glob(f".{final.name}.*.tmp"):  # left by a killed generation
                shutil.rmtree(stale, ignore_errors=True)
            tmp = final.parent / f".{final.name}.{os.getpid()}.tmp"
            try:
                generate(tmp)
                os.replace(tmp, final)
            except BaseException:  # a full disk, a bad parameter, Ctrl-C: leave nothing half-made
                shutil.rmtree(tmp, ignore_errors=True)
                raise
    return final
