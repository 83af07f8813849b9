"""Every verb that reads a run survives its damaged files: it names the damaged file, says what
it could still read, lists the points it can, and exits 1 (2 when nothing could be read)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from conftest import TINY, merge
from mrihpc.login.cli import main
from mrihpc.paths import RunPaths, scan_jsonl


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    """A finished 2-point sweep (local executor, one epoch each) to damage copies of."""
    folder = tmp_path_factory.mktemp("damaged")
    spec = folder / "spec.yaml"
    spec.write_text(
        yaml.safe_dump(
            merge(
                TINY,
                train={**TINY["train"], "epochs": 1},
                sweep={"grid": {"optim.lr": [2e-3, 1e-3]}},
            )
        )
    )
    assert main(["submit", str(spec), "--runs", str(folder / "runs")]) == 0
    return next((folder / "runs" / "tiny").iterdir())


def _cut(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


DAMAGE = {  # name -> (file under the run, how it is damaged)
    "manifest cut in half": ("manifest.json", _cut),
    "manifest emptied": ("manifest.json", lambda p: p.write_bytes(b"")),
    "manifest not an object": ("manifest.json", lambda p: p.write_text("[1, 2]")),
    "manifest without points": (
        "manifest.json",
        lambda p: p.write_text('{"points": 3, "submissions": []}'),
    ),
    "manifest not UTF-8": ("manifest.json", lambda p: p.write_bytes(b'{"points": "\xff"}')),
    "status cut in half": ("points/0/status.json", _cut),
    "status emptied": ("points/0/status.json", lambda p: p.write_bytes(b"")),
    "status a list": ("points/0/status.json", lambda p: p.write_text("[1]")),
    "status not UTF-8": ("points/0/status.json", lambda p: p.write_bytes(b"\xfe\xff{}")),
    "metrics not UTF-8": (
        "points/0/metrics.jsonl",
        lambda p: p.write_bytes(b"\xff\xfe\n" + p.read_bytes()),
    ),
    "metrics non-object lines": (
        "points/0/metrics.jsonl",
        lambda p: p.write_bytes(b'[1, 2]\n3\n"x"\n' + p.read_bytes()),
    ),
    "metrics value a string": (
        "points/0/metrics.jsonl",
        lambda p: p.write_text(
            p.read_text() + '{"kind": "epoch", "epoch": "9", "val_ssim": "high"}\n'
        ),
    ),
    "config not YAML": ("points/0/config.yaml", lambda p: p.write_text("name: [unclosed\n")),
    "provenance cut in half": ("points/0/provenance.json", _cut),
}
VERBS = {
    "status": ["status"],
    "status --provenance": ["status", "--provenance"],
    "results": ["results"],
    "results --csv": ["results", "--csv"],
    "results --plot": ["results", "--plot", "curves.png"],
}


@pytest.mark.parametrize("verb", VERBS)
@pytest.mark.parametrize("damage", DAMAGE)
def test_a_verb_names_the_damaged_file_and_shows_what_it_can(
    damage, verb, finished_run, tmp_path, capsys, monkeypatch
):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run, symlinks=True)
    name, spoil = DAMAGE[damage]
    spoil(run / name)
    monkeypatch.chdir(tmp_path)
    code = main([VERBS[verb][0], str(run), *VERBS[verb][1:]])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    silent = (
        name == "points/0/config.yaml"
        or (name.endswith("provenance.json") and "--provenance" not in verb)
        or (name.endswith("metrics.jsonl") and verb.startswith("status"))
    )
    if (
        silent
    ):  # not read by this verb (config.yaml: the manifest names the metric), so nothing to say
        assert code == 0 and not err, err
    else:
        assert code == 1, (code, err)
        assert f"warning: {run / name}: damaged" in err, err
    lines = out.splitlines()
    if verb.startswith("status") or verb == "results":
        first_table = lines[
            1 : next(
                (
                    n
                    for n, line in enumerate(lines[1:], 1)
                    if not line[:1].isdigit() or " points: " in line
                ),
                len(lines),
            )
        ]
        assert [line.split()[0] for line in first_table] in (["0", "1"], ["1", "0"]), (
            out
        )  # both points listed
    if "status" in damage and verb.startswith("status"):
        assert "unknown" in next(line for line in lines if line.startswith("0 ")), out
    if damage.startswith("metrics") and verb == "results":
        row0 = next(line for line in lines if line.startswith("0 "))
        assert "done" in row0 and " 1 " in row0, out  # the one good epoch still read


def test_a_run_verb_that_cannot_go_on_without_the_manifest_says_so(finished_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run, symlinks=True)
    _cut(run / "manifest.json")
    for verb in (["logs", str(run), "0"], ["cancel", str(run)], ["resubmit", str(run), "--failed"]):
        assert main(verb) == 2
        err = capsys.readouterr().err
        assert (
            f"{run / 'manifest.json'}: damaged: not valid JSON" in err and "Traceback" not in err
        ), err


def test_a_torn_last_line_is_not_damage_but_a_bad_line_before_it_is(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_bytes(b'{"a": 1}\n{"a": 2}\n{"a": 3, "b"')  # a writer killed mid-line
    assert scan_jsonl(path, dict) == ([{"a": 1}, {"a": 2}], 0)
    path.write_bytes(b'{"a": 1}\n{"a": \n{"a": 3}\n[4]\n')
    assert scan_jsonl(path, dict) == ([{"a": 1}, {"a": 3}], 2)
    assert RunPaths(tmp_path).point(0).metrics.name == "metrics.jsonl"


def test_a_point_with_a_damaged_status_is_named_by_resubmit_and_reruns_by_index(tmp_path, capsys):
    """--failed cannot know the point failed: it says which file is damaged (exit 1); resubmitting
    the point by index reruns it, and the node writes a whole status.json again."""
    spec = (
        tmp_path / "spec.yaml"
    )  # a run of its own: a copied run's code snapshot is not where it was made
    spec.write_text(yaml.safe_dump(merge(TINY, train={**TINY["train"], "epochs": 1})))
    assert main(["submit", str(spec), "--runs", str(tmp_path / "runs")]) == 0
    run = next((tmp_path / "runs" / "tiny").iterdir())
    status = run / "points" / "0" / "status.json"
    _cut(status)
    capsys.readouterr()
    assert main(["resubmit", str(run), "--failed"]) == 1
    out, err = capsys.readouterr()
    assert f"warning: {status}: damaged" in err and "resubmit that point by its index" in err, err
    assert "nothing to resubmit" in out and "Traceback" not in err
    assert (
        main(["resubmit", str(run), "0"]) == 1
    )  # rerun; the warning was about the file it replaced
    assert json.loads(status.read_text())["state"] == "done"
