"""`resubmit --failed --adapt`'s plan, cause by cause, against a partition as Slurm describes it
(the cluster test, tests/test_slurm_adapt.py, runs it for real)."""

from __future__ import annotations

import pytest

from mrihpc.login import adapt
from mrihpc.login.cluster_check import Partition
from mrihpc.login.results import status_report
from mrihpc.login.views import PointView
from mrihpc.paths import RunPaths, atomic_write_json, read_json
from mrihpc.spec_cluster import ClusterSpec

PARTITION = Partition(
    "debug",
    True,
    30,
    "00:30:00",
    [{"NodeName": "node1", "RealMemory": "4000"}, {"NodeName": "node2", "RealMemory": "4000"}],
)


@pytest.fixture
def run(tmp_path) -> RunPaths:
    run = RunPaths(tmp_path / "run")
    run.root.mkdir()
    atomic_write_json(
        run.manifest,
        {
            "name": "r",
            "executor": "slurm",
            "submissions": [],
            "points": [{"index": i, "name": f"p{i}", "overrides": {}} for i in range(6)],
        },
    )
    return run


def _status(run: RunPaths, index: int, **fields) -> None:
    run.point(index).root.mkdir(parents=True, exist_ok=True)
    atomic_write_json(run.point(index).status, fields)


def test_each_cause_gets_its_own_step(run):
    cluster = ClusterSpec(executor="slurm", time="00:10:00")
    _status(run, 1, state="running")  # killed at its limit before finishing an epoch
    _status(run, 2, state="running", epoch=3)
    views = [
        PointView(0, "p0", "out_of_memory", mem_gb=1.0),
        PointView(1, "p1", "timeout"),
        PointView(2, "p2", "timeout", epoch=3),
        PointView(3, "p3", "node_fail", nodes="node2"),
        PointView(4, "p4", "failed", reason="NonFiniteLoss: loss nan at epoch 2 step 5"),
        PointView(5, "p5", "cancelled"),
    ]
    steps = {s.index: s for s in adapt.plan(read_json(run.manifest), views, cluster, PARTITION)}
    assert (steps[0].resubmit, steps[0].changes) == (True, {"mem_gb": 1.5})
    assert (steps[1].resubmit, steps[1].changes) == (
        True,
        {"time": "00:20:00"},
    )  # no progress: twice the time
    assert (steps[2].resubmit, steps[2].changes) == (
        True,
        {},
    )  # it got to epoch 3: resumes as it was
    assert (steps[3].resubmit, steps[3].changes) == (True, {"exclude": "node2"})
    assert (
        not steps[4].resubmit and "optim.lr" in steps[4].why and steps[4].cause == "NonFiniteLoss"
    )
    assert (steps[5].resubmit, steps[5].changes) == (True, {})
    assert steps[0].line() == "point 0: OUT_OF_MEMORY: resubmit, cluster.mem_gb=1.5 (had 1 GB)"


def test_changes_build_on_the_last_adaptation_and_stop_at_the_partitions_limits(run):
    cluster = ClusterSpec(executor="slurm", time="00:10:00", mem_gb=2.0, exclude="node1")
    _status(run, 1, state="running")
    first = adapt.plan(
        read_json(run.manifest),
        [
            PointView(0, "p0", "out_of_memory"),
            PointView(1, "p1", "timeout"),
            PointView(2, "p2", "node_fail", nodes="node2"),
        ],
        cluster,
        PARTITION,
    )
    adapt.record(run, first)
    manifest = read_json(run.manifest)
    assert [s.changes for s in first] == [
        {"mem_gb": 3.0},
        {"time": "00:20:00"},
        {"exclude": "node1,node2"},
    ]
    assert adapt.adapted_cluster(manifest, 0) == {"mem_gb": 3.0}
    again = adapt.plan(
        manifest,
        [PointView(0, "p0", "out_of_memory"), PointView(1, "p1", "timeout")],
        cluster,
        PARTITION,
    )
    assert again[0].changes == {"mem_gb": 3.9}  # 4.5 GB capped by the nodes' 3.9 GB
    assert again[1].changes == {"time": "00:30:00"}  # 40 minutes capped by MaxTime
    adapt.record(run, again)
    last = adapt.plan(
        read_json(run.manifest),
        [PointView(0, "p0", "out_of_memory"), PointView(1, "p1", "timeout")],
        cluster,
        PARTITION,
    )
    assert [s.resubmit for s in last] == [False, False]
    assert "all a node of partition debug has" in last[0].why and "MaxTime" in last[1].why


def test_status_shows_what_each_adaptation_did(run):
    _status(run, 0, state="failed")
    adapt.record(
        run,
        [
            adapt.Step(0, "OUT_OF_MEMORY", True, {"mem_gb": 1.5}, "had 1 GB"),
            adapt.Step(4, "NonFiniteLoss", False, why=adapt.NOT_RERUN["NonFiniteLoss"]),
        ],
    )
    text = status_report(run, read_json(run.manifest), "ssim")
    assert "resubmit --adapt: point 0: OUT_OF_MEMORY -> cluster.mem_gb=1.5" in text
    assert (
        "resubmit --adapt: point 4: NonFiniteLoss -> not resubmitted: the loss was not finite"
        in text
    )


GPU_PARTITION = Partition(
    "gpu",
    True,
    None,
    "UNLIMITED",
    [
        {"NodeName": "dgx1", "RealMemory": "1000000", "Gres": "gpu:a100:4(S:0-1)"},
        {"NodeName": "dgx2", "RealMemory": "1000000", "Gres": "gpu:a100:4(S:0-1)"},
    ],
)
CUDA_OOM = (
    "OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total "
    "capacity of 79.10 GiB of which 1.06 GiB is free."
)


def test_a_gpu_out_of_memory_spreads_the_batch_over_more_gpus_not_more_ram(run):
    """The global batch stays (the same optimisation); each GPU gets half the samples: twice the
    GPUs of a node while it has them, then twice the nodes, while the batch divides."""
    cluster = ClusterSpec(executor="slurm", time="01:00:00", gpus_per_node=1, mem_gb=64)
    seen = []
    for _ in range(4):
        steps = adapt.plan(
            read_json(run.manifest),
            [PointView(0, "p0", "failed", reason=CUDA_OOM)],
            cluster,
            GPU_PARTITION,
            {0: 8},
        )
        adapt.record(run, steps)
        seen.append((steps[0].resubmit, steps[0].changes))
    assert seen == [
        (True, {"gpus_per_node": 2, "tasks_per_node": 2}),  # 4 samples a GPU
        (True, {"gpus_per_node": 4, "tasks_per_node": 4}),  # 2: all of a node's GPUs
        (True, {"nodes": 2}),  # 1 sample a GPU, on both nodes
        (False, {}),  # the partition has no more nodes
    ]
    assert steps[0].cause == "CUDA_OOM" and "lower train.batch_size" in steps[0].why
    # a batch the next rank count does not divide is not resubmitted to fail again
    odd = adapt.plan(
        read_json(run.manifest),
        [PointView(1, "p1", "failed", reason=CUDA_OOM)],
        cluster,
        GPU_PARTITION,
        {1: 3},
    )
    assert not odd[0].resubmit and "does not divide train.batch_size 3" in odd[0].why


def test_cuda_out_of_memory_in_the_log_is_not_a_host_memory_kill(run, tmp_path):
    """A point that left no reason, whose log ends in CUDA's out-of-memory error, is not given
    more host memory (slurmstepd's "out of memory" kills are)."""
    log = tmp_path / "0_log.err"
    log.write_text("Traceback ...\ntorch.OutOfMemoryError: CUDA out of memory. Tried to ...\n")
    manifest = read_json(run.manifest)
    manifest["submissions"] = [
        {
            "array_id": "7",
            "executor": "slurm",
            "indices": [0],
            "jobs": {"0": {"job_id": "7_0", "stdout": str(log), "stderr": str(log)}},
        }
    ]
    cluster = ClusterSpec(executor="slurm", time="01:00:00", mem_gb=64)
    view = PointView(0, "p0", "failed")
    assert not adapt.killed_for_memory(manifest, view)
    log.write_text("slurmstepd: error: Detected 1 oom-kill event(s) in StepId=7.0\n")
    assert adapt.killed_for_memory(manifest, view)
    assert adapt.plan(manifest, [view], cluster, GPU_PARTITION)[0].changes == {"mem_gb": 96.0}
