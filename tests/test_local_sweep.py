"""A whole sweep through submitit's local executor: run directory, status, results, resubmit."""

from __future__ import annotations

import csv
import io
import json

import yaml

from conftest import TINY, merge
from mrihpc.login.cli import main
from mrihpc.paths import RunPaths

FOUR_POINTS = {
    "points": [{"optim.lr": 1e-3}, {"optim.lr": 2e-3}, {"optim.lr": 3e-3}, {"train.batch_size": 64}]
}  # point 3: valid spec, but no full batch at run time


def _run_dir(runs) -> RunPaths:
    (folder,) = (runs / "tiny").iterdir()
    return RunPaths(folder)


def test_local_sweep_status_results_and_resubmit(tmp_path, write_spec, capsys):
    spec = write_spec(merge(TINY, train={**TINY["train"], "epochs": 1}, sweep=FOUR_POINTS))
    runs = tmp_path / "runs"
    assert main(["submit", str(spec), "--runs", str(runs)]) == 0
    run = _run_dir(runs)

    # the run directory as DESIGN.md lays it out
    manifest = json.loads(run.manifest.read_text())
    assert [p["index"] for p in manifest["points"]] == [0, 1, 2, 3]
    assert manifest["points"][1]["overrides"] == {"optim.lr": 2e-3}
    assert yaml.safe_load(run.spec.read_text())["name"] == "tiny"
    assert yaml.safe_load(run.point(2).config.read_text())["optim"]["lr"] == 3e-3
    assert all(run.point(i).metrics.is_file() for i in range(3))
    capsys.readouterr()

    assert main(["status", str(run.root)]) == 0
    out = capsys.readouterr().out
    assert "4 points: 3 done, 1 failed" in out
    assert "ValueError: no full batch" in out

    assert main(["results", str(run.root), "--csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert len(rows) == 4
    assert [r["state"] for r in rows].count("done") == 3
    ssims = [float(r["best_ssim"]) for r in rows if r["best_ssim"]]
    assert ssims == sorted(ssims, reverse=True)  # best first

    assert main(["logs", str(run.root), "0"]) == 0
    assert "epoch 1/1" in capsys.readouterr().out

    # repair the failing point's config, then rerun exactly it
    config = yaml.safe_load(run.point(3).config.read_text())
    config["train"]["batch_size"] = 2
    run.point(3).config.write_text(yaml.safe_dump(config))
    before = [json.loads(run.point(i).status.read_text())["attempts"] for i in range(4)]
    assert main(["resubmit", str(run.root), "--failed"]) == 0
    manifest = json.loads(run.manifest.read_text())
    assert list(manifest["submissions"][-1]["jobs"]) == ["3"]
    after = [json.loads(run.point(i).status.read_text())["attempts"] for i in range(4)]
    assert after == before[:3] + [before[3] + 1]
    capsys.readouterr()
    assert main(["status", str(run.root)]) == 0
    assert "4 points: 4 done" in capsys.readouterr().out
    assert main(["resubmit", str(run.root), "--failed"]) == 0
    assert "nothing to resubmit" in capsys.readouterr().out


def test_status_of_a_folder_that_is_not_a_run(tmp_path, capsys):
    assert main(["status", str(tmp_path)]) == 2
    assert "not a run directory" in capsys.readouterr().err


def test_run_one_point_in_process(tmp_path, write_spec, capsys):
    spec = write_spec(
        merge(
            TINY, train={**TINY["train"], "epochs": 1}, sweep={"grid": {"optim.lr": [1e-3, 5e-3]}}
        )
    )
    assert main(["run", str(spec), "--point", "1", "--runs", str(tmp_path / "runs")]) == 0
    run = _run_dir(tmp_path / "runs")
    assert json.loads(run.point(1).status.read_text())["state"] == "done"
    assert not run.point(0).status.exists()
