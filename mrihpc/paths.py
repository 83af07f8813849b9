"""RunPaths: every file and folder of a run directory, and nothing else decides a path.

    runs/<name>/<sweep-id>/
      spec.yaml  manifest.json  logs/  code/mrihpc/ (the package as submitted, read-only)
      points/<i>/config.yaml metrics.jsonl status.json memory.dat checkpoints/ predictions/

spec.yaml and manifest.json (each point's overrides and seed) are written at submission;
``points/<i>/`` and its config.yaml appear when the point starts on its node.
"""
from __future__ import annotations

import fcntl
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import yaml


class CheckpointError(Exception):
    """A checkpoint that cannot be loaded safely; the message names the file. (Here, not in the
    torch-using checkpoint module, so the CLI can catch it without importing torch.)"""


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` so that readers see the old file or the new one, never half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, default=str) + "\n").encode())


def update_json(path: Path, change: Callable[[Any], Any], default: Any = None) -> Any:
    """Read, change and write ``path`` under an exclusive lock (``.<name>.lock`` beside it), so
    updates from several processes (the job, ``cancel``, ``resubmit``, a second submission)
    never lose one another. ``change`` gets the current value and returns the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.parent / f".{path.name}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        new = change(read_json(path, default))
        atomic_write_json(path, new)
        return new


def overwrite_in_place(path: Path, obj: Any) -> None:
    """Last resort when the disk is full: rewrite an existing small JSON file in its own blocks
    (no new file, so no new space is needed while ``obj`` is no larger than the file was)."""
    data = json.dumps(obj, default=str).encode()
    with open(path, "r+b") as f:
        f.write(data)
        f.truncate(len(data))
        f.flush()
        os.fsync(f.fileno())


def remove_stale_temp_files(folder: Path) -> list[Path]:
    """Delete what killed atomic writes left under ``folder`` (``.<name>.*.tmp``); call it only
    where no other process is writing, e.g. when a point starts."""
    stale = [p for p in folder.rglob(".*.tmp") if p.is_file()] if folder.is_dir() else []
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


# libyaml's emitter when PyYAML has it: ten times faster, which a 1,000-point sweep notices
_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def dump_yaml(data: Any) -> str:
    """YAML text of plain data, keys in insertion order."""
    return yaml.dump(data, Dumper=_DUMPER, sort_keys=False)


def read_json(path: Path, default: Any = None) -> Any:
    """The JSON in ``path``, or ``default`` when it does not exist (yet)."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return default


def read_jsonl(path: Path) -> list[Any]:
    """Every line of a JSON-lines file that parses; a torn last line (a process killed
    mid-write) is skipped. An absent file has no lines."""
    try:
        lines = Path(path).read_text().splitlines()
    except FileNotFoundError:
        return []
    out = []
    for line in lines:
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


@dataclass(frozen=True)
class PointPaths:
    """Files of one sweep point."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def status(self) -> Path:
        return self.root / "status.json"

    @property
    def memory(self) -> Path:
        return self.root / "memory.dat"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def last_checkpoint(self) -> Path:
        return self.checkpoints / "last.pt"

    @property
    def best_checkpoint(self) -> Path:
        return self.checkpoints / "best.pt"

    @property
    def predictions(self) -> Path:
        return self.root / "predictions"

    @property
    def visdom_log(self) -> Path:
        return self.root / "visdom.log"


@dataclass(frozen=True)
class RunPaths:
    """Files of one submitted sweep."""

    root: Path

    @classmethod
    def create(cls, runs_dir: Path, name: str, sweep_id: str) -> "RunPaths":
        paths = cls(Path(runs_dir).resolve() / name / sweep_id)
        paths.logs.mkdir(parents=True, exist_ok=False)
        return paths

    @property
    def spec(self) -> Path:
        return self.root / "spec.yaml"

    @property
    def manifest(self) -> Path:
        return self.root / "manifest.json"

    @property
    def logs(self) -> Path:
        """submitit's folder: job scripts, pickles and stdout / stderr per array task."""
        return self.root / "logs"

    @property
    def code(self) -> Path:
        """The snapshot of the mrihpc package taken at submit (``code/mrihpc/``): what every task runs."""
        return self.root / "code"

    def point(self, index: int) -> PointPaths:
        return PointPaths(self.root / "points" / str(index))

    def exists(self) -> bool:
        return self.manifest.is_file()
