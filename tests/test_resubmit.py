"""Submission and resubmission are transactional: a refused sbatch changes no point's state or
reason and leaves no run folder; busy points are not started twice unless --force cancels them
first; unknown points write nothing. The Slurm cases run on the real test cluster; sbatch's
refusal is a stand-in on PATH (a real QOS limit would hold up the other tests)."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from conftest import TINY, merge
from mrihpc.login.cli import main
from mrihpc.paths import RunPaths, read_json
from test_slurm import SLURM_TINY, _wait_epoch, submit, wait_done


def _refusing_sbatch(folder: Path, monkeypatch) -> None:
    """sbatch that fails the way a QOS limit does; srun and the rest stay the real ones."""
    folder.mkdir()
    (folder / "sbatch").write_text(
        '#!/bin/sh\necho "sbatch: error: QOSMaxSubmitJobPerUserLimit" >&2\nexit 1\n'
    )
    (folder / "sbatch").chmod(0o755)
    monkeypatch.setenv("PATH", f"{folder}:{os.environ['PATH']}")


def _err(capsys, *args) -> str:
    assert main(list(args)) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


def test_unknown_points_are_refused_and_write_nothing(tmp_path, write_spec, capsys):
    spec = write_spec(
        merge(
            TINY, train={**TINY["train"], "epochs": 1}, sweep={"grid": {"optim.lr": [1e-3, 2e-3]}}
        )
    )
    assert main(["submit", str(spec), "--runs", str(tmp_path / "runs")]) == 0
    run = RunPaths(next((tmp_path / "runs" / "tiny").iterdir()))
    before = read_json(run.manifest)
    for verb in ("resubmit", "cancel"):
        assert f"{run.root}: no point(s) 7; its points are 0-1" in _err(
            capsys, verb, str(run.root), "7", "0"
        )
    assert not run.point(7).root.exists() and read_json(run.manifest) == before
    assert [read_json(run.point(i).status)["state"] for i in (0, 1)] == ["done", "done"]


def test_submit_without_srun_is_refused_before_a_run_folder_exists(
    tmp_path, write_spec, capsys, monkeypatch
):
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    (bin_ / "sbatch").symlink_to(shutil.which("sbatch") or "/bin/false")
    monkeypatch.setenv("PATH", f"{bin_}:/usr/local/nonexistent")  # sbatch, but no srun
    spec = write_spec(merge(SLURM_TINY, train={**TINY["train"], "epochs": 1}))
    err = _err(capsys, "submit", str(spec), "--runs", str(tmp_path / "runs"))
    assert "spec.yaml: cluster.executor: slurm needs srun on PATH, not found here" in err, err
    assert not (tmp_path / "runs").exists()


@pytest.mark.slurm
def test_a_submit_sbatch_refuses_leaves_no_run_folder(
    slurm_cluster, tmp_path, write_spec, capsys, monkeypatch
):
    _refusing_sbatch(tmp_path / "bin", monkeypatch)
    spec = write_spec(merge(SLURM_TINY, train={**TINY["train"], "epochs": 1}))
    err = _err(capsys, "submit", str(spec), "--runs", str(tmp_path / "runs"))
    assert (
        "sbatch refused the job (" in err
        and "QOSMaxSubmitJobPerUserLimit" in err
        and "was removed" in err
    ), err
    assert list((tmp_path / "runs").rglob("*")) == []


@pytest.mark.slurm
def test_a_refused_resubmit_keeps_the_points_state_and_reason(
    slurm_cluster, tmp_path, write_spec, capsys, monkeypatch
):
    spec = write_spec(merge(SLURM_TINY, train={**TINY["train"], "epochs": 1}, optim={"lr": 1e30}))
    run = submit(spec, tmp_path / "runs", capsys)
    wait_done(run, allow=("failed",))
    failed = read_json(run.point(0).status)
    assert failed["error"].startswith("NonFiniteLoss")
    with monkeypatch.context() as m:
        _refusing_sbatch(tmp_path / "bin", m)
        err = _err(capsys, "resubmit", str(run.root), "--failed")
        assert (
            "sbatch refused the array of points 0-0" in err and "QOSMaxSubmitJobPerUserLimit" in err
        ), err
    assert read_json(run.point(0).status) == failed  # state, reason and attempts as they were
    assert len(read_json(run.manifest)["submissions"]) == 1
    assert main(["resubmit", str(run.root), "--failed"]) == 0  # still found as failed
    assert "resubmitting point(s) 0 (slurm)" in capsys.readouterr().out
    assert len(read_json(run.manifest)["submissions"]) == 2
    wait_done(run, allow=("failed",))


@pytest.mark.slurm
def test_a_running_point_is_resubmitted_only_with_force_which_cancels_it_first(
    slurm_cluster, tmp_path, write_spec, capsys
):
    spec = write_spec(merge(SLURM_TINY, train={**TINY["train"], "epochs": 200}))
    run = submit(spec, tmp_path / "runs", capsys)
    _wait_epoch(run, 0, 1, attempts=1)
    first_job = read_json(run.manifest)["submissions"][0]["jobs"]["0"]["job_id"]
    err = _err(capsys, "resubmit", str(run.root), "0")
    # sacct can still say PENDING for a second after the job started (slurmdbd lags): either is busy
    assert (
        re.search(r"point\(s\) 0 \((running|pending)\) may still run", err) and "--force" in err
    ), err
    assert (
        len(read_json(run.manifest)["submissions"]) == 1
        and read_json(run.point(0).status)["state"] == "running"
    )
    assert main(["resubmit", str(run.root), "0", "--force", "--time", "10:00"]) == 0
    out = capsys.readouterr().out
    assert (
        "cancelling point(s) 0 first (--force)" in out and "resubmitting point(s) 0 (slurm)" in out
    ), out
    submissions = read_json(run.manifest)["submissions"]
    assert len(submissions) == 2 and submissions[1]["jobs"]["0"]["job_id"] != first_job
    from mrihpc.login.accounting import squeue

    assert first_job not in (
        squeue([first_job]) or {}
    )  # the first job was gone before the second was queued
    _wait_epoch(run, 0, 1, attempts=2)  # the new job resumed the point
    assert main(["cancel", str(run.root)]) == 0
