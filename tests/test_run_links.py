"""A symbolic link planted inside a run directory never takes a write out of it: submit,
resubmit, predict, cancel's locks and the node itself refuse it, name the link, and leave its
target as it was."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from conftest import TINY, merge
from mrihpc.login.cli import main
from mrihpc.node.runner import run_point
from mrihpc.paths import LinkRefused, RunPaths, read_json, update_json


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("links")
    spec = folder / "spec.yaml"
    spec.write_text(yaml.safe_dump(merge(TINY, train={**TINY["train"], "epochs": 1})))
    assert main(["submit", str(spec), "--runs", str(folder / "runs")]) == 0
    return next((folder / "runs" / "tiny").iterdir())


def _snapshot(folder: Path) -> dict:
    return {
        str(p.relative_to(folder)): p.read_bytes() if p.is_file() else None
        for p in sorted(folder.rglob("*"))
    }


@pytest.fixture
def outside(tmp_path) -> Path:
    """Where a planted link points: it must be unchanged at the end of every test."""
    target = tmp_path / "outside"
    target.mkdir()
    (target / "precious.txt").write_text("keep me\n")
    yield target
    assert _snapshot(target) == {"precious.txt": b"keep me\n"}


def _copy(finished_run: Path, tmp_path: Path) -> RunPaths:
    run = tmp_path / "runs" / "tiny" / finished_run.name
    shutil.copytree(finished_run, run, symlinks=True)
    return RunPaths(run)


def _plant(link: Path, target: Path) -> None:
    if link.is_dir():
        shutil.rmtree(link)
    else:
        link.unlink(missing_ok=True)
    link.symlink_to(target)


POINT_LINKS = {  # where in point 0's folder a link is planted, and whether it links a folder
    "points/0": ("", True),
    "metrics.jsonl": ("metrics.jsonl", False),
    "checkpoints": ("checkpoints", True),
    "status lock": (".status.json.lock", False),
    "scales.json": ("scales.json", False),
}


@pytest.mark.parametrize("where", POINT_LINKS)
def test_resubmit_refuses_a_link_in_the_point_before_queueing(
    where, finished_run, tmp_path, outside, capsys
):
    run = _copy(finished_run, tmp_path)
    name, is_dir = POINT_LINKS[where]
    link = run.point(0).root / name if name else run.point(0).root
    _plant(link, outside if is_dir else outside / "precious.txt")
    submissions = read_json(run.manifest)["submissions"]
    assert main(["resubmit", str(run.root), "0"]) == 2
    err = capsys.readouterr().err
    assert f"{link}: a symbolic link (to {outside}" in err and "Traceback" not in err, err
    assert read_json(run.manifest)["submissions"] == submissions  # nothing queued


@pytest.mark.parametrize("where", ["metrics.jsonl", "checkpoints", "points/0"])
def test_the_node_refuses_a_link_planted_after_submission(where, finished_run, tmp_path, outside):
    """A link that appears between the queueing and the start: the point fails, saying why."""
    run = _copy(finished_run, tmp_path)
    name, is_dir = POINT_LINKS[where]
    link = run.point(0).root / name if name else run.point(0).root
    _plant(link, outside if is_dir else outside / "precious.txt")
    with pytest.raises(LinkRefused, match="a symbolic link"):
        run_point(run.root, 0)
    if where != "points/0":  # status.json is then reachable only through the link: left alone
        status = read_json(run.point(0).status)
        assert status["state"] == "failed" and status["error"].startswith(f"LinkRefused: {link}"), (
            status
        )


def test_predict_refuses_a_linked_predictions_folder_or_file(
    finished_run, tmp_path, outside, capsys
):
    run = _copy(finished_run, tmp_path)
    _plant(run.point(0).predictions, outside)
    assert main(["predict", str(run.root), "--point", "0"]) == 2
    assert f"{run.point(0).predictions}: a symbolic link" in capsys.readouterr().err
    run.point(0).predictions.unlink()
    (run.point(0).predictions / "val").mkdir(parents=True)
    planted = run.point(0).predictions / "val" / "file1000.h5"  # the name a prediction would take
    planted.symlink_to(outside / "precious.txt")
    assert main(["predict", str(run.root), "--point", "0"]) == 2
    assert f"{planted}: a symbolic link (to {outside / 'precious.txt'})" in capsys.readouterr().err
    planted.unlink()
    assert (
        main(["predict", str(run.root), "--point", "0"]) == 0
    )  # and with the link gone, it writes
    assert list((run.point(0).predictions / "val").glob("*.h5"))


def test_a_linked_run_name_folder_is_refused_at_submit(tmp_path, write_spec, outside, capsys):
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "tiny").symlink_to(outside)
    spec = write_spec(merge(TINY, train={**TINY["train"], "epochs": 1}))
    assert main(["submit", str(spec), "--runs", str(tmp_path / "runs")]) == 2
    assert (
        f"{tmp_path / 'runs' / 'tiny'}: a symbolic link (to {outside})" in capsys.readouterr().err
    )


def test_a_runs_folder_that_is_itself_a_link_is_the_users_choice(tmp_path, write_spec, capsys):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    (tmp_path / "runs").symlink_to(scratch)
    spec = write_spec(merge(TINY, train={**TINY["train"], "epochs": 1}))
    assert main(["submit", str(spec), "--runs", str(tmp_path / "runs")]) == 0
    run = RunPaths(next((scratch / "tiny").iterdir()))
    assert read_json(run.point(0).status)["state"] == "done"


def test_lock_and_status_writes_refuse_links(finished_run, tmp_path, outside):
    run = _copy(finished_run, tmp_path)
    lock = run.point(0).root / ".status.json.lock"
    _plant(lock, outside / "precious.txt")
    with pytest.raises(LinkRefused, match=str(lock)):
        update_json(run.point(0).status, lambda s: {**s, "state": "cancelled"})
    lock.unlink()
    run.point(1).root.symlink_to(outside)  # a point folder the run does not have yet
    with pytest.raises(LinkRefused, match="points/1"):
        update_json(run.point(1).status, lambda s: {**(s or {}), "state": "cancelled"})
