"""`resubmit --failed --adapt` on the test cluster, which enforces memory by polling each step's
RSS (jobacct_gather/linux, OverMemoryKill): a point over its memory limit is killed (the job
ends FAILED, slurmstepd's "exceeded memory limit" in its stderr, as on such sites) and is
resubmitted with 1.5x the memory, then completes; a NaN point is not resubmitted and says
why. (A node made to fail is excluded in test_slurm.py's node-failure test.)"""

from __future__ import annotations

import time

import pytest

from conftest import TINY, merge
from mrihpc.login.cli import main
from mrihpc.paths import read_json
from test_slurm import sacct_rows, submit

pytestmark = pytest.mark.slurm

#: the tiny knee point peaks near 390 MB of RSS: 0.32 GB (328 MB) is too little, 1.5x (492 MB)
#: enough; 12 epochs, so the once-a-second poll sees it before it ends
SMALL = merge(
    TINY,
    cluster={"executor": "slurm", "time": "10:00", "cpus_per_task": 1, "mem_gb": 0.32},
    train={**TINY["train"], "epochs": 12},
)


def _wait_state(run, capsys, wanted: str, timeout: float = 180) -> str:
    deadline, out = time.time() + timeout, ""
    while time.time() < deadline:
        capsys.readouterr()
        main(["status", str(run.root)])
        out = capsys.readouterr().out
        if wanted in out:
            return out
        time.sleep(2)
    pytest.fail(f"never {wanted!r}:\n{out}")


def test_out_of_memory_gets_more_memory_and_completes(slurm_cluster, tmp_path, write_spec, capsys):
    run = submit(write_spec(SMALL), tmp_path / "runs", capsys)
    _wait_state(run, capsys, "1 points: 1 failed")
    first = read_json(run.manifest)["submissions"][0]["jobs"]["0"]
    assert "exceeded memory limit" in open(first["stderr"]).read()
    first = first["job_id"]
    assert main(["resubmit", str(run.root), "--failed", "--adapt", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert (
        "point 0: OUT_OF_MEMORY: resubmit, cluster.mem_gb=0.48 (had 0.32 GB)" in out
        and "dry run" in out
    )
    assert "adaptations" not in read_json(run.manifest)  # a dry run changes nothing
    assert main(["resubmit", str(run.root), "--failed", "--adapt"]) == 0
    _wait_state(run, capsys, "1 points: 1 done", timeout=240)
    second = read_json(run.point(0).status)["job_id"]
    assert second != first and "mem=492M" in sacct_rows(second, "AllocTRES")[-1][0]
    capsys.readouterr()
    main(["status", str(run.root)])
    assert (
        "resubmit --adapt: point 0: OUT_OF_MEMORY -> cluster.mem_gb=0.48" in capsys.readouterr().out
    )


def test_a_nan_point_is_not_resubmitted_and_says_why(slurm_cluster, tmp_path, write_spec, capsys):
    spec = merge(
        TINY,
        cluster={"executor": "slurm", "time": "10:00", "cpus_per_task": 1},
        optim={**TINY["optim"], "lr": 1e30},
    )
    run = submit(write_spec(spec), tmp_path / "runs", capsys)
    _wait_state(run, capsys, "1 points: 1 failed")
    assert main(["resubmit", str(run.root), "--failed", "--adapt"]) == 1
    out = capsys.readouterr().out
    assert "point 0: NonFiniteLoss: not resubmitted (the loss was not finite; lower optim.lr" in out
    assert "nothing to resubmit" in out
    assert len(read_json(run.manifest)["submissions"]) == 1  # nothing queued
