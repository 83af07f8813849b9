"""The code travels with the job: at submit the run directory gets a read-only copy of the mrihpc
package that submitted it (``<run>/code/mrihpc``), and every task (the host's Python or an image's)
runs that copy, with ``<run>/code`` first on PYTHONPATH. Editing the working tree, a ``git
checkout`` or upgrading mrihpc while points are queued or requeued changes nothing that runs.

The manifest records the copy's sha256 (over every file's relative path and bytes); a task checks
that the package it imported is that copy and that the copy still has that digest. Stdlib only:
the login node takes it and the node checks it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
from pathlib import Path

PACKAGE = "mrihpc"
#: set for a task started through a snapshot (the sbatch / local setup lines, the container's env)
CODE_ENV = "MRIHPC_CODE"


class CodeMismatch(RuntimeError):
    """The task does not run the code that was submitted."""


def _files(package: Path) -> list[Path]:
    """The package's files, sorted; no byte-code (the task's Python compiles its own)."""
    return sorted(
        p
        for p in package.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix not in (".pyc", ".pyo")
    )


def digest(package: Path) -> str:
    """sha256 over every file's path relative to ``package`` and its bytes."""
    h = hashlib.sha256()
    for f in _files(package):
        h.update(f.relative_to(package).as_posix().encode() + b"\0")
        h.update(f.read_bytes())
        h.update(b"\0")
    return h.hexdigest()


def take(code_dir: Path, source: Path | None = None) -> dict:
    """Copy the package (``source``: default the one imported here) to ``code_dir/mrihpc``,
    read-only. Returns the manifest's ``code`` record: path, sha256, files, bytes."""
    source = source or Path(__file__).resolve().parent
    target = code_dir / PACKAGE
    files = _files(source)
    for f in files:
        out = target / f.relative_to(source)
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(f, out)  # contents only: never a link into the working tree
    for path in sorted(target.rglob("*"), reverse=True):  # files, then folders, read-only
        mode = stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH
        os.chmod(path, mode | (stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH if path.is_dir() else 0))
    os.chmod(target, 0o555)
    return {
        "path": str(code_dir),
        "sha256": digest(target),
        "files": len(files),
        "bytes": sum(f.stat().st_size for f in files),
        "source": str(source),
    }


def make_writable(code_dir: Path) -> None:
    """Let ``shutil.rmtree`` remove a snapshot (its folders are read-only)."""
    for path in [code_dir, *code_dir.rglob("*")]:
        if path.is_dir():
            os.chmod(path, 0o755)


def check(manifest: dict, imported: Path) -> None:
    """In a task started through the snapshot: ``imported`` (the mrihpc package this process
    imported) must be the run's copy, with the digest recorded at submit."""
    code = manifest.get("code")
    where = os.environ.get(CODE_ENV)
    if not code or not where:
        return  # run in the submitting process (debug executor, `mrihpc run`), or an older run
    expected = Path(code["path"]) / PACKAGE
    if imported.resolve() != expected.resolve():
        raise CodeMismatch(
            f"this task imported mrihpc from {imported}, not the run's snapshot {expected}: "
            "something put another mrihpc before it on PYTHONPATH (a cluster.setup line, the "
            "image's own install under PYTHONPATH?)"
        )
    found = digest(expected)
    if found != code["sha256"]:
        raise CodeMismatch(
            f"{expected}: the snapshot's sha256 is {found[:12]}, but {code['sha256'][:12]} was "
            "submitted: it was changed after submit; resubmit from a fresh `mrihpc submit`"
        )
