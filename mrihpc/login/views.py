"""What a run's points are doing, read after the fact from any shell on the login node.

Sources, in order of trust: a point's own status.json when it says done or failed; Slurm
accounting (sacct, or squeue when accounting is down) for everything the job itself could
not write (pending, cancelled, timeout, node failure, out of memory); the process table for
local runs.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional


from mrihpc.login import accounting
from mrihpc.paths import DamagedFile, RunPaths, read_json


class RunError(Exception):
    """A path that is not a run directory, or a point that does not exist."""


class SubmitRefused(RunError):
    """sbatch refused an array; ``queued``: whether arrays before it were queued."""

    def __init__(self, queued: bool, reason: str, message: str):
        super().__init__(message)
        self.queued, self.reason = queued, reason


def open_run(path: Path | str, notes: Optional[list[str]] = None) -> tuple[RunPaths, dict]:
    """The run at ``path`` and its manifest. A damaged manifest is a RunError naming it, unless
    the caller collects ``notes``: then the points are salvaged from ``points/<i>/`` (without
    their names and jobs) and the damage goes into ``notes``."""
    run = RunPaths(Path(path).resolve())
    try:
        manifest = read_json(run.manifest, kind=dict)
        if manifest is None:
            raise RunError(
                f"{path}: not a run directory (no manifest.json); expected runs/<name>/<sweep-id>"
            )
        _check_manifest(run.manifest, manifest)
    except DamagedFile as e:
        if notes is None:
            raise RunError(f"{e}; status still lists the points it finds") from None
        indices = sorted(int(p.name) for p in (run.root / "points").glob("*") if p.name.isdigit())
        notes.append(
            f"{e}; listing the {len(indices)} point(s) found under points/, without names or jobs"
        )
        manifest = {"points": [{"index": i, "name": "?"} for i in indices], "submissions": []}
    return run, manifest


def _check_manifest(path: Path, manifest: dict) -> None:
    """DamagedFile unless ``manifest`` has the points and submissions every verb reads."""
    if not _list_of(manifest.get("points"), index=int, name=str):
        raise DamagedFile(
            f"{path}: damaged: 'points' is not a list of {{index, name, ...}} objects"
        )
    if not _list_of(manifest.get("submissions"), jobs=dict, executor=str):
        raise DamagedFile(
            f"{path}: damaged: 'submissions' is not a list of {{executor, jobs, ...}} objects"
        )


def _list_of(value, **types: type) -> bool:
    """``value`` is a list of objects, each holding a value of type ``types[key]`` at ``key``."""
    return isinstance(value, list) and all(
        isinstance(item, dict) and all(isinstance(item.get(k), t) for k, t in types.items())
        for item in value
    )


def latest_jobs(manifest: dict) -> dict[int, dict]:
    """Point index -> its most recent submission record (job id, log paths, executor)."""
    jobs = {}
    for submission in manifest["submissions"]:
        for index, job in submission["jobs"].items():
            jobs[int(index)] = {
                **job,
                "executor": submission["executor"],
                "submitted": submission.get("time", ""),
            }
    return jobs


def _rank_failure(status: dict) -> tuple[Optional[int], str]:
    """(rank, ``rank N failed: why``) of the failure a rank other than 0 recorded in the latest
    attempt, or (None, "") (rank 0 may still be waiting in a collective or the rendezvous until
    srun ends it). A rank that failed before the ranks met records an attempt rank 0 has not
    counted yet."""
    attempts = status.get("attempts")
    for e in status.get("rank_errors") or []:
        attempt = e.get("attempt") if isinstance(e, dict) else None
        if isinstance(attempt, int) and attempt >= (attempts if isinstance(attempts, int) else 0):
            rank = e.get("rank") if isinstance(e.get("rank"), int) else None
            return rank, f"rank {e.get('rank')} failed: {e.get('error')}"
    return None, ""


def awaiting_promotion(manifest: dict, index: int, submitted: str) -> bool:
    """Point ``index`` was promoted to a rung chosen after its latest job was submitted (at
    ``submitted``): that job ended its last rung, and the next is being queued. (The promotion
    marks the points pending before it queues them; until sbatch answers, the latest job is the
    last rung's, COMPLETED while status.json says pending.)"""
    later = (manifest.get("adaptive") or {}).get("rungs", [])[1:]  # rung 0 is the first submit
    return any(index in r.get("points", []) and r.get("time", "") >= submitted for r in later)


@dataclass
class PointView:
    index: int
    name: str
    state: str
    job_id: str = ""
    reason: str = ""
    elapsed_s: Optional[float] = None
    epoch: Optional[int] = None
    epochs: Optional[int] = None
    latest: dict = field(default_factory=dict)
    attempts: int = 0
    params: dict = field(default_factory=dict)
    """{network: parameter count}, as the node built them."""
    gpu_hours: Optional[float] = None
    """Allocated GPUs x elapsed, summed over requeued incarnations (sacct's AllocTRES); None
    without accounting."""
    cpu_hours: Optional[float] = None
    energy_kwh: Optional[float] = None
    """Where the site accounts energy (sacct's ConsumedEnergyRaw), summed like the hours."""
    nodes: str = ""
    """Where its last attempt ran (sacct's NodeList)."""
    mem_gb: Optional[float] = None
    """The memory its last attempt was allocated (sacct's AllocTRES)."""
    gpu_util: Optional[float] = None
    """Its GPUs' mean utilisation in percent (sacct's TRESUsageInAve gres/gpuutil), where
    gathered."""
    failed_rank: Optional[int] = None
    """A rank other than 0 that recorded a failure in the latest attempt (its log holds the
    traceback)."""


def _alive(pid: Optional[int]) -> bool:
    if not pid:
        return False
    try:
        os.kill(int(pid), 0)
        return True
    except (ProcessLookupError, PermissionError, ValueError):
        return False


def _seconds(a: Optional[str], b: Optional[str]) -> Optional[float]:
    try:
        return (dt.datetime.fromisoformat(b) - dt.datetime.fromisoformat(a)).total_seconds()
    except (TypeError, ValueError):
        return None


def slurm_rows(job_ids: list[str]) -> tuple[dict[str, dict], str]:
    """job id -> Slurm's row (``accounting.sacct``'s fields), and which source answered (sacct /
    squeue / none): one sacct call for all of them, squeue for what it does not list yet."""
    if not job_ids:
        return {}, "none: local executor"
    rows = accounting.sacct(job_ids)
    if rows is None:
        rows = accounting.squeue(job_ids)
        return rows or {}, "squeue" if rows is not None else "none (Slurm unreachable)"
    if unseen := [j for j in job_ids if j not in rows]:
        # slurmdbd records a job a moment after sbatch returns: ask the controller, not "lost"
        queued = accounting.squeue(unseen) or {}
        rows |= {j: queued[j] for j in unseen if j in queued}
    return rows, "sacct"


def slurm_job_ids(manifest: dict) -> list[str]:
    """The Slurm job of each point's latest submission."""
    return [j["job_id"] for j in latest_jobs(manifest).values() if j["executor"] == "slurm"]


def point_views(
    run: RunPaths,
    manifest: dict,
    notes: Optional[list[str]] = None,
    slurm: Optional[tuple[dict[str, dict], str]] = None,
) -> tuple[list[PointView], str]:
    """One view per point, and which source answered for Slurm (sacct / squeue / none). A damaged
    status.json leaves the point's state to Slurm ("unknown" without it) and goes into ``notes``.
    ``slurm``: ``slurm_rows`` already asked (with other jobs of the run), else asked here."""
    jobs = latest_jobs(manifest)
    slurm, source = slurm or slurm_rows(slurm_job_ids(manifest))
    views = []
    for point in manifest["points"]:
        i = point["index"]
        try:
            status, damaged = read_json(run.point(i).status, {}, dict) or {}, ""
        except DamagedFile as e:
            status, damaged = {}, str(e)
            if notes is not None:
                notes.append(str(e))
        job = jobs.get(i, {})
        row = slurm.get(job.get("job_id", ""), {})
        own = status.get("state")
        if own in ("done", "failed"):
            state = own
        elif row:
            state = row["state"]
            if state == "done" and own != "done":  # the job ended without the point saying done
                promoted = own == "pending" and awaiting_promotion(manifest, i, job["submitted"])
                state = "pending" if promoted else "failed"
        elif job.get("executor") in ("local", "debug"):
            state = own or "pending"
            if (
                state == "running"
                and status.get("host") == socket.gethostname()
                and not _alive(status.get("pid"))
            ):
                state = "failed"
                status.setdefault("error", "the process ended without recording an outcome")
        elif job.get("executor") == "slurm":
            # squeue has forgotten it and the point never finished: it ended badly
            state = (
                own if own in ("running", "interrupted") and source.startswith("sacct") else "lost"
            )
        elif own in ("running", "interrupted"):  # `mrihpc run` in a shell: no submission record
            dead = status.get("host") == socket.gethostname() and not _alive(status.get("pid"))
            state = "interrupted" if own == "interrupted" or dead else "running"
            if dead and own == "running" and not status.get("error"):
                status["error"] = "the process ended without recording an outcome (killed?)"
        elif own:
            state = own
        else:
            state = "not submitted"
        if damaged:
            state = row["state"] if row else "unknown"
        failed_rank, rank_reason = _rank_failure(status)
        reason = (
            status.get("error")
            or rank_reason
            or row.get("reason", "")
            or ("status.json damaged" if damaged else "")
        )
        if row.get("slurm_state") and row["state"] != state:
            reason = reason or row["slurm_state"]
        elapsed = row.get("elapsed_s") or _seconds(status.get("started"), status.get("updated"))
        views.append(
            PointView(
                i,
                point["name"],
                state,
                job.get("job_id", ""),
                str(reason)[:120],
                elapsed,
                status.get("epoch"),
                status.get("epochs"),
                status.get("latest") or {},
                int(status.get("attempts", 0)),
                status.get("params") if isinstance(status.get("params"), dict) else {},
                row.get("gpu_hours"),
                row.get("cpu_hours"),
                row.get("energy_kwh"),
                row.get("nodes") or "",
                row.get("mem_gb"),
                row.get("gpu_util"),
                failed_rank if state in ("failed", "running") else None,
            )
        )
    return views, source
