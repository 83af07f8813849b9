"""Adaptive sweeps (``sweep.adaptive``: successive halving from arrays, no server): the rungs'
epochs, the spec's checks, the local executor running the rungs in turn (a promoted point
resumes and ends where a full run of it ends), and on the real test cluster a promotion job
killed mid-sweep, re-run by ``mrihpc resubmit``, after which the sweep completes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from conftest import TINY, merge
from test_slurm import sacct_rows
from mrihpc.login.cli import main
from mrihpc.paths import RunPaths, read_json, scan_jsonl
from mrihpc.rungs import budgets, epochs_spent

LRS = [1e-4, 3e-4, 1e-3, 3e-3]


def adaptive_spec(name: str = "sh", **adaptive) -> dict:
    return merge(
        TINY,
        name=name,
        train={**TINY["train"], "epochs": 4},
        sweep={"grid": {"optim.lr": LRS}, "adaptive": {"min_epochs": 1, "eta": 2, **adaptive}},
    )


def val_ssims(run: RunPaths, index: int) -> list[float]:
    records, _ = scan_jsonl(run.point(index).metrics, dict)
    return [r["val_ssim"] for r in records if r.get("kind") == "epoch"]


@pytest.mark.parametrize(
    "args,expected",
    [((1, 2, 8), [1, 2, 4, 8]), ((3, 3, 20), [3, 9, 20]), ((2, 4, 8), [2, 8]), ((1, 3, 2), [1, 2])],
)
def test_each_rung_trains_eta_times_the_last_up_to_the_end(args, expected):
    assert budgets(*args) == expected


@pytest.mark.parametrize(
    "change,message",
    [
        (
            {"sweep": {"grid": {"optim.lr": LRS}, "adaptive": {"metric": "dice"}}},
            "sweep.adaptive.metric: 'dice' is not a validation metric of reconstruction; allowed: ",
        ),
        (
            {"sweep": {"grid": {"optim.lr": LRS}, "adaptive": {"max_epochs": 8}}},
            "sweep.adaptive.max_epochs: 8 differs from train.epochs (4)",
        ),
        (
            {"sweep": {"grid": {"optim.lr": LRS}, "adaptive": {"min_epochs": 4}}},
            "sweep.adaptive.min_epochs: 4 leaves no rung to promote to: it must be below "
            "train.epochs (4)",
        ),
        (
            {"sweep": {"grid": {"optim.lr": LRS, "train.epochs": [4, 8]}, "adaptive": {}}},
            "sweep.adaptive: train.epochs cannot vary between points",
        ),
        (
            {"sweep": {"folds": 3, "adaptive": {}}},
            "sweep.adaptive: successive halving needs at least 2 configurations to "
            "choose between; the sweep has 1",
        ),
        (
            {"sweep": {"grid": {"optim.lr": LRS}, "adaptive": {"kind": "hyperband"}}},
            "sweep.adaptive.kind: Input should be 'successive_halving'",
        ),
    ],
)
def test_an_unusable_adaptive_section_is_refused_naming_the_key(
    change, message, write_spec, capsys
):
    path = write_spec({**adaptive_spec(), **change})  # each change replaces the whole sweep
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}: {message}" in err, err


def test_dry_run_outlines_the_rungs(write_spec, capsys):
    spec = merge(adaptive_spec(), train={**TINY["train"], "epochs": 8})
    spec["sweep"]["grid"]["model.channels"] = [4, 8, 12, 16]
    assert main(["submit", str(write_spec(spec)), "--dry-run"]) == 0
    assert (
        "successive halving, eta 2: rung 0: 16 point(s) to 1 epochs; rung 1: 8 point(s) to 2 "
        "epochs; rung 2: 4 point(s) to 4 epochs; rung 3: 2 point(s) to 8 epochs; 40 of the full "
        "grid's 128 epochs (31%)" in capsys.readouterr().out
    )


def test_local_rungs_keep_the_best_half_and_a_promoted_point_ends_as_a_full_run(
    tmp_path, write_spec, capsys
):
    runs = tmp_path / "runs"
    assert main(["submit", str(write_spec(adaptive_spec())), "--runs", str(runs)]) == 0
    out = capsys.readouterr().out
    run = RunPaths(next((runs / "sh").iterdir()))
    a = read_json(run.manifest)["adaptive"]
    assert a["budgets"] == [1, 2, 4] and [r["epochs"] for r in a["rungs"]] == [1, 2, 4]
    # each rung keeps the best half by the best val_ssim of the rung's epochs
    for k in (0, 1):
        this, nxt = a["rungs"][k], a["rungs"][k + 1]
        values = {int(i): v for i, v in nxt["values"].items()}
        assert sorted(values) == this["points"]
        assert nxt["points"] == sorted(
            sorted(values, key=values.get, reverse=True)[: len(this["points"]) // 2]
        )
        for i in this["points"]:
            assert values[i] == max(val_ssims(run, i)[: this["epochs"]])
    winner = a["rungs"][2]["points"]
    assert len(winner) == 1 and len(a["rungs"][1]["points"]) == 2
    # epochs trained: 4 x 1 + 2 x 1 + 1 x 2 = 8 of the full grid's 16
    assert epochs_spent(read_json(run.manifest)) == (8, 16)
    for i in range(4):
        assert len(val_ssims(run, i)) == max(r["epochs"] for r in a["rungs"] if i in r["points"])
    assert "stopped at rung 0" in out and "epochs: 8 so far of the full grid's 16 (50%)" in out
    # results: the last rung first
    assert main(["results", str(run.root), "--csv"]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert rows[1].split(",")[0] == str(winner[0]) and ",2," in rows[1]
    # the local executor promotes in the submitting process: no promotion job, no log of one
    assert main(["logs", str(run.root), "--promotion", "0"]) != 0
    assert "no promotion job for rung 0" in capsys.readouterr().err
    assert main(["predict", str(run.root), "--best", "--here"]) == 0
    assert f"best point on validation: {winner[0]}" in capsys.readouterr().out
    # the winner resumed twice; it ends exactly where the full grid's run of it ends (the same
    # point index: the same seed), and the full grid has no better point here
    full = adaptive_spec("full")
    full["sweep"].pop("adaptive")
    assert main(["submit", str(write_spec(full, "full.yaml")), "--runs", str(runs)]) == 0
    capsys.readouterr()
    reference = RunPaths(next((runs / "full").iterdir()))
    assert val_ssims(run, winner[0]) == pytest.approx(val_ssims(reference, winner[0]), abs=1e-6)
    assert max(val_ssims(run, winner[0])) == pytest.approx(
        max(max(val_ssims(reference, i)) for i in range(4))
    )
    assert read_json(run.point(winner[0]).status)["attempts"] == 3


@pytest.mark.slurm
def counting_sacct(folder: Path, monkeypatch) -> Path:
    """Put a ``sacct`` first on PATH that logs each call, then runs the real one; the log."""
    real, log = shutil.which("sacct"), folder / "sacct-calls"
    wrapper = folder / "bin" / "sacct"
    wrapper.parent.mkdir(parents=True)
    wrapper.write_text(f'#!/bin/sh\necho "$*" >> {log}\nexec {real} "$@"\n')
    wrapper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{wrapper.parent}:{os.environ['PATH']}")
    return log


def test_a_killed_promotion_is_rerun_by_resubmit_and_the_sweep_completes(
    slurm_cluster, tmp_path, write_spec, capsys, monkeypatch
):
    spec = merge(
        adaptive_spec("sh-slurm", partition="debug"),  # the promotion jobs' partition, named
        train={**TINY["train"], "epochs": 2},
        cluster={"executor": "slurm", "time": "10:00", "cpus_per_task": 1},
    )
    nowhere = write_spec(
        merge(spec, sweep={**spec["sweep"], "adaptive": {"partition": "gpu-only"}}), "x.yaml"
    )
    assert main(["validate", str(nowhere), "--check-paths"]) == 2
    assert (
        f"{nowhere}: sweep.adaptive.partition: no partition 'gpu-only'; the cluster has: debug"
        in capsys.readouterr().err
    )
    runs = tmp_path / "runs"
    assert main(["submit", str(write_spec(spec)), "--runs", str(runs)]) == 0
    assert "submitted promotion job" in capsys.readouterr().out
    run = RunPaths(next((runs / "sh-slurm").iterdir()))
    first = read_json(run.manifest)["adaptive"]["promotions"][0]
    assert first["rung"] == 0 and first["after"] == [
        read_json(run.manifest)["submissions"][0]["array_id"]
    ]
    # killed while it waits for rung 0: nothing would promote rung 0 now
    subprocess.run(["scancel", first["job_id"]], check=True)
    deadline = time.time() + 240
    while time.time() < deadline:
        states = [(read_json(run.point(i).status, {}) or {}).get("state") for i in range(4)]
        if states == ["done"] * 4:
            break
        time.sleep(1)
    assert states == ["done"] * 4, states
    time.sleep(3)
    assert len(read_json(run.manifest)["adaptive"]["rungs"]) == 1  # the promotion never ran
    calls = counting_sacct(tmp_path, monkeypatch)
    main(["status", str(run.root)])
    assert (
        f"rung 1 (2 epochs): promotion job {first['job_id']} ended cancelled without promoting; "
        "`mrihpc resubmit RUN` queues another" in capsys.readouterr().out
    )
    # the points' array and the promotion job in one query
    asked = calls.read_text().splitlines()
    assert len(asked) == 1 and first["job_id"] in asked[0], asked
    monkeypatch.undo()
    assert main(["resubmit", str(run.root), "--failed"]) == 0
    out = capsys.readouterr().out
    assert (
        "submitted promotion job" in out
        and f"(job {first['job_id']} ended without promoting)" in out
    )
    deadline = time.time() + 240
    while time.time() < deadline:
        manifest = read_json(run.manifest)
        last = manifest["adaptive"]["rungs"][-1]
        if len(manifest["adaptive"]["rungs"]) == 2 and all(
            (read_json(run.point(i).status, {}) or {}).get("epoch") == 2
            and read_json(run.point(i).status)["state"] == "done"
            for i in last["points"]
        ):
            break
        time.sleep(1)
    else:
        pytest.fail(f"rung 1 never ended: {json.dumps(read_json(run.manifest)['adaptive'])}")
    assert len(last["points"]) == 2 and last.get("queued")
    # the promotion ran once: a second run of it does nothing more
    from mrihpc.login.promote import PromoteTask

    assert PromoteTask(str(run.root), 0)() == last["points"]
    assert len(read_json(run.manifest)["submissions"]) == 2
    main(["status", str(run.root)])
    out = capsys.readouterr().out
    assert (
        out.count("stopped at rung 0") == 2 and "epochs: 6 so far of the full grid's 8 (75%)" in out
    )
    promoted = read_json(run.manifest)["adaptive"]["promotions"][-1]
    assert main(["logs", str(run.root), "--promotion", "0"]) == 0
    log = capsys.readouterr().out
    assert "[mrihpc] rung 0 (1 epochs): 4 of 4 configuration(s) finished; keeping 2 (1/2)" in log
    assert f"rung 1: point(s) {' '.join(map(str, last['points']))} queued as array(s)" in log
    assert sacct_rows(promoted["job_id"], "Partition")[-1][0] == "debug"


def test_a_rung_ranks_configurations_by_their_folds_mean_and_skips_unfinished_ones(tmp_path):
    """Rung 0 of 4 configurations x 2 folds (points 2c and 2c+1): configuration 1 has the best
    single fold but the worse mean; configuration 3 is best but one fold did not finish the rung
    (failed), so it is not promoted; keep 4 // 2 = 2 configurations = 4 points."""
    from mrihpc.rungs import choose

    run = RunPaths(tmp_path / "run")
    scores = {0: [0.50, 0.60], 1: [0.90, 0.10], 2: [0.55, 0.57], 3: [0.95, None]}
    points = []
    for c, folds in scores.items():
        for f, score in enumerate(folds):
            index = 2 * c + f
            points.append(
                {
                    "index": index,
                    "name": f"c{c},fold={f}",
                    "overrides": {"optim.lr": c, "data.folds": 2, "data.fold": f},
                }
            )
            run.point(index).root.mkdir(parents=True)
            records = [{"kind": "epoch", "epoch": 0, "val_ssim": 0.2}]
            if score is not None:  # the rung's last epoch validated
                records.append({"kind": "epoch", "epoch": 1, "val_ssim": score})
            run.point(index).metrics.write_text("".join(json.dumps(r) + "\n" for r in records))
    manifest = {
        "points": points,
        "adaptive": {
            "metric": "ssim",
            "higher": True,
            "eta": 2,
            "budgets": [2, 4],
            "rungs": [{"epochs": 2, "points": list(range(8))}],
        },
    }
    chosen, values, line = choose(run, manifest, 0)
    assert chosen == [0, 1, 4, 5]  # means 0.55 and 0.56 beat 0.50; configuration 3 unfinished
    assert 7 not in values and values[6] == 0.95
    assert (
        "3 of 4 configuration(s) finished; keeping 2 (1/2) -> rung 1 (4 epochs): point(s) 0 1 4 5"
        in line
    )


@pytest.mark.slurm
def test_a_promoted_point_reads_pending_until_its_next_job_is_recorded(slurm_cluster, tmp_path):
    """The promotion marks its points pending, then queues them: until sbatch answers, a point's
    latest job is its last rung's, COMPLETED by the real Slurm, while status.json says pending.
    It reads pending (a promotion after that job), not failed; a point never promoted whose job
    ended without the point saying done still reads failed."""
    from mrihpc.login.views import point_views

    out = subprocess.run(
        ["sbatch", "--parsable", "-p", "debug", "-o", "/dev/null", "--wrap", "true"],
        capture_output=True,
        text=True,
        check=True,
    )
    job = out.stdout.strip().split(";")[0]
    deadline = time.time() + 60
    while sacct_rows(job, "State")[-1][0] != "COMPLETED":
        assert time.time() < deadline, f"job {job} never completed"
        time.sleep(1)
    run = RunPaths(tmp_path / "run")
    for i in (0, 1):
        run.point(i).root.mkdir(parents=True)
        run.point(i).status.write_text(json.dumps({"state": "pending"}))
    submitted, chosen = "2026-12-06T10:00:00", "2026-12-06T10:05:00"
    manifest = {
        "points": [{"index": 0, "name": "p0"}, {"index": 1, "name": "p1"}],
        "submissions": [
            {"time": submitted, "executor": "slurm", "jobs": {"0": {"job_id": job}}},
            {"time": submitted, "executor": "slurm", "jobs": {"1": {"job_id": job}}},
        ],
        "adaptive": {
            "rungs": [
                {"points": [0, 1], "time": submitted},
                {"points": [0], "time": chosen},  # point 0 promoted after its job
            ]
        },
    }
    views, source = point_views(run, manifest)
    assert source == "sacct"
    assert [v.state for v in views] == ["pending", "failed"]
    manifest["submissions"][0]["time"] = "2026-12-06T10:06:00"  # its next job, recorded: ended
    assert [v.state for v in point_views(run, manifest)[0]] == ["failed", "failed"]
