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
