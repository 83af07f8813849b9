"""Checkpoints: written atomically (temporary file, fsync, rename), so a kill at any moment
leaves the previous ``last.pt`` intact; RNG states included so a resume is exact."""
from __future__ import annotations

import io
import random
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from mrihpc.paths import atomic_write_bytes


def rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save(path: Path, state: dict[str, Any]) -> None:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load(path: Path, map_location: Any = "cpu") -> Optional[dict[str, Any]]:
    """The checkpoint at ``path``, or None when there is none yet."""
    if not path.is_file():
        return None
    # our own files: they hold optimiser and RNG states, which weights_only cannot load
    return torch.load(path, map_location=map_location, weights_only=False)
