"""Node-local staging (``data.stage``): a workload's data folders and files copied to the node's
own disk once per node and read from there by every task the node runs.

    <to>/mrihpc-stage/<key of the source path>/<source name>     the copy
                                               staged.json         the source's names, sizes, mtimes
                                               .lock               held while checking or copying

The first task on a node copies under the lock; the others wait for it, then find the listing
unchanged and reuse the copy. A changed source (a name, size or mtime) is copied again. A copy
that cannot be made (``to`` unset on the node, too little space, a failed copy) is skipped with
a warning: the point reads the shared path, as without staging.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any, Callable

from mrihpc.paths import atomic_write_json

#: room left free on the node's disk beyond the copy itself
HEADROOM = 1.05


def listing(source: Path) -> dict[str, list[int]]:
    """Relative name -> [size, mtime_ns] of every file under ``source`` (or of the file itself)."""
    if source.is_file():
        st = source.stat()
        return {source.name: [st.st_size, st.st_mtime_ns]}
    out = {}
    for path in sorted(source.rglob("*")):
        if path.is_file():
            st = path.stat()
            out[str(path.relative_to(source))] = [st.st_size, st.st_mtime_ns]
    return out


def stage_one(source: Path, base: Path) -> tuple[Path, bool]:
    """(the node's copy of ``source`` under ``base``, whether this call copied it)."""
    source = source.resolve()
    home = base / "mrihpc-stage" / hashlib.sha256(str(source).encode()).hexdigest()[:16]
    home.mkdir(parents=True, exist_ok=True)
    copy, record = home / source.name, home / "staged.json"
    with open(home / ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # the node's other tasks wait here, then reuse the copy
        want = listing(source)
        try:
            have = json.loads(record.read_text())
        except (OSError, ValueError):
            have = None
        if have == {"source": str(source), "files": want} and copy.exists():
            return copy, False
        need, free = sum(size for size, _ in want.values()), shutil.disk_usage(home).free
        if need * HEADROOM > free:
            raise OSError(
                errno.ENOSPC,
                f"{need / 2**20:.1f} MiB to copy, {free / 2**20:.1f} MiB free on {home}",
            )
        record.unlink(missing_ok=True)  # a copy half replaced is never taken for a good one
        partial = home / f".{source.name}.partial"
        for old in (partial, copy):
            if old.is_dir() and not old.is_symlink():
                shutil.rmtree(old)
            else:
                old.unlink(missing_ok=True)
        if source.is_dir():
            shutil.copytree(source, partial, symlinks=False)
        else:
            shutil.copy2(source, partial)
        os.replace(partial, copy)
        atomic_write_json(record, {"source": str(source), "files": want})
        return copy, True


def stage_data(spec, fields: tuple[str, ...], log: Callable[[str], None]) -> tuple[Any, dict]:
    """``spec`` with its data ``fields`` (host paths) pointing at the node's copies, and what was
    done per field: ``{field: {from, to, copied} | {from, skipped}}``."""
    stage = getattr(spec.data, "stage", None)
    if stage is None or stage.when == "never":
        return spec, {}
    base = Path(os.path.expandvars(os.path.expanduser(stage.to)))
    done: dict[str, dict] = {}
    if "$" in str(base):
        log(
            f"warning: data.stage.to {stage.to!r} names a variable this node does not set; "
            "reading the shared path"
        )
        return spec, {
            name: {"from": getattr(spec.data, name), "skipped": "unset variable"}
            for name in fields
            if getattr(spec.data, name, None)
        }
    updates = {}
    for name in fields:
        value = getattr(spec.data, name, None)
        if not value:
            continue
        try:
            copy, copied = stage_one(Path(value), base)
        except OSError as e:
            log(
                f"warning: staging data.{name} {value} to {base} failed ({e}); "
                "reading the shared path"
            )
            done[name] = {"from": value, "skipped": str(e)}
            continue
        updates[name] = str(copy)
        done[name] = {"from": value, "to": str(copy), "copied": copied}
        log(
            f"data.{name} staged on this node: {copy} "
            f"({'copied' if copied else 'reused: unchanged'})"
        )
    if not updates:
        return spec, done
    return spec.model_copy(update={"data": spec.data.model_copy(update=updates)}), done
