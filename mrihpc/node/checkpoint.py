"""Checkpoints: written atomically (temporary file, fsync, rename), so a kill at any moment
leaves the previous ``last.pt`` intact; every rank's RNG states included so a resume is exact.

Loading is always onto the CPU and with ``weights_only=True``: a checkpoint in a shared run
directory is data, and a crafted one must not run code when a colleague resumes or predicts
from it. So everything saved is tensors and plain Python values; the numpy RNG state, a tuple
holding an array, is stored as a tensor and plain numbers.
"""

from __future__ import annotations

import io
import pickle
import random
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from mrihpc.paths import CheckpointError, atomic_write_bytes

__all__ = ["CheckpointError", "load", "rng_state", "save", "set_rng_state", "trained_nets"]


def rng_state() -> dict[str, Any]:
    """This process's RNG states: CPU byte tensors and plain values only."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "name": name,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = [s.cpu() for s in torch.cuda.get_rng_state_all()]
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore ``rng_state()``; CUDA states need CPU byte tensors, whatever device they came
    from."""
    torch.set_rng_state(state["torch"].cpu())
    n = state["numpy"]
    np.random.set_state(
        (
            n["name"],
            n["keys"].numpy().astype(np.uint32),
            n["pos"],
            n["has_gauss"],
            n["cached_gaussian"],
        )
    )
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        cuda = [s.cpu() for s in state["cuda"]][: torch.cuda.device_count()]
        torch.cuda.set_rng_state_all(cuda)


def save(path: Path, state: dict[str, Any]) -> None:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(path, buffer.getvalue())


CHOICES = ("best", "last")


def trained_nets(best: Path, last: Path, which: str = "best") -> dict[str, Any]:
    """The networks' weights of a trained point (on the CPU, safely). ``which``: ``best`` is
    best.pt (best on validation), else last.pt when no epoch was validated; ``last`` is last.pt,
    the model at the end of training (seeds 001 and 004 report both)."""
    if which not in CHOICES:
        raise ValueError(f"checkpoint {which!r}: allowed: {', '.join(CHOICES)}")
    state = load(best) or load(last) if which == "best" else load(last)
    if state is None:
        wanted = "best.pt or last.pt" if which == "best" else "last.pt"
        raise FileNotFoundError(f"{best.parent}: no {wanted}; has the point trained?")
    return state["nets"]


def load(path: Path) -> Optional[dict[str, Any]]:
    """The checkpoint at ``path`` on the CPU, or None when there is none yet. Refuses (with
    CheckpointError) a file that holds anything but tensors and plain values."""
    if not path.is_file():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(
            f"{path}: refused: it holds objects other than tensors and plain values, which "
            f"could run code when loaded; not an mrihpc checkpoint or tampered with "
            f"({str(e).splitlines()[0][:200]})"
        ) from None
    except (RuntimeError, EOFError, ValueError) as e:
        raise CheckpointError(
            f"{path}: not a readable checkpoint ({type(e).__name__}: {str(e)[:200]})"
        ) from None
