"""`resubmit --failed --adapt`: each failed point's cause decides what its next attempt gets.

    OUT_OF_MEMORY (or killed for memory) memory x 1.5, capped by the partition's largest node
    CUDA out of memory                   the same global batch over twice the GPUs (a node's
                                         GPUs, else twice the nodes), while it divides
    TIMEOUT, no progress since last time time x 2, capped by the partition's MaxTime
    TIMEOUT that made progress           as it was (it resumes from last.pt)
    NODE_FAIL                            --exclude the node it died on
    NonFiniteLoss, DataError             not resubmitted: the reason and what to change
    anything else                        as it was

Every change is recorded per point in the manifest (``adaptations``) and is where the next
adaptation starts from; `status` shows it. Torch-free, as every login verb.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field
from typing import Any, Optional

from mrihpc.login.cluster_check import gpus as gpus_in
from mrihpc.login.views import PointView, latest_jobs
from mrihpc.paths import RunPaths, update_json
from mrihpc.section import slurm_time_minutes

MEMORY_FACTOR, TIME_FACTOR = 1.5, 2
#: errors a rerun repeats: the fix is the user's
NOT_RERUN = {
    "NonFiniteLoss": (
        "the loss was not finite; lower optim.lr, set train.grad_clip or check the data, "
        "then resubmit the point by its index"
    ),
    "DataError": (
        "a data file is bad (named in the reason); fix or remove it, then resubmit the point "
        "by its index"
    ),
}


@dataclass
class Step:
    """What happens to one point."""

    index: int
    cause: str
    resubmit: bool
    changes: dict[str, Any] = field(default_factory=dict)
    """cluster key -> value for its next attempt (mem_gb, time, exclude), on top of the spec's."""
    why: str = ""
    epoch: Optional[int] = None
    """Its progress when planned (status.json's epoch): a later TIMEOUT compares against it."""

    def line(self) -> str:
        what = ", ".join(f"cluster.{k}={v}" for k, v in self.changes.items()) or "unchanged"
        return (
            f"point {self.index}: {self.cause}: "
            + (f"resubmit, {what}" if self.resubmit else "not resubmitted")
            + (f" ({self.why})" if self.why else "")
        )


def adapted_cluster(manifest: dict, index: int) -> dict[str, Any]:
    """The cluster changes earlier adaptations gave point ``index``, latest last."""
    out: dict[str, Any] = {}
    for record in (manifest.get("adaptations") or {}).get(str(index), []):
        out |= record.get("changes", {})
    return out


def by_cluster(manifest: dict, indices: list[int]) -> dict[tuple, list[int]]:
    """``indices`` grouped by the cluster changes their adaptations gave them (sorted
    ``(key, value)`` pairs): one array job per group, as one array has one set of resources."""
    groups: dict[tuple, list[int]] = {}
    for i in indices:
        groups.setdefault(tuple(sorted(adapted_cluster(manifest, i).items())), []).append(i)
    return groups


#: what slurmstepd writes into a task's stderr when it kills a step over its memory: sites that
#: enforce memory by polling (JobAcctGatherParams=OverMemoryKill) end the job FAILED, not
#: OUT_OF_MEMORY, and this line is the only trace
MEMORY_KILL = ("exceeded memory limit", "exceeded job memory limit", "oom-kill", "out of memory")


def killed_for_memory(manifest: dict, view: PointView) -> bool:
    """The point's last job ended OUT_OF_MEMORY, or its stderr says slurmstepd killed it for
    memory."""
    if view.state == "out_of_memory":
        return True
    if view.state != "failed":
        return False
    log = (latest_jobs(manifest).get(view.index) or {}).get("stderr")
    try:
        with open(log, "rb") as f:
            f.seek(0, 2)
            f.seek(max(0, f.tell() - 65536))
            tail = f.read().decode(errors="replace").lower()
    except (OSError, TypeError):
        return False
    tail = tail.replace("cuda out of memory", "")  # a GPU's memory: more GPUs, not more RAM
    return any(line in tail for line in MEMORY_KILL)


def out_of_gpu_memory(view: PointView) -> bool:
    """The point failed because a GPU ran out of memory (torch's OutOfMemoryError, on any rank:
    rank 0's error leads with another rank's)."""
    return view.state == "failed" and (
        (view.reason or "").startswith("OutOfMemoryError")
        or "CUDA out of memory" in (view.reason or "")
    )


def plan(
    manifest: dict,
    views: list[PointView],
    cluster,
    partition,
    batch_sizes: Optional[dict[int, int]] = None,
) -> list[Step]:
    """One Step per view (the points chosen for resubmission). ``cluster``: the spec's cluster
    section; ``partition``: its ``cluster_check.Partition`` or None when Slurm cannot say;
    ``batch_sizes``: each point's train.batch_size (which a change of ranks must divide)."""
    steps = []
    for v in views:
        before = {**cluster.model_dump(), **adapted_cluster(manifest, v.index)}
        error = (v.reason or "").split(":", 1)[0]
        if v.state == "failed" and error in NOT_RERUN:
            steps.append(Step(v.index, error, False, why=NOT_RERUN[error]))
        elif out_of_gpu_memory(v):
            steps.append(_more_gpus(v, before, (batch_sizes or {}).get(v.index), partition))
        elif killed_for_memory(manifest, v):
            steps.append(_more_memory(v, before, partition))
        elif v.state == "timeout":
            steps.append(_more_time(manifest, v, before, partition))
        elif v.state == "node_fail" and v.nodes:
            excluded = [n for n in (before.get("exclude") or "").split(",") if n]
            steps.append(
                Step(
                    v.index,
                    "NODE_FAIL",
                    True,
                    {"exclude": ",".join(dict.fromkeys(excluded + [v.nodes]))},
                    f"died on {v.nodes}",
                )
            )
        else:
            steps.append(
                Step(v.index, v.state.upper() if v.state != "failed" else error or "failed", True)
            )
        steps[-1].epoch = v.epoch
    return steps


def _more_memory(v: PointView, before: dict, partition) -> Step:
    had = before.get("mem_gb") or v.mem_gb
    if not had:
        return Step(
            v.index,
            "OUT_OF_MEMORY",
            True,
            why="its memory is unknown (no cluster.mem_gb, no sacct); as it was",
        )
    cap = (
        max((float(n.get("RealMemory", 0) or 0) for n in partition.nodes), default=0) / 1024
        if partition
        else None
    )
    want = math.ceil(had * MEMORY_FACTOR * 100) / 100
    if cap and want > cap:
        want = math.floor(cap * 100) / 100
    if want <= had:
        return Step(
            v.index,
            "OUT_OF_MEMORY",
            False,
            why=f"it had {had:g} GB, all a node of partition "
            f"{partition.name} has; lower train.batch_size or train.workers",
        )
    return Step(v.index, "OUT_OF_MEMORY", True, {"mem_gb": want}, f"had {had:g} GB")


def _more_gpus(v: PointView, before: dict, batch: Optional[int], partition) -> Step:
    """The same global batch over twice the ranks, one GPU each: each GPU then holds half the
    samples' activations, and the optimisation is the one the point was running (DDP averages
    the gradients of the global batch). Within a node while its GPUs allow, else over twice the
    nodes; never where the batch does not divide."""
    gpus, nodes = before["gpus_per_node"], before["nodes"]
    tasks = before["tasks_per_node"] or max(1, gpus)
    fix = "lower train.batch_size or data.crop, or set train.precision bf16"
    if not gpus:
        return Step(v.index, "CUDA_OOM", False, why=f"no GPUs were asked for; {fix}")
    most = max((gpus_in(n.get("Gres", "")) for n in partition.nodes), default=8) if partition else 8
    wider = []  # (cluster changes, ranks), the node's own GPUs first
    if gpus * 2 <= min(most, 8):
        wider.append(({"gpus_per_node": gpus * 2, "tasks_per_node": tasks * 2}, nodes * tasks * 2))
    if partition is None or nodes * 2 <= len(partition.nodes):
        wider.append(({"nodes": nodes * 2}, nodes * 2 * tasks))
    for changes, ranks in wider:
        if batch is not None and batch % ranks == 0:
            return Step(
                v.index,
                "CUDA_OOM",
                True,
                changes,
                f"train.batch_size {batch} over {ranks} GPUs: {batch // ranks} a GPU",
            )
    return Step(
        v.index,
        "CUDA_OOM",
        False,
        why=f"twice its {nodes * tasks} GPU(s) is not possible here or does not divide "
        f"train.batch_size {batch}; {fix}",
    )


def _more_time(manifest: dict, v: PointView, before: dict, partition) -> Step:
    last = ((manifest.get("adaptations") or {}).get(str(v.index)) or [{}])[-1]
    now = v.epoch
    if (
        last
        and now is not None
        and now > (last.get("epoch") if last.get("epoch") is not None else -1)
    ):
        return Step(
            v.index,
            "TIMEOUT",
            True,
            why=f"progress since the last attempt (epoch {now}): resumes from last.pt",
        )
    if not last and now is not None:
        return Step(
            v.index, "TIMEOUT", True, why=f"first timeout, at epoch {now}: resumes from last.pt"
        )
    minutes = slurm_time_minutes(before["time"])
    want = minutes * TIME_FACTOR
    if partition is not None and partition.max_minutes is not None:
        if minutes >= partition.max_minutes:
            return Step(
                v.index,
                "TIMEOUT",
                False,
                why=f"no progress, and {before['time']} is partition "
                f"{partition.name}'s MaxTime; lower train.steps_per_epoch or the data size",
            )
        want = min(want, partition.max_minutes)
    return Step(
        v.index,
        "TIMEOUT",
        True,
        {"time": f"{want // 60:02d}:{want % 60:02d}:00"},
        "no progress since the last attempt",
    )


def record(run: RunPaths, steps: list[Step]) -> None:
    """The manifest remembers each point's step (resubmitted or not) with its progress then."""
    stamp = dt.datetime.now().isoformat(timespec="seconds")

    def add(manifest: dict) -> dict:
        adaptations = manifest.setdefault("adaptations", {})
        for s in steps:
            adaptations.setdefault(str(s.index), []).append(
                {
                    "time": stamp,
                    "cause": s.cause,
                    "resubmitted": s.resubmit,
                    "changes": s.changes,
                    "why": s.why,
                    "epoch": s.epoch,
                }
            )
        return manifest

    update_json(run.manifest, add)
