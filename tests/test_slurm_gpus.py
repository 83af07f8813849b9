"""The test cluster declares 2 GPUs per node as GRES (device files made for the purpose: there
is no GPU, and training stays on the CPU), so these are Slurm's own decisions, not mocks: two
ranks of one point get different GPU indices, and `results` counts GPU-hours from sacct's
AllocTRES, summed over a requeue."""

from __future__ import annotations

import csv
import io
import subprocess
import time

import pytest

from conftest import TINY, merge
from mrihpc.login.cli import main
from mrihpc.paths import RunPaths, read_json
from test_slurm import _wait_epoch, sacct_rows, submit, wait_done

pytestmark = pytest.mark.slurm

GPU_TINY = merge(
    TINY, cluster={"executor": "slurm", "time": "10:00", "cpus_per_task": 1, "gpus_per_node": 2}
)


def _gpu_seconds(job: str) -> tuple[int, int]:
    """(incarnations, sum of allocated GPUs x ElapsedRaw) of ``job`` straight from sacct."""
    rows = sacct_rows(job, "AllocTRES,ElapsedRaw")
    total = 0
    for alloc, elapsed in rows:
        gpus = dict(item.split("=", 1) for item in alloc.split(",") if "=" in item).get(
            "gres/gpu", "0"
        )
        total += int(gpus) * int(elapsed or 0)
    return len(rows), total


def _results(capsys, run: RunPaths) -> dict:
    capsys.readouterr()
    assert main(["results", str(run.root), "--csv"]) == 0
    return next(csv.DictReader(io.StringIO(capsys.readouterr().out)))


def test_two_ranks_get_different_gpus_and_gpu_hours_sum_over_a_requeue(
    slurm_cluster, tmp_path, write_spec, capsys
):
    spec = merge(
        GPU_TINY,
        train={**TINY["train"], "epochs": 10},
        data={**TINY["data"], "synthetic": {**TINY["data"]["synthetic"], "volumes": 10}},
    )
    run = submit(write_spec(spec), tmp_path / "runs", capsys)
    job = read_json(run.manifest)["submissions"][0]["jobs"]["0"]["job_id"]  # one point: a plain job
    _wait_epoch(run, 0, 2, attempts=1)
    ranks = read_json(run.point(0).status)["ranks"]
    # srun --gpus-per-task=1 on a node of two: each rank its own index, as on a DGX
    assert len(ranks) == 2 and sorted(r["gpus"] for r in ranks) == ["0", "1"], ranks
    assert len({r["host"] for r in ranks}) == 1
    subprocess.run(["scontrol", "requeue", job], check=True)
    wait_done(run, timeout=300)
    deadline = time.time() + 60
    while (
        time.time() < deadline
    ):  # sacct lags: wait until it shows both incarnations, the last ended
        incarnations, seconds = _gpu_seconds(job)
        if incarnations == 2 and sacct_rows(job, "State")[-1][0] == "COMPLETED":
            break
        time.sleep(1)
    assert incarnations == 2 and seconds > 0
    row = _results(capsys, run)
    assert float(row["gpu_hours"]) == pytest.approx(seconds / 3600, rel=0.01, abs=1e-6)
    elapsed = sum(int(e) for (e,) in sacct_rows(job, "ElapsedRaw"))
    assert float(row["gpu_hours"]) == pytest.approx(
        2 * elapsed / 3600, rel=0.01
    )  # 2 GPUs x the elapsed time
    assert float(row["cpu_hours"]) == pytest.approx(
        2 * elapsed / 3600, rel=0.01
    )  # one CPU per rank
    capsys.readouterr()
    assert main(["results", str(run.root)]) == 0
    assert "GPU-hours" in capsys.readouterr().out
    assert main(["status", str(run.root)]) == 0
    header, line = capsys.readouterr().out.splitlines()[:2]
    assert "gpu_h" in header.split() and float(line.split()[header.split().index("gpu_h")]) > 0
    assert "energy_kwh" not in row  # the test cluster accounts no energy (AcctGatherEnergyType)
