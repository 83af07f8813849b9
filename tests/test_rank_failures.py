"""A rank that fails before the ranks meet (no process group yet) says why: rank 0 in the
point's status, another rank beside it, and `mrihpc status` shows it. The failing GPU of one
node cannot happen here: the rank's Slurm environment is set and the error is the one a CUDA
device raises; the recording and the reading are the real ones."""

from __future__ import annotations

import pytest
import yaml

from conftest import TINY, merge
from mrihpc.login.cli import main
from mrihpc.node.runner import record_start_failure
from mrihpc.paths import RunPaths, read_json, update_json

ECC = "CUDA error: uncorrectable ECC error encountered"


@pytest.fixture
def finished(tmp_path) -> RunPaths:
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(merge(TINY, train={**TINY["train"], "epochs": 1})))
    assert main(["submit", str(spec), "--runs", str(tmp_path / "runs")]) == 0
    return RunPaths(next((tmp_path / "runs" / "tiny").iterdir()))


def as_rank(monkeypatch, rank: int) -> None:
    """The environment srun gives task ``rank`` of a 2-task job."""
    for name, value in {
        "SUBMITIT_EXECUTOR": "slurm",
        "SLURM_JOB_ID": "4242",
        "SLURM_NTASKS": "2",
        "SLURM_JOB_NUM_NODES": "2",
        "SLURM_NODEID": str(rank),
        "SLURM_JOB_NODELIST": "node[1-2]",
        "SLURM_PROCID": str(rank),
        "SLURM_LOCALID": "0",
    }.items():
        monkeypatch.setenv(name, value)


def test_a_rank_that_fails_before_the_rendezvous_is_shown(finished, monkeypatch, capsys):
    point = finished.point(0)
    # the point was requeued after its first attempt; in the second, rank 1's GPU fails
    update_json(point.status, lambda s: {**s, "state": "interrupted", "attempts": 1})
    capsys.readouterr()
    as_rank(monkeypatch, 1)
    record_start_failure(point, RuntimeError(ECC))
    status = read_json(point.status)
    assert status["rank_errors"] == [{"attempt": 2, "rank": 1, "error": f"RuntimeError: {ECC}"}]
    assert status["state"] == "interrupted"  # rank 0 writes the point's outcome
    monkeypatch.undo()
    assert main(["status", str(finished.root)]) == 0
    assert f"rank 1 failed: RuntimeError: {ECC}" in capsys.readouterr().out


def test_rank_0_that_fails_before_the_rendezvous_fails_the_point(finished, monkeypatch, capsys):
    point = finished.point(0)
    capsys.readouterr()
    as_rank(monkeypatch, 0)
    record_start_failure(point, RuntimeError(ECC))
    monkeypatch.undo()
    status = read_json(point.status)
    assert status["state"] == "failed" and status["error"] == f"RuntimeError: {ECC}"
    assert main(["status", str(finished.root)]) == 0
    out = capsys.readouterr().out
    assert "failed" in out and f"RuntimeError: {ECC}" in out
