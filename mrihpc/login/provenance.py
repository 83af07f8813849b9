"""Provenance, the submitting side: which checkout the snapshot came from (its git revision and
its uncommitted changes, kept as a patch in the run directory). The node adds what it sees inside
its image (``mrihpc.node.provenance``); ``status --provenance`` and ``results --provenance`` show
both."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Optional

DIFF_LIMIT = 2_000_000  # bytes of patch kept; a bigger one is cut and says so


def _git(cwd: Path, *args: str) -> Optional[str]:
    try:
        out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout if out.returncode == 0 else None


def checkout(folder: Path, run_root: Path, label: str) -> Optional[dict]:
    """The git checkout holding ``folder``: revision, branch, and the uncommitted diff against it
    (tracked files), written to ``<run>/provenance/<label>.diff`` when there is one. None outside
    git."""
    top = _git(folder, "rev-parse", "--show-toplevel")
    if not top:
        return None
    top_path = Path(top.strip())
    record = {
        "repo": str(top_path),
        "rev": (_git(top_path, "rev-parse", "HEAD") or "").strip() or None,
        "branch": (_git(top_path, "rev-parse", "--abbrev-ref", "HEAD") or "").strip() or None,
    }
    diff = _git(top_path, "diff", "HEAD", "--binary") or ""
    untracked = [
        f
        for f in (_git(top_path, "ls-files", "--others", "--exclude-standard") or "").splitlines()
        if f
    ]
    record["dirty"] = bool(diff or untracked)
    record["untracked"] = untracked[:100]
    if diff:
        out = run_root / "provenance" / f"{label}.diff"
        out.parent.mkdir(exist_ok=True)
        data = diff.encode()
        out.write_bytes(
            data[:DIFF_LIMIT]
            + (b"\n# [mrihpc] diff cut at 2 MB\n" if len(data) > DIFF_LIMIT else b"")
        )
        record["diff"] = str(out)
    return record


def submit_side(run_root: Path, spec_dir: Path, package_dir: Path) -> dict:
    """The spec's checkout and mrihpc's own (the same one when both live in one repository)."""
    code = checkout(package_dir, run_root, "mrihpc")
    spec = checkout(spec_dir, run_root, "spec")
    if spec and code and spec["repo"] == code["repo"]:
        spec = {"same_as": "mrihpc"}
    return {"mrihpc_checkout": code, "spec_checkout": spec}
