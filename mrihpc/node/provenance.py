"""Provenance, the node's side: what this point actually ran on, as seen from inside its image
(``points/<i>/provenance.json``, written by rank 0 at every start: a requeue may land elsewhere).

The image reference and its ID come from the enter script (``MRIHPC_IMAGE``, ``MRIHPC_IMAGE_ID``:
``docker image inspect`` on the node, or the sha256 of a .sqsh / .sif); the rest is asked here.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import socket
import sys
from importlib import metadata
from pathlib import Path

import torch

import mrihpc
from mrihpc.paths import atomic_write_json


def installed() -> list[str]:
    """``pip freeze`` without pip: every distribution this interpreter sees, ``name==version``."""
    seen = {}
    for dist in metadata.distributions():
        name = dist.metadata.get("Name")
        if name and name.lower() not in seen:
            seen[name.lower()] = f"{name}=={dist.version}"
    return sorted(seen.values(), key=str.lower)


def collect(manifest: dict) -> dict:
    container = manifest.get("container") or {}
    return {
        "time": dt.datetime.now().isoformat(timespec="seconds"),
        "host": socket.gethostname(),
        "in_container": Path("/.dockerenv").exists()
        or "MRIHPC_IMAGE" in os.environ
        or bool(os.environ.get("APPTAINER_CONTAINER") or os.environ.get("SINGULARITY_CONTAINER")),
        "dockerenv": Path("/.dockerenv").exists(),
        # docker: the image ID the node's daemon has; an image file (.sqsh, .sif): hashed at submit
        "image": os.environ.get("MRIHPC_IMAGE") or container.get("image"),
        "image_id": os.environ.get("MRIHPC_IMAGE_ID") or container.get("image_id"),
        "uid": os.getuid(),
        "gid": os.getgid(),
        "python": platform.python_version(),
        "python_executable": sys.executable,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
        "gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
        "mrihpc": mrihpc.__version__,
        "mrihpc_path": str(Path(mrihpc.__file__).parent),
        "code_sha256": (manifest.get("code") or {}).get("sha256"),
        "site": os.environ.get("MRIHPC_SITE"),
        "packages": installed(),
    }


def write(path: Path, manifest: dict) -> dict:
    record = collect(manifest)
    atomic_write_json(path, record)
    return record
