"""On the real test cluster (slurm/cluster.sh): arrays, throttles, accounting, DDP across
tasks and nodes, requeue after a signal and after `scontrol requeue`, cancel, failure,
resubmit, and status without accounting."""

from __future__ import annotations

import datetime as dt
import os
import socket
import subprocess
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from conftest import REPO, TINY, merge
from mrihpc.login.cli import main
from mrihpc.node import checkpoint
from mrihpc.node.distributed import rendezvous
from mrihpc.login.accounting import sacct
from mrihpc.login.views import latest_jobs
from mrihpc.workloads.knee.kspace.synth import generate
from mrihpc.paths import RunPaths, read_json

pytestmark = pytest.mark.slurm

SLURM_TINY = merge(
    TINY, cluster={"executor": "slurm", "time": "10:00", "array_parallelism": 2, "cpus_per_task": 1}
)


def submit(spec_path: Path, runs: Path, capsys) -> RunPaths:
    assert main(["submit", str(spec_path), "--runs", str(runs)]) == 0
    out = capsys.readouterr().out
    assert "submitted array job" in out
    folders = sorted(runs.glob("*/*"))
    return RunPaths(folders[-1])


def states(run: RunPaths) -> list[str]:
    return [
        (read_json(run.point(p["index"]).status, {}) or {}).get("state")
        for p in read_json(run.manifest)["points"]
    ]


def wait_done(run: RunPaths, timeout: float = 240, allow=("done",)) -> None:
    """Poll the points' own status files (sacct lags; never trust its first answer)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        current = states(run)
        if all(s in allow for s in current):
            return
        time.sleep(1)
    pytest.fail(f"points not finished after {timeout}s: {states(run)}")


def array_id(run: RunPaths, submission: int = 0) -> str:
    return read_json(run.manifest)["submissions"][submission]["array_id"]


def sacct_rows(job: str, fields: str, timeout: float = 60) -> list[list[str]]:
    """``fields`` of every incarnation of ``job`` (``-D``), one row each. sacct lags slurmctld
    by seconds (slurmdbd records a job after the controller): asked until it lists the job."""
    deadline = time.time() + timeout
    while True:
        out = subprocess.run(
            ["sacct", "-n", "-P", "-X", "-D", "-j", job, "-o", fields],
            capture_output=True,
            text=True,
        )
        rows = [line.split("|") for line in out.stdout.splitlines() if line]
        if rows:
            return rows
        if time.time() > deadline:
            pytest.fail(f"sacct never listed job {job}: {out.stderr.strip()}")
        time.sleep(1)


def wait_sacct(job: str, count: int, timeout: float = 60) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        rows = sacct([f"{job}_0"]) or {}
        if len(rows) >= count and all(r["state"] == "done" for r in rows.values()):
            return rows
        time.sleep(1)
    pytest.fail(f"sacct never showed {count} completed tasks of {job}: {sacct([f'{job}_0'])}")


def test_sweep_is_one_throttled_array(slurm_cluster, tmp_path, write_spec, capsys):
    spec = write_spec(merge(SLURM_TINY, sweep={"grid": {"optim.lr": [1e-3, 2e-3, 3e-3, 4e-3]}}))
    run = submit(spec, tmp_path / "runs", capsys)
    wait_done(run)
    job = array_id(run)
    rows = wait_sacct(job, 4)
    assert sorted(rows) == [f"{job}_{i}" for i in range(4)]  # ONE array of 4 tasks
    # %2: never more than two tasks running at once
    spans = [
        (dt.datetime.fromisoformat(s), dt.datetime.fromisoformat(e))
        for _, s, e in sacct_rows(job, "JobID,Start,End")
    ]
    for start, _ in spans:
        assert sum(1 for s, e in spans if s <= start < e) <= 2
    assert main(["status", str(run.root)]) == 0
    out = capsys.readouterr().out
    assert "4 points: 4 done (Slurm state from sacct)" in out
    for i in range(4):
        assert f"{job}_{i}" in out
    assert main(["results", str(run.root), "--csv"]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 5


def test_sweep_larger_than_max_array_size_is_split(slurm_cluster, tmp_path, write_spec, capsys):
    spec = write_spec(
        merge(
            SLURM_TINY,
            train={**TINY["train"], "epochs": 1},
            cluster={**SLURM_TINY["cluster"], "max_array_size": 2},
            sweep={"grid": {"optim.lr": [1e-3, 2e-3, 3e-3]}},
        )
    )
    run = submit(spec, tmp_path / "runs", capsys)
    wait_done(run)
    submissions = read_json(run.manifest)["submissions"]
    assert [sorted(s["jobs"]) for s in submissions] == [["0", "1"], ["2"]]
    assert submissions[0]["array_id"] != submissions[1]["array_id"]


def test_an_array_sbatch_refuses_is_named_recorded_and_resubmitted(
    slurm_cluster, tmp_path, write_spec, capsys, monkeypatch
):
    """Three points at max_array_size 2: the first array is queued, sbatch refuses the second (a
    stand-in on PATH passes the first call to the real sbatch and fails the second the way a QOS
    limit does; a real limit would also hold up the other tests). One error names the points left
    out and the array queued; the manifest records that array; `resubmit --failed` queues the
    rest."""
    import shutil

    calls, shim = tmp_path / "calls", tmp_path / "bin"
    shim.mkdir()
    (shim / "sbatch").write_text(
        f"#!/bin/sh\necho call >> {calls}\n"
        f'if [ "$(wc -l < {calls})" -eq 2 ]; then\n'
        '  echo "sbatch: error: QOSMaxSubmitJobPerUserLimit" >&2; exit 1\nfi\n'
        f'exec {shutil.which("sbatch")} "$@"\n'
    )
    (shim / "sbatch").chmod(0o755)
    monkeypatch.setenv("PATH", f"{shim}:{os.environ['PATH']}")
    spec = write_spec(
        merge(
            SLURM_TINY,
            train={**TINY["train"], "epochs": 1},
            cluster={**SLURM_TINY["cluster"], "max_array_size": 2},
            sweep={"grid": {"optim.lr": [1e-3, 2e-3, 3e-3]}},
        )
    )
    assert main(["submit", str(spec), "--runs", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    run = RunPaths(sorted((tmp_path / "runs").glob("*/*"))[-1])
    submissions = read_json(run.manifest)["submissions"]
    assert [sorted(s["jobs"]) for s in submissions] == [["0", "1"]]
    assert "sbatch refused the array of points 2-2" in err and "QOSMaxSubmitJobPerUserLimit" in err
    assert f"array(s) {submissions[0]['array_id']} queued before it" in err
    assert main(["resubmit", str(run.root), "--failed"]) == 0
    assert "resubmitting point(s) 2 (slurm)" in capsys.readouterr().out
    wait_done(run)


def _weights(run: RunPaths) -> dict:
    return checkpoint.load(run.point(0).last_checkpoint)["nets"]["model"]


def test_a_rank_that_fails_alone_leads_the_points_error(
    slurm_cluster, tmp_path, write_spec, capsys
):
    """Two tasks; the second validation volume, rank 1's (VolumeShard deals volumes round-robin),
    holds a NaN slice. Rank 1 fails naming the file and slice and records it beside the status;
    rank 0 then fails in the collective that waits for rank 1, with an error that says nothing of
    why. The point's error leads with rank 1's reason, and `mrihpc status` shows it."""
    root = generate(tmp_path / "data", 8, slices=8, shape=(96, 80), recon_shape=(64, 64), seed=3)
    val = sorted((root / "val").iterdir())
    assert len(val) >= 2
    bad = val[1]
    with h5py.File(bad, "a") as f:
        kspace = f["kspace"][()]
        kspace[5, 10, 10] = np.nan  # past skip_slices (3): read
        del f["kspace"]
        f.create_dataset("kspace", data=kspace)
    data = {k: v for k, v in TINY["data"].items() if k != "synthetic"} | {"root": str(root)}
    spec = merge(
        SLURM_TINY,
        name="rank-fails",
        train={**TINY["train"], "epochs": 1, "batch_size": 2, "steps_per_epoch": 2},
        cluster={**SLURM_TINY["cluster"], "tasks_per_node": 2},
    )
    spec["data"] = data  # the files above, no synthetic section
    run = submit(write_spec(spec), tmp_path / "runs", capsys)
    wait_done(run, allow=("failed",))
    status = read_json(run.point(0).status)
    why = f"DataError: {bad}: kspace slice 5 holds NaN or infinite values; allowed: finite values"
    assert status["error"].startswith(f"{why} (rank 1; then rank 0: "), status["error"]
    assert status["rank_errors"] == [{"attempt": 1, "rank": 1, "error": why}]
    assert main(["status", str(run.root)]) == 0
    out = capsys.readouterr().out
    assert f"DataError: {bad}"[:60] in out
    assert f"its traceback: mrihpc logs {run.root} 0 --rank 1 --err" in out
    assert main(["logs", str(run.root), "0", "--rank", "1", "--err"]) == 0
    assert f"mrihpc.data.DataError: {bad}: kspace slice 5" in capsys.readouterr().out
    assert main(["logs", str(run.root), "0", "--rank", "2"]) != 0
    assert "--rank 2: point 0 runs 2 rank(s); allowed: 0-1" in capsys.readouterr().err


def test_a_rank_that_cannot_start_ends_its_peers_at_once(
    slurm_cluster, tmp_path, write_spec, capsys
):
    """Two tasks; the port of the job's rendezvous is taken on its first node, so rank 0 cannot
    start the process group. Rank 1 would wait for it until the 10-minute timeout, holding its
    node; srun's --kill-on-bad-exit ends it as soon as rank 0 exits (SIGTERM, then SIGKILL after
    the cluster's KillWait of 10 s), and rank 0's status says why."""
    spec = merge(
        SLURM_TINY,
        name="no-rendezvous",
        cluster={**SLURM_TINY["cluster"], "tasks_per_node": 2, "sbatch": {"hold": True}},
    )
    run = submit(write_spec(spec), tmp_path / "runs", capsys)
    job = latest_jobs(read_json(run.manifest))[0]["job_id"]  # one point: no array
    _, port = rendezvous(["node1"], job)  # the test cluster's nodes are 127.0.0.1
    with socket.socket() as taken:
        taken.bind(("", int(port)))
        taken.listen()
        subprocess.run(["scontrol", "release", array_id(run)], check=True)
        wait_done(run, timeout=120, allow=("failed",))
        failed = time.time()
        while (row := sacct_rows(job, "State")[-1][0]) in ("PENDING", "RUNNING") and (
            time.time() < failed + 60
        ):
            time.sleep(1)
    assert row == "FAILED", f"rank 1 still held its node 60 s after rank 0 failed: {row}"
    status = read_json(run.point(0).status)
    assert status["error"].startswith("DistNetworkError") and "EADDRINUSE" in status["error"], (
        status
    )
    assert main(["status", str(run.root)]) == 0
    assert "DistNetworkError: The server socket has failed to listen" in capsys.readouterr().out


def test_each_points_synthetic_data_is_made_before_queueing(
    slurm_cluster, tmp_path, write_spec, capsys
):
    """A sweep over the synthetic data's seed: submit makes every point's dataset on the login
    node, so no array task (held here) spends its GPU time generating one."""
    from mrihpc.data.cache import dataset_folder

    seeds = [9101, 9102]
    synthetic = TINY["data"]["synthetic"]
    folders = [dataset_folder("fastmri", {**synthetic, "seed": s}) for s in seeds]
    assert not any(f.exists() for f in folders)
    spec = merge(
        SLURM_TINY,
        name="data-sweep",
        cluster={**SLURM_TINY["cluster"], "sbatch": {"hold": True}},
        sweep={"grid": {"data.synthetic.seed": seeds}},
    )
    run = submit(write_spec(spec), tmp_path / "runs", capsys)
    try:
        assert all(f.is_dir() for f in folders), folders
        assert all(
            (read_json(run.point(i).status, {}) or {}).get("state") is None for i in (0, 1)
        )  # no task has started
    finally:
        subprocess.run(["scancel", array_id(run)], check=True)


def test_ddp_two_tasks_and_two_nodes_equal_one_process(
    slurm_cluster, tmp_path, write_spec, capsys, monkeypatch
):
    # a rendezvous exported in the submitting shell reaches the job (sbatch exports the
    # environment); the ranks must use the job's own, or they never meet
    monkeypatch.setenv("MASTER_ADDR", "stale-login-shell.invalid")
    monkeypatch.setenv("MASTER_PORT", "1")
    # The same computation: the same samples, and per-rank losses that average to the one
    # process's loss (checked to 1e-9 after one step). Only float32 rounding differs (a batch of
    # one and a batch of two take other kernels; which ones depends on oneDNN's ISA). The
    # fastMRI U-Net's instance norms amplify that rounding about 1000x per step (dividing by a
    # channel's small std): max weight difference 1e-9 after 1 step, 2e-6 after 3, 1e-4 after 6 on
    # an AVX2 CPU, so with them this would compare chaos. Without norms the same 6 SGD steps
    # differ by 1.5e-8 (AVX2, SSE41, AVX-512 alike), against updates of ~1e-2: atol 1e-6 is 60x
    # the rounding and 1e-4 of the update.
    base = merge(
        SLURM_TINY,
        train={**TINY["train"], "epochs": 2, "batch_size": 2, "steps_per_epoch": 3},
        optim={"name": "sgd", "lr": 0.01, "momentum": 0.5},
        model={**TINY["model"], "norm": "none"},
    )
    layouts = {
        "one": {"nodes": 1, "tasks_per_node": 1},
        "tasks": {"nodes": 1, "tasks_per_node": 2},
        "nodes": {"nodes": 2, "tasks_per_node": 1},
    }
    runs = {}
    for name, layout in layouts.items():
        spec = write_spec(
            merge(base, name=f"ddp-{name}", cluster={**base["cluster"], **layout}), f"{name}.yaml"
        )
        runs[name] = submit(spec, tmp_path / name, capsys)
    for run in runs.values():
        wait_done(run)
    reference = _weights(runs["one"])
    for name in ("tasks", "nodes"):
        status = read_json(runs[name].point(0).status)
        assert status["world_size"] == 2
        digests = status["rank_weights_sha1"]
        assert len(digests) == 2 and digests[0] == digests[1]  # both ranks hold identical weights
        saved = checkpoint.load(runs[name].point(0).last_checkpoint)
        assert len(saved["rng_ranks"]) == 2  # every rank's RNG streams, restored per rank on resume
        for key, value in _weights(runs[name]).items():
            assert torch.allclose(value.float(), reference[key].float(), atol=1e-6, rtol=0), (
                name,
                key,
            )
    nodes = sacct_rows(read_json(runs["nodes"].manifest)["submissions"][0]["array_id"], "NodeList")
    assert nodes[-1][0] == "node[1-2]"


def _wait_epoch(run: RunPaths, point: int, epoch: int, attempts: int, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        status = read_json(run.point(point).status, {}) or {}
        if (
            status.get("attempts", 0) >= attempts
            and (status.get("epoch") or 0) >= epoch
            and status.get("state") == "running"
        ):
            return
        time.sleep(0.2)
    pytest.fail(
        f"point {point} never reached epoch {epoch} in attempt {attempts}: "
        f"{read_json(run.point(point).status)}"
    )


def test_requeue_resumes_exactly_and_only_that_task_reruns(
    slurm_cluster, tmp_path, write_spec, capsys
):
    # two DataLoader workers, as real specs use: Slurm signals them too, and they must leave the
    # signal to the training process, which checkpoints at a step boundary
    slow = merge(
        SLURM_TINY,
        train={**TINY["train"], "epochs": 8, "workers": 2},
        data={**TINY["data"], "synthetic": {**TINY["data"]["synthetic"], "volumes": 10}},
    )
    reference = submit(
        write_spec(merge(slow, name="straight"), "straight.yaml"), tmp_path / "a", capsys
    )
    run = submit(
        write_spec(
            merge(
                slow, name="requeued", sweep={"points": [{"train.epochs": 8}, {"train.epochs": 8}]}
            ),
            "requeued.yaml",
        ),
        tmp_path / "b",
        capsys,
    )
    job = f"{array_id(run)}_0"
    _wait_epoch(run, 0, 2, attempts=1)
    subprocess.run(
        ["scancel", "--signal=USR2", job], check=True
    )  # what Slurm sends before a time limit
    _wait_epoch(run, 0, 4, attempts=2)
    subprocess.run(["scontrol", "requeue", job], check=True)  # preemption by hand
    wait_done(run, timeout=300)
    wait_done(reference)
    for key, value in _weights(reference).items():
        assert torch.equal(value, _weights(run)[key]), key
    assert [read_json(run.point(i).status)["attempts"] for i in (0, 1)] == [3, 1]
    logs = "".join(p.read_text(errors="replace") for p in (run.root / "logs").glob("*"))
    assert "killed by signal" not in logs
    deadline = time.time() + 60
    while time.time() < deadline:
        rows = sacct([job]) or {}
        if rows.get(job, {}).get("incarnations", 0) >= 3 and rows[job]["state"] == "done":
            break
        time.sleep(1)
    assert rows[job]["incarnations"] == 3, rows  # sacct shows the requeues of task 0 ...
    assert rows[f"{array_id(run)}_1"]["incarnations"] == 1  # ... and task 1 ran once


def test_a_ddp_point_is_requeued_whole_after_usr2(slurm_cluster, tmp_path, write_spec, capsys):
    """Two tasks under srun --kill-on-bad-exit: after USR2 every rank stops at one step, rank 0
    checkpoints and requeues (Slurm then ends the step), and the point resumes and ends done."""
    spec = merge(
        SLURM_TINY,
        name="ddp-requeued",
        train={**TINY["train"], "epochs": 6},
        data={**TINY["data"], "synthetic": {**TINY["data"]["synthetic"], "volumes": 10}},
        cluster={**SLURM_TINY["cluster"], "tasks_per_node": 2},
    )
    run = submit(write_spec(spec), tmp_path / "runs", capsys)
    job = latest_jobs(read_json(run.manifest))[0]["job_id"]
    _wait_epoch(run, 0, 2, attempts=1)
    subprocess.run(["scancel", "--signal=USR2", job], check=True)
    wait_done(run, timeout=300)
    status = read_json(run.point(0).status)
    assert status["attempts"] == 2 and status["world_size"] == 2, status
    deadline = time.time() + 60  # sacct: the requeued incarnation, then the one that completed
    while [r[0] for r in sacct_rows(job, "State")] != ["REQUEUED", "COMPLETED"]:
        assert time.time() < deadline, sacct_rows(job, "State")
        time.sleep(1)


def test_cancel_and_failure_are_shown_and_resubmitted(slurm_cluster, tmp_path, write_spec, capsys):
    good = generate(tmp_path / "good", 5, slices=8, shape=(96, 80), recon_shape=(64, 64), seed=2)
    bad = generate(tmp_path / "bad", 5, slices=8, shape=(96, 80), recon_shape=(64, 64), seed=2)
    corrupt = sorted((bad / "val").iterdir())[
        0
    ]  # NaN k-space: only the values show it (a bad header is refused at submit)
    with h5py.File(corrupt, "a") as f:
        f["kspace"][5, 10, 10] = np.nan
    data = {**{k: v for k, v in TINY["data"].items() if k != "synthetic"}, "root": str(good)}
    spec = {
        **SLURM_TINY,
        "data": data,
        "sweep": {"points": [{}, {"data.root": str(bad)}, {"train.epochs": 200}, {}]},
    }
    run = submit(write_spec(spec), tmp_path / "runs", capsys)
    _wait_epoch(run, 2, 1, attempts=1)
    assert main(["cancel", str(run.root), "2"]) == 0
    wait_done(
        run, allow=("done", "failed", "interrupted")
    )  # the cancelled point checkpointed and left
    deadline = time.time() + 60
    while time.time() < deadline:
        capsys.readouterr()
        main(["status", str(run.root)])
        out = capsys.readouterr().out
        if "2 done, 1 failed" in out and "cancelled" in out:
            break
        time.sleep(1)
    assert "4 points: 1 cancelled, 2 done, 1 failed" in out, out
    assert f"DataError: {corrupt}: kspace slice 5 holds NaN" in out
    assert main(["resubmit", str(run.root), "--failed"]) == 0
    assert sorted(read_json(run.manifest)["submissions"][-1]["jobs"]) == ["1", "2"]
    assert main(["cancel", str(run.root)]) == 0  # the 200-epoch point need not run to its end


def test_status_answers_without_accounting(slurm_cluster, tmp_path, write_spec, capsys):
    run = submit(
        write_spec(merge(SLURM_TINY, train={**TINY["train"], "epochs": 1})),
        tmp_path / "runs",
        capsys,
    )
    wait_done(run)
    cluster = ["bash", str(REPO / "slurm" / "cluster.sh")]
    subprocess.run(cluster + ["stop-dbd", str(slurm_cluster)], check=True)
    try:
        assert main(["status", str(run.root)]) == 0
        out = capsys.readouterr().out
        assert "1 points: 1 done (Slurm state from squeue)" in out
    finally:
        subprocess.run(cluster + ["start-dbd", str(slurm_cluster)], check=True)


@pytest.mark.parametrize(
    "cluster,expected",
    [
        (
            {"partition": "nope"},
            "cluster.partition: no partition 'nope'; the cluster has: debug, short",
        ),
        (
            {"gpus_per_node": 3},
            "cluster.gpus_per_node: 3, but the nodes of partition debug have at most 2 GPU(s)",
        ),
        (
            {"partition": "short", "time": "01:00:00"},
            "cluster.time: 01:00:00 exceeds partition short's MaxTime 00:30:00",
        ),
        (
            {"cpus_per_task": 4},
            "cluster.cpus_per_task: 1 task(s) x 4 CPU(s) = 4, but the nodes of partition "
            "debug have at most 2 CPUs",
        ),
        (
            {"mem_gb": 64},
            "cluster.mem_gb: 64.0, but the nodes of partition debug have at most 3.9 GB",
        ),
        ({"nodes": 3}, "cluster.nodes: 3, but partition short has 1 node(s)"),
    ],
    ids=[
        "missing partition",
        "too many GPUs",
        "too long",
        "too many CPUs",
        "too much memory",
        "too many nodes",
    ],
)
def test_resources_the_cluster_cannot_give_are_refused_before_queueing(
    slurm_cluster, tmp_path, write_spec, capsys, cluster, expected
):
    if cluster.get("nodes"):
        cluster = {**cluster, "partition": "short"}
    spec = merge(SLURM_TINY, cluster={**SLURM_TINY["cluster"], **cluster})
    before = subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True).stdout
    assert main(["submit", str(write_spec(spec)), "--runs", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert expected in err and "Traceback" not in err, err
    assert not (tmp_path / "runs").exists()  # nothing written, nothing queued
    assert (
        subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True).stdout
        == before
    )


def test_cluster_checks_say_when_slurm_cannot_be_asked(tmp_path, write_spec, capsys, monkeypatch):
    monkeypatch.setenv("SLURM_CONF", str(tmp_path / "no-such-slurm.conf"))
    assert main(["validate", "--check-paths", str(write_spec(SLURM_TINY))]) == 0
    assert "note: could not ask Slurm about partitions and nodes" in capsys.readouterr().err


def _job_pids(job_id: str) -> list[int]:
    """PIDs of the step daemons of ``job_id`` (every process of a test node runs on this host)."""
    out = subprocess.run(
        ["pgrep", "-f", rf"slurmstepd: \[{job_id}\."], capture_output=True, text=True
    ).stdout
    return [int(p) for p in out.split()]


@pytest.mark.parametrize("requeue", [True, False], ids=["requeued", "marked"])
def test_a_failed_node_requeues_or_marks_the_point_as_the_spec_says(
    slurm_cluster, tmp_path, write_spec, capsys, requeue
):
    """The point's node loses its slurmd and its processes, as when a node loses power: Slurm
    reports NODE_FAIL. With cluster.requeue the point resumes elsewhere from its checkpoint;
    without it the point shows node_fail and `resubmit --failed` takes it."""
    import signal

    slow = merge(
        SLURM_TINY,
        name=f"nodefail-{requeue}",
        train={**TINY["train"], "epochs": 40},
        data={**TINY["data"], "synthetic": {**TINY["data"]["synthetic"], "volumes": 10}},
        cluster={**SLURM_TINY["cluster"], "requeue": requeue},
    )
    run = submit(write_spec(slow), tmp_path / "runs", capsys)
    _wait_epoch(run, 0, 2, attempts=1)
    job = read_json(run.point(0).status)["job_id"]  # one point: a plain job, no array index
    raw_id, node = subprocess.run(
        ["squeue", "-h", "-j", job, "-o", "%A %N"], capture_output=True, text=True
    ).stdout.split()
    cluster = ["bash", str(REPO / "slurm" / "cluster.sh")]
    subprocess.run(cluster + ["stop-node", str(slurm_cluster), node], check=True)
    try:
        for pid in _job_pids(raw_id) + [
            int(p)
            for p in subprocess.run(
                ["pgrep", "-f", f"submitit.core._submit {run.root}"], capture_output=True, text=True
            ).stdout.split()
        ]:
            os.kill(pid, signal.SIGKILL)
        if requeue:
            wait_done(run, timeout=300)
            point = read_json(run.point(0).status)
            assert point["state"] == "done" and point["attempts"] == 2, point
        else:
            deadline = time.time() + 180
            while time.time() < deadline:
                capsys.readouterr()
                main(["status", str(run.root)])
                out = capsys.readouterr().out
                if "node_fail" in out:
                    break
                time.sleep(2)
            assert "1 points: 1 node_fail" in out, out
    finally:
        subprocess.run(cluster + ["start-node", str(slurm_cluster), node], check=True)
        deadline = time.time() + 90
        while (
            time.time() < deadline
            and subprocess.run(
                ["sinfo", "-h", "-n", node, "-o", "%t"], capture_output=True, text=True
            ).stdout.strip()
            != "idle"
        ):
            time.sleep(1)
    if not requeue:  # --adapt: the node it died on is excluded from its next attempt
        capsys.readouterr()
        assert main(["resubmit", str(run.root), "--failed", "--adapt"]) == 0
        assert (
            f"point 0: NODE_FAIL: resubmit, cluster.exclude={node} (died on {node})"
            in capsys.readouterr().out
        )
        wait_done(run, timeout=300)
        point = read_json(run.point(0).status)
        assert point["state"] == "done" and point["attempts"] == 2, point
        assert sacct_rows(point["job_id"], "NodeList")[-1][0] != node
        assert read_json(run.manifest)["adaptations"]["0"][-1]["changes"] == {"exclude": node}
