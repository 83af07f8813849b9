"""The spec against the cluster it is submitted to, before anything is queued.

Asks Slurm once per submit (``scontrol show partition / node / config``, one line per record)
and checks what it cannot give: a partition that does not exist, more GPUs, CPUs, memory or
nodes per point than any node of the partition has, a time above the partition's MaxTime,
more points than MaxJobCount. When Slurm cannot be asked, it says so and checks nothing.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass, field
from typing import Optional

from mrihpc.spec import JobSpec, slurm_time_minutes


@dataclass
class Partition:
    name: str
    default: bool
    max_minutes: Optional[int]  # None: no limit
    max_time: str
    nodes: list[dict] = field(default_factory=list)


def _records(text: str) -> list[dict[str, str]]:
    """``scontrol show ... -o`` output: one record per line of Key=Value words."""
    return [
        dict(w.split("=", 1) for w in line.split() if "=" in w)
        for line in text.splitlines()
        if line.strip()
    ]


def _scontrol(*args: str) -> str:
    out = subprocess.run(["scontrol", *args], capture_output=True, text=True, timeout=20)
    if out.returncode != 0:
        raise OSError(out.stderr.strip() or f"scontrol {' '.join(args)} failed")
    return out.stdout


def gpus(gres: str) -> int:
    """GPUs in a node's Gres, e.g. ``gpu:a100:8(S:0-1)`` -> 8, ``(null)`` -> 0."""
    return sum(int(m.group(1)) for m in re.finditer(r"gpu(?::[^:,(]+)?:(\d+)", gres or ""))


def read_cluster() -> tuple[dict[str, Partition], dict[str, str]]:
    """Partitions (with their nodes) and the controller's config. Raises OSError when Slurm
    cannot be asked."""
    nodes = _records(_scontrol("show", "node", "-o"))
    parts = {}
    for r in _records(_scontrol("show", "partition", "-o")):
        limit = r.get("MaxTime", "UNLIMITED")
        minutes = None if limit in ("UNLIMITED", "INFINITE") else slurm_time_minutes(limit)
        members = [n for n in nodes if r["PartitionName"] in n.get("Partitions", "").split(",")]
        parts[r["PartitionName"]] = Partition(
            r["PartitionName"], r.get("Default") == "YES", minutes, limit, members
        )
    config = dict(re.findall(r"^(\w+)\s*=\s*(\S+)", _scontrol("show", "config"), re.M))
    return parts, config


def check(spec: JobSpec, source: str, num_points: int) -> tuple[list[str], list[str]]:
    """(problems, notes) of ``spec`` on this cluster; every problem names the key and what the
    cluster offers."""
    try:
        parts, config = read_cluster()
    except (OSError, subprocess.TimeoutExpired, ValueError) as e:
        return [], [f"could not ask Slurm about partitions and nodes ({e}); cluster checks skipped"]
    c, problems = spec.cluster, []
    name = c.partition or next((p.name for p in parts.values() if p.default), None)
    if name not in parts:
        where = (
            f"cluster.partition: no partition {name!r}"
            if c.partition
            else "cluster.partition: the cluster has no default partition"
        )
        return [f"{source}: {where}; the cluster has: {', '.join(sorted(parts)) or 'none'}"], []
    adaptive = spec.sweep.adaptive
    if adaptive is not None and adaptive.partition and adaptive.partition not in parts:
        problems.append(
            f"{source}: sweep.adaptive.partition: no partition {adaptive.partition!r}; "
            f"the cluster has: {', '.join(sorted(parts))}"
        )
    p = parts[name]
    nodes = p.nodes
    have = lambda key: max((int(float(n.get(key, 0) or 0)) for n in nodes), default=0)  # noqa: E731
    max_gpus = max((gpus(n.get("Gres", "")) for n in nodes), default=0)
    if c.gpus_per_node > max_gpus:
        problems.append(
            f"cluster.gpus_per_node: {c.gpus_per_node}, but the nodes of partition {name} have at "
            f"most {max_gpus} GPU(s)"
        )
    cpus = c.num_tasks_per_node * (c.cpus_per_task or 1)
    if cpus > have("CPUTot"):
        problems.append(
            f"cluster.cpus_per_task: {c.num_tasks_per_node} task(s) x "
            f"{c.cpus_per_task or 1} CPU(s) = {cpus}, "
            f"but the nodes of partition {name} have at most {have('CPUTot')} CPUs"
        )
    if c.mem_gb is not None and c.mem_gb * 1024 > have("RealMemory"):
        problems.append(
            f"cluster.mem_gb: {c.mem_gb}, but the nodes of partition {name} have at most "
            f"{have('RealMemory') / 1024:.1f} GB"
        )
    if c.nodes > len(nodes):
        problems.append(f"cluster.nodes: {c.nodes}, but partition {name} has {len(nodes)} node(s)")
    if p.max_minutes is not None and slurm_time_minutes(c.time) > p.max_minutes:
        problems.append(f"cluster.time: {c.time} exceeds partition {name}'s MaxTime {p.max_time}")
    max_jobs = int(config.get("MaxJobCount", 0) or 0)
    if max_jobs and num_points > max_jobs:
        problems.append(
            f"sweep: {num_points} points exceed the cluster's MaxJobCount ({max_jobs}); "
            "submit fewer"
        )
    return [f"{source}: {line}" for line in problems], []
