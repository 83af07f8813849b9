"""Bad input caught before anything is queued, or at run time with the reason recorded: never a
traceback, never a point that ends "done" with NaN."""

from __future__ import annotations

import math

import pytest

from conftest import TINY, merge
from mrihpc.login.cli import main
from mrihpc.login.launch import _mem
from mrihpc.login.results import sort_rows
from mrihpc.paths import RunPaths, read_json


def _err(capsys, *args) -> str:
    assert main(list(args)) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


def test_spec_files_that_are_not_text_or_not_files(tmp_path, write_spec, capsys):
    utf16 = tmp_path / "utf16.yaml"
    utf16.write_bytes("name: x\n".encode("utf-16"))
    binary = tmp_path / "blob.yaml"
    binary.write_bytes(bytes(range(256)))
    assert "utf16.yaml: not UTF-8 text" in _err(capsys, "validate", str(utf16))
    assert "blob.yaml: not UTF-8 text" in _err(capsys, "validate", str(binary))
    assert f"{tmp_path}: is a folder; expected a YAML spec file" in _err(
        capsys, "validate", str(tmp_path)
    )
    child = write_spec(f"extends: {tmp_path}\nname: x\n", "child.yaml")
    assert f"child.yaml: extends: {tmp_path}: is a folder" in _err(capsys, "validate", str(child))


@pytest.mark.parametrize(
    "spec,expected",
    [
        (
            merge(TINY, cluster={**TINY["cluster"], "mem_gb": math.inf}),
            "cluster.mem_gb: Input should be a finite number",
        ),
        (
            merge(TINY, cluster={**TINY["cluster"], "mem_gb": 0.0001}),
            "cluster.mem_gb: Input should be greater than or equal to 0.1",
        ),
        (merge(TINY, optim={"lr": math.nan}), "optim.lr: Input should be a finite number"),
        (
            merge(TINY, cluster={**TINY["cluster"], "partition": "gpu\n#SBATCH --uid=0"}),
            "cluster.partition: control character in",
        ),
        (
            merge(TINY, container={"runtime": "docker", "image": "x", "env": {"A\nB": "1"}}),
            "container.env: control character",
        ),
        (
            merge(TINY, sweep={"grid": {"cluster.partition": ["a", "b"]}}),
            "sweep.grid.cluster.partition: cluster cannot vary between the points",
        ),
        (
            merge(TINY, sweep={"points": [{"train.max_requeues": 1}]}),
            "sweep.points[0].train.max_requeues: train.max_requeues cannot vary",
        ),
        (
            merge(TINY, sweep={"grid": {"container.image": ["a", "b"]}}),
            "container cannot vary between the points of one array job",
        ),
        (
            merge(
                TINY,
                sweep={
                    "grid": {
                        "optim.lr": [1e-3] * 100,
                        "train.seed": list(range(100)),
                        "optim.weight_decay": [0.0] * 101,
                    }
                },
            ),
            "sweep: 1,010,000 points exceed sweep.max_points (10,000); set sweep.max_points",
        ),
    ],
    ids=[
        "mem inf",
        "mem tiny",
        "lr nan",
        "newline in sbatch value",
        "newline in env key",
        "sweep cluster",
        "sweep max_requeues",
        "sweep container",
        "sweep too large",
    ],
)
def test_values_that_would_break_the_job_are_refused(spec, expected, write_spec, capsys):
    assert expected in _err(capsys, "validate", str(write_spec(spec)))


def test_memory_is_rounded_up_never_to_zero():
    assert _mem(400) == "400GB" and _mem(1.5) == "1536MB" and _mem(0.1) == "103MB"


def test_a_non_finite_loss_fails_the_point_with_where_and_the_sweep_goes_on(
    tmp_path, write_spec, capsys
):
    spec = merge(
        TINY, train={**TINY["train"], "epochs": 1}, sweep={"points": [{"optim.lr": 1e30}, {}]}
    )
    assert main(["submit", str(write_spec(spec)), "--runs", str(tmp_path / "runs")]) == 0
    run = RunPaths(next((tmp_path / "runs" / "tiny").iterdir()))
    bad, good = (read_json(run.point(i).status) for i in (0, 1))
    assert bad["state"] == "failed" and good["state"] == "done"
    assert (
        bad["error"].startswith("NonFiniteLoss: training loss ")
        and " at epoch 0 step " in bad["error"]
    )
    capsys.readouterr()
    assert main(["results", str(run.root)]) == 0
    rows = capsys.readouterr().out.splitlines()[1:]
    assert rows[0].split()[0] == "1" and rows[1].split()[0] == "0"  # the failed point last


def test_nan_ranks_last():
    rows = [{"p": 0, "v": math.nan}, {"p": 1, "v": 0.5}, {"p": 2, "v": 0.9}, {"p": 3}]
    assert [r["p"] for r in sort_rows(rows, "v", True)] == [2, 1, 0, 3]


def test_a_killed_run_is_interrupted_resubmittable_and_leaves_no_temp_files(
    tmp_path, write_spec, capsys
):
    """`mrihpc run` killed with SIGKILL mid-training: status says interrupted, `resubmit --failed`
    picks it up, resumes from its checkpoint, and the temp files of the killed writes are gone."""
    import signal
    import subprocess
    import sys
    import time

    spec = write_spec(merge(TINY, train={**TINY["train"], "epochs": 12}))
    proc = subprocess.Popen(
        [sys.executable, "-m", "mrihpc", "run", str(spec), "--runs", str(tmp_path / "runs")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 120
    point = None
    while time.time() < deadline:
        runs = list((tmp_path / "runs" / "tiny").glob("*"))
        if runs and (read_json(RunPaths(runs[0]).point(0).status, {}) or {}).get("epoch", 0) >= 1:
            point = RunPaths(runs[0]).point(0)
            break
        time.sleep(0.2)
    assert point is not None, "the run never finished an epoch"
    stale = point.checkpoints / ".last.pt.killed.tmp"
    stale.write_bytes(
        b"half a checkpoint"
    )  # what a write killed between its temp file and the rename leaves
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert main(["status", str(point.root.parents[1])]) == 0
    out = capsys.readouterr().out
    assert "interrupted" in out and "killed?" in out, out
    assert main(["resubmit", str(point.root.parents[1]), "--failed"]) == 0
    status = read_json(point.status)
    assert status["state"] == "done" and status["attempts"] == 2, status
    assert not stale.exists() and not list(point.root.rglob("*.tmp"))


def _bump(path: str, times: int) -> None:
    from pathlib import Path

    from mrihpc.paths import update_json

    for _ in range(times):
        update_json(Path(path), lambda s: {**(s or {}), "n": (s or {}).get("n", 0) + 1})


def test_status_and_manifest_updates_from_several_processes_lose_nothing(tmp_path):
    import multiprocessing

    path = tmp_path / "status.json"
    procs = [
        multiprocessing.get_context("fork").Process(target=_bump, args=(str(path), 100))
        for _ in range(4)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    assert read_json(path) == {"n": 400}
    assert not list(tmp_path.glob(".*.tmp"))
