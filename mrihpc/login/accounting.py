"""What Slurm says about our jobs: sacct first (it keeps finished jobs), squeue when accounting
is down. Never raises: an unreachable Slurm answers None and the caller falls back on the
points' own status.json.

sacct lags slurmctld by a few seconds, so callers treat its answer as a snapshot, not a
final word.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from typing import Optional, Sequence

#: Slurm state -> mrihpc state. PREEMPTED / REQUEUED are not the end of a point.
STATES = {
    "PENDING": "pending",
    "CONFIGURING": "pending",
    "REQUEUE_HOLD": "requeued",
    "REQUEUE_FED": "requeued",
    "REQUEUED": "requeued",
    "PREEMPTED": "requeued",
    "RESIZING": "running",
    "RUNNING": "running",
    "COMPLETING": "running",
    "SUSPENDED": "running",
    "STOPPED": "running",
    "SIGNALING": "running",
    "COMPLETED": "done",
    "FAILED": "failed",
    "BOOT_FAIL": "failed",
    "DEADLINE": "timeout",
    "CANCELLED": "cancelled",
    "TIMEOUT": "timeout",
    "NODE_FAIL": "node_fail",
    "OUT_OF_MEMORY": "out_of_memory",
}
#: states `resubmit --failed` picks up
FAILED_STATES = ("failed", "cancelled", "timeout", "node_fail", "out_of_memory")


def normalise(slurm_state: str) -> str:
    """``"CANCELLED by 0"`` -> ``cancelled``; unknown states are passed through in lower case."""
    word = slurm_state.split()[0].rstrip("+") if slurm_state.strip() else "UNKNOWN"
    return STATES.get(word, word.lower())


def _run(cmd: list[str], timeout: float = 30) -> Optional[str]:
    if shutil.which(cmd[0]) is None:
        return None
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout if out.returncode == 0 else None


def _expand(job_id: str) -> list[str]:
    """``123_[0-3%2]`` / ``123_[1,4]`` (pending array rows) -> ``123_0 ... 123_3``."""
    m = re.match(r"^(\d+)_\[([^\]]+)\]$", job_id)
    if not m:
        return [job_id]
    ids = []
    for part in m.group(2).split("%")[0].split(","):
        lo, _, hi = part.partition("-")
        ids += [f"{m.group(1)}_{i}" for i in range(int(lo), int(hi or lo) + 1)]
    return ids


def tres(alloc: str) -> dict[str, float]:
    """``billing=2,cpu=2,gres/gpu=2,mem=1536M,node=1`` -> {cpu: 2, gpu: 2, mem_gb: 1.5}."""
    out: dict[str, float] = {}
    for item in alloc.split(","):
        name, _, value = item.partition("=")
        if name in ("cpu", "gres/gpu") and value.isdigit():
            out["gpu" if name == "gres/gpu" else "cpu"] = int(value)
        elif name == "mem" and (m := re.fullmatch(r"([\d.]+)([KMGT]?)", value)):
            out["mem_gb"] = (
                float(m.group(1))
                * {"K": 2**-20, "M": 2**-10, "": 2**-10, "G": 1, "T": 2**10}[m.group(2)]
            )
    return out


def sacct(job_ids: Sequence[str]) -> Optional[dict[str, dict]]:
    """job id -> {slurm_state, state, elapsed_s, exit_code, nodes, mem_gb, incarnations, gpu_hours,
    cpu_hours, energy_kwh, gpu_util}; None without accounting. One sacct call for every array of
    the run (``parse_sacct`` reads it)."""
    arrays = sorted({j.split("_")[0] for j in job_ids})
    if not arrays:
        return {}
    out = _run(["sacct", "-n", "-P", "-D", "-j", ",".join(arrays), "-o", SACCT_FIELDS])
    return None if out is None else parse_sacct(out)


SACCT_FIELDS = "JobID,State,ElapsedRaw,ExitCode,NodeList,AllocTRES,ConsumedEnergyRaw,TRESUsageInAve"


def parse_sacct(out: str) -> dict[str, dict]:
    """``sacct -n -P -D -o SACCT_FIELDS`` -> job id -> its row. ``-D`` lists each requeued
    incarnation of a job: ``incarnations`` counts them, and the hours (allocated GPUs or CPUs x
    elapsed, from AllocTRES) and energy are summed over them. Step rows (``<job>.batch``,
    ``<job>.0``) give ``gpu_util``: the highest step average of ``gres/gpuutil`` in
    TRESUsageInAve (percent), where the site gathers it (NVML's AcctGatherGpu); absent elsewhere."""
    rows: dict[str, dict] = {}
    for line in out.splitlines():
        parts = line.split("|")
        if len(parts) < 7:
            continue
        jid, state, elapsed, exit_code, nodes, alloc, joules = parts[:7]
        if "." in jid:  # a step of the job's current incarnation (the rows come in that order)
            util = tres_usage(parts[7] if len(parts) > 7 else "").get("gpuutil")
            parent = rows.get(jid.split(".")[0])
            if parent is not None and util is not None:
                parent["gpu_util"] = max(parent.get("gpu_util", 0.0), util)
            continue
        seconds, held = int(elapsed or 0), tres(alloc)
        for j in _expand(jid):
            # -D lists every requeued incarnation; the last row of a job id is the current one
            previous = rows.get(j, {})
            rows[j] = {
                "slurm_state": state,
                "state": normalise(state),
                "elapsed_s": seconds,
                "exit_code": exit_code,
                "nodes": nodes,
                "mem_gb": held.get("mem_gb"),
                "incarnations": previous.get("incarnations", 0) + 1,
                "gpu_hours": previous.get("gpu_hours", 0.0) + held.get("gpu", 0) * seconds / 3600,
                "cpu_hours": previous.get("cpu_hours", 0.0) + held.get("cpu", 0) * seconds / 3600,
                # where the site accounts energy (AcctGatherEnergyType); blank or 0 elsewhere
                "energy_kwh": previous.get("energy_kwh", 0.0) + int(joules or 0) / 3.6e6,
            }
    return rows


def tres_usage(text: str) -> dict[str, float]:
    """``cpu=00:00:05,gres/gpumem=4120M,gres/gpuutil=87,mem=1.2G`` -> {gpuutil: 87.0}."""
    out = {}
    for item in text.split(","):
        name, _, value = item.partition("=")
        if name == "gres/gpuutil":
            try:
                out["gpuutil"] = float(value)
            except ValueError:
                pass
    return out


def squeue(job_ids: Sequence[str]) -> Optional[dict[str, dict]]:
    """Queued and running jobs only (squeue forgets finished ones); None when Slurm is
    unreachable."""
    arrays = sorted({j.split("_")[0] for j in job_ids})
    if not arrays:
        return {}
    out = _run(["squeue", "-h", "-r", "-j", ",".join(arrays), "-o", "%i|%T|%M|%R"])
    if out is None:
        return None
    rows = {}
    for line in out.splitlines():
        parts = line.split("|")
        if len(parts) == 4:
            for j in _expand(parts[0]):
                rows[j] = {
                    "slurm_state": parts[1],
                    "state": normalise(parts[1]),
                    "elapsed": parts[2],
                    "reason": parts[3],
                }
    return rows


def cancel(job_ids: Sequence[str]) -> bool:
    return bool(job_ids) and _run(["scancel", *job_ids]) is not None


def job_state(job_id: str) -> Optional[str]:
    """One job's state (``normalise``d): sacct's, or squeue's while sacct does not know it yet
    (it lags a fresh submission); "unknown" when neither knows it, None when Slurm cannot be
    asked."""
    rows = sacct([job_id])
    if rows is None or job_id not in rows:
        rows = squeue([job_id])
    return None if rows is None else rows.get(job_id, {}).get("state", "unknown")
