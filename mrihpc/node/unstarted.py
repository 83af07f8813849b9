"""A point that failed before Python could start in its image (no docker on the node, no daemon
socket): the enter script records why in the point's status.json, with the host's Python, so
``status`` shows the reason instead of a bare FAILED. Stdlib and ``mrihpc.paths`` only.

    python -m mrihpc.node.unstarted RUN_DIR "docker is not on PATH on node7"
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import sys
from pathlib import Path

from mrihpc.paths import RunPaths, read_json, update_json


def this_job() -> str:
    array, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    return f"{array}_{task}" if array and task else os.environ.get("SLURM_JOB_ID", "")


def point_of(manifest: dict, job_id: str) -> int | None:
    """The point the latest submission of ``job_id`` runs."""
    for submission in reversed(manifest.get("submissions", [])):
        for index, job in submission.get("jobs", {}).items():
            if job.get("job_id") == job_id:
                return int(index)
    return None


def record(run_dir: Path, reason: str) -> int | None:
    run = RunPaths(run_dir)
    index = point_of(read_json(run.manifest, {}) or {}, this_job())
    if index is None:
        return None
    now = dt.datetime.now().isoformat(timespec="seconds")
    update_json(
        run.point(index).status,
        lambda s: {
            **(s or {}),
            "state": "failed",
            "error": reason,
            "host": socket.gethostname(),
            "updated": now,
        },
        replace_damaged=True,
    )
    return index


if __name__ == "__main__":
    record(Path(sys.argv[1]), sys.argv[2])
