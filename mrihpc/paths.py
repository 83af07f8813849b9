"""RunPaths: every file and folder of a run directory, and nothing else decides a path.

    runs/<name>/<sweep-id>/
      spec.yaml  manifest.json  logs/  code/mrihpc/ (the package as submitted, read-only)
      points/<i>/config.yaml metrics.jsonl status.json memory.dat checkpoints/ predictions/

spec.yaml and manifest.json (each point's overrides and seed) are written at submission;
``points/<i>/`` and its config.yaml appear when the point starts on its node.
"""

from __future__ import annotations

import errno
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


class LinkRefused(OSError):
    """A symbolic link inside a run directory where mrihpc would write: refused, so that a
    planted link never sends a write out of the run (the message names the link and its target)."""


def _refuse(link: Path) -> None:
    raise LinkRefused(
        f"{link}: a symbolic link (to {os.readlink(link)}) inside the run directory; "
        "mrihpc writes there only to real files and folders: remove the link"
    )


def refuse_links(path: Path) -> None:
    """LinkRefused when ``path`` or a folder between it and its run directory is a symbolic link.

    The run directory is the nearest folder above holding a manifest.json; it and its parent
    (``runs/<name>``) are checked too, the ``runs`` folder and above are the user's own (a
    ``runs`` that links to scratch space is fine). Outside any run only ``path`` is checked."""
    path = Path(os.path.abspath(path))
    chain = [path, *path.parents]
    root = next(
        (
            i
            for i, p in enumerate(chain)
            if os.path.isfile(p / "manifest.json") and not p.is_symlink()
        ),
        None,
    )
    for p in chain[:1] if root is None else chain[: root + 2]:
        if p.is_symlink():
            _refuse(p)


def refuse_links_within(folder: Path) -> None:
    """refuse_links(folder), and LinkRefused for any link already inside it (a file there that
    links out would take the next write of that name along). A folder not made yet has none."""
    refuse_links(folder)
    for top, dirs, files in os.walk(
        folder
    ):  # followlinks=False: a linked folder is listed, not entered
        for name in dirs + files:
            if os.path.islink(os.path.join(top, name)):
                _refuse(Path(top) / name)


def open_no_follow(path: Path, mode: str = "a", **kwargs):
    """``open(path, mode)`` for appending or writing, refusing a link at ``path`` or above it
    within the run directory (O_NOFOLLOW, so a link planted between the check and the open
    fails too)."""
    refuse_links(path.parent)
    flags = (
        os.O_WRONLY
        | os.O_CREAT
        | os.O_NOFOLLOW
        | (os.O_APPEND if mode.startswith("a") else os.O_TRUNC)
    )
    try:
        fd = os.open(path, flags, 0o644)
    except OSError as e:
        if e.errno == errno.ELOOP:
            _refuse(path)
        raise
    return os.fdopen(fd, mode, **kwargs)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` so that readers see the old file or the new one, never half of it (and
    never through a link: the rename replaces a link at ``path`` itself, and a linked folder
    above it is refused)."""
    refuse_links(path.parent)
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


def update_json(
    path: Path, change: Callable[[Any], Any], default: Any = None, replace_damaged: bool = False
) -> Any:
    """Read, change and write ``path`` under an exclusive lock (``.<name>.lock`` beside it), so
    updates from several processes (the job, ``cancel``, ``resubmit``, a second submission)
    never lose one another. ``change`` gets the current value and returns the new one.
    ``replace_damaged``: a damaged file reads as ``default`` and is rewritten whole (a point's
    status.json, which its next write restores); otherwise DamagedFile (a manifest is not
    rebuilt from nothing)."""
    refuse_links(path.parent)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open_no_follow(path.parent / f".{path.name}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            current = read_json(path, default)
        except DamagedFile:
            if not replace_damaged:
                raise
            current = default
        new = change(current)
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


class DamagedFile(ValueError):
    """A run file that exists but is not what it should be (cut short, emptied, edited, not
    UTF-8); the message names the file and what is wrong with it."""


def read_json(path: Path, default: Any = None, kind: type | None = None) -> Any:
    """The JSON in ``path``, or ``default`` when it does not exist (yet); DamagedFile when it
    exists but does not parse, or (given ``kind``) holds something other than a ``kind``."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        return default
    try:
        value = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise DamagedFile(f"{path}: damaged: byte {e.start} is not UTF-8 text") from None
    except json.JSONDecodeError as e:
        what = (
            "empty"
            if not data.strip()
            else f"not valid JSON at line {e.lineno} column {e.colno} ({e.msg})"
        )
        raise DamagedFile(f"{path}: damaged: {what}; cut short or edited?") from None
    if kind is not None and not isinstance(value, kind):
        raise DamagedFile(
            f"{path}: damaged: expected a JSON {'object' if kind is dict else kind.__name__}, "
            f"found {type(value).__name__}"
        )
    return value


def scan_jsonl(path: Path, kind: type = object) -> tuple[list[Any], int]:
    """(every line of a JSON-lines file that parses to a ``kind``, how many other lines were
    skipped). A torn last line (no newline yet: a process killed mid-write, or one writing now)
    is skipped without counting; a line that is not UTF-8, not JSON or not a ``kind`` counts.
    An absent file has no lines."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        return [], 0
    lines = data.splitlines()
    out, skipped = [], 0
    for n, line in enumerate(lines, 1):
        try:
            value = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            torn = n == len(lines) and not data.endswith(b"\n")
            skipped += not torn and bool(line.strip())
            continue
        if isinstance(value, kind):
            out.append(value)
        else:
            skipped += 1
    return out, skipped


def read_jsonl(path: Path, kind: type = object) -> list[Any]:
    """Every readable ``kind`` line of a JSON-lines file (see scan_jsonl)."""
    return scan_jsonl(path, kind)[0]


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

    def prediction_dir(self, split: str, checkpoint: str = "best") -> Path:
        """``predictions/<split>/`` (best.pt's) or ``predictions/<split>_last/`` (last.pt's), made
        if new; LinkRefused when it, a folder above it in the run, or anything already in it is a
        symbolic link (the writers then write plain names)."""
        folder = self.predictions / (split if checkpoint == "best" else f"{split}_{checkpoint}")
        refuse_links_within(self.predictions)
        folder.mkdir(parents=True, exist_ok=True)
        return folder

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
        if (
            paths.root.parent.is_symlink()
        ):  # runs/<name> planted as a link: the run would land at its target
            _refuse(paths.root.parent)
        paths.root.parent.mkdir(parents=True, exist_ok=True)
        paths.root.mkdir(exist_ok=False)  # never an existing folder or link
        paths.logs.mkdir()
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
        """The snapshot of the mrihpc package taken at submit (``code/mrihpc/``): what every task
        runs."""
        return self.root / "code"

    def point(self, index: int) -> PointPaths:
        return PointPaths(self.root / "points" / str(index))

    def exists(self) -> bool:
        return self.manifest.is_file()
