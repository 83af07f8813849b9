"""Prediction after the sweep: `predict --best` picks the point on validation; for a Slurm run it
is a job on the cluster (the point's partition and container, one task) writing the same files
as `--here`; `submit --then predict` queues that job at once with --dependency=afterok on the
sweep's arrays, and it runs when they succeed. The Slurm cases run on the real test cluster."""

from __future__ import annotations

import shutil
import subprocess
import time

import numpy as np
import pytest
import yaml
from skimage.io import imread

from mrihpc.login.cli import main
from mrihpc.paths import RunPaths, read_json
from mrihpc.ranking import best_point
from test_slurm import wait_done

SEG = {
    "name": "seg-predict",
    "task": "segmentation",
    "data": {"synthetic": {"train": 8, "val": 4, "test": 3, "size": 64, "seed": 3}},
    "model": {"preset": "acdc_small", "channels": 8, "depth": 2},
    "train": {"epochs": 2, "batch_size": 2, "workers": 0, "precision": "fp32", "threads": 1},
    "sweep": {"grid": {"optim.lr": [1e-3, 1e-6]}},
}


def _spec(tmp_path, executor: str):
    cluster = {"executor": executor, "time": "10:00", "array_parallelism": 2, "cpus_per_task": 1}
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump({**SEG, "cluster": cluster}))
    return path


def _masks(folder) -> dict[str, np.ndarray]:
    return {p.name: imread(p) for p in sorted(folder.glob("mask/*.png"))}


def test_best_is_the_point_with_the_best_validation_score_and_then_predict_runs_here(
    tmp_path, capsys
):
    assert (
        main(
            [
                "submit",
                str(_spec(tmp_path, "local")),
                "--runs",
                str(tmp_path / "runs"),
                "--then",
                "predict",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    run = RunPaths(next((tmp_path / "runs" / "seg-predict").iterdir()))
    best = max((r["best_dice"], r["point"]) for r in _results(run, capsys))[1]
    assert best_point(run) == best and "predictions: 3 file(s)" in out
    assert len(_masks(run.point(best).predictions / "test")) == 3
    assert main(["predict", str(run.root), "--best", "--split", "val"]) == 0
    assert f"best point on validation: {best}" in capsys.readouterr().out
    assert len(_masks(run.point(best).predictions / "val")) == 4


def test_checkpoint_last_predicts_with_last_pt_into_its_own_folder(tmp_path, capsys):
    """--checkpoint last writes predictions/<split>_last/ from last.pt, beside best.pt's; the same
    masks as best's once best.pt holds last.pt's weights; a point without last.pt is refused
    naming it (best falls back to last.pt when no epoch was validated, last has no fallback)."""
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        yaml.safe_dump({**SEG, "name": "seg-last", "sweep": {}, "cluster": {"executor": "local"}})
    )
    assert main(["submit", str(spec), "--runs", str(tmp_path / "runs")]) == 0
    run = RunPaths(next((tmp_path / "runs" / "seg-last").iterdir()))
    point = run.point(0)
    for which in ("best", "last"):
        assert main(["predict", str(run.root), "--point", "0", "--checkpoint", which]) == 0
    assert (
        len(_masks(point.predictions / "val")) == len(_masks(point.predictions / "val_last")) == 4
    )
    shutil.copyfile(point.last_checkpoint, point.best_checkpoint)
    assert main(["predict", str(run.root), "--point", "0"]) == 0
    best, last = _masks(point.predictions / "val"), _masks(point.predictions / "val_last")
    assert best.keys() == last.keys() and all(np.array_equal(best[k], last[k]) for k in best)
    point.last_checkpoint.unlink()
    capsys.readouterr()
    assert main(["predict", str(run.root), "--point", "0", "--checkpoint", "last"]) != 0
    assert "no last.pt" in capsys.readouterr().err


def _results(run, capsys) -> list[dict]:
    import csv
    import io

    capsys.readouterr()
    assert main(["results", str(run.root), "--csv"]) == 0
    return [
        {**r, "best_dice": float(r["best_dice"]), "point": int(r["point"])}
        for r in csv.DictReader(io.StringIO(capsys.readouterr().out))
    ]


def _wait_job(job: str, timeout: float = 240) -> str:
    deadline = time.time() + timeout
    state = ""
    while time.time() < deadline:
        out = subprocess.run(
            ["sacct", "-n", "-P", "-X", "-j", job, "-o", "State"], capture_output=True, text=True
        )
        state = out.stdout.strip().splitlines()[-1] if out.stdout.strip() else ""
        if state and state.split()[0] in (
            "COMPLETED",
            "FAILED",
            "CANCELLED",
            "TIMEOUT",
            "OUT_OF_MEMORY",
        ):
            return state
        time.sleep(1)
    pytest.fail(f"job {job} not finished after {timeout}s ({state})")


@pytest.mark.slurm
def test_then_predict_waits_for_the_sweep_on_the_cluster_and_matches_here(
    slurm_cluster, tmp_path, capsys
):
    assert (
        main(
            [
                "submit",
                str(_spec(tmp_path, "slurm")),
                "--runs",
                str(tmp_path / "runs"),
                "--then",
                "predict",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    run = RunPaths(next((tmp_path / "runs" / "seg-predict").iterdir()))
    manifest = read_json(run.manifest)
    record, array = manifest["predictions"][0], manifest["submissions"][0]["array_id"]
    assert (
        record["after"] == [array]
        and record["point"] == "best"
        and f"prediction job {record['job_id']}" in out
    )
    shown = subprocess.run(
        ["scontrol", "show", "job", record["job_id"]], capture_output=True, text=True
    ).stdout
    assert (
        f"Dependency=afterok:{array}" in shown
        or "JobState=RUNNING" in shown
        or "COMPLETED" in shown
    ), shown
    wait_done(run)
    assert _wait_job(record["job_id"]) == "COMPLETED"
    # sacct (22.05 has no dependency field): queued when the sweep was, started once its last task
    # ended
    times = {}
    for line in subprocess.run(
        [
            "sacct",
            "-n",
            "-P",
            "-X",
            "-j",
            f"{array},{record['job_id']}",
            "-o",
            "JobID,Submit,Start,End",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split():
        job, submit, start, end = line.split("|")
        times[job] = (submit, start, end)  # ISO timestamps sort as they read
    sweep = [t for job, t in times.items() if job.startswith(f"{array}_")]
    submit, start, _ = times[record["job_id"]]
    assert (
        len(sweep) == 2 and submit <= min(t[2] for t in sweep) and start >= max(t[2] for t in sweep)
    ), times
    best = best_point(run)
    on_node = run.point(best).predictions / "test"
    from_node = _masks(on_node)
    assert len(from_node) == 3
    shutil.move(on_node, tmp_path / "node")
    assert main(["predict", str(run.root), "--best", "--split", "test", "--here"]) == 0
    here = _masks(on_node)
    assert here.keys() == from_node.keys() and all(
        np.array_equal(here[k], from_node[k]) for k in here
    )
    capsys.readouterr()
    assert (
        main(["predict", str(run.root), "--point", str(1 - best), "--split", "val", "--wait"]) == 0
    )
    out = capsys.readouterr().out
    assert "submitted prediction job" in out and out.count(".png") >= 4, out
