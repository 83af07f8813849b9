"""IXI synthesis data ('<id> - <contrast>.pt') the training could not use: every image of every
complete pair is read at submit, so a bad file is named before anything is queued; a file
damaged after the submit fails the point naming it. Nothing named like data is skipped."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from mrihpc.login.cli import main
from mrihpc.paths import read_json
from mrihpc.workloads.synthesis.synth import generate

SPEC = {
    "name": "ixi-bad",
    "task": "synthesis",
    "model": {"mode": "generator", "G": {"widths": [8, 16, 16]}},
    "train": {"epochs": 1, "batch_size": 2, "workers": 0, "precision": "fp32", "threads": 1},
    "cluster": {"executor": "local", "time": "10:00"},
}
FIRST = "sub-IXI002"


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> Path:
    return generate(
        tmp_path_factory.mktemp("ixi") / "data", subjects=8, incomplete=1, size=32, seed=3
    )


def _spec(tmp_path: Path, root: Path, **data) -> Path:
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({**SPEC, "data": {"root": str(root), **data}}))
    return spec


def _save(root: Path, name: str, value) -> None:
    torch.save(value, root / name)


def _one_subject(root: Path) -> None:
    for path in root.glob("*.pt"):
        if not path.name.startswith(FIRST):
            path.unlink()


CASES = {  # name -> (how the copy is damaged, the file the refusal names, what it says)
    "complex": (
        lambda r: _save(r, f"{FIRST} - T2.pt", torch.ones(32, 32, dtype=torch.complex64)),
        f"{FIRST} - T2.pt",
        "dtype complex64; allowed: float16, bfloat16, float32",
    ),
    "bool": (
        lambda r: _save(r, f"{FIRST} - T1.pt", torch.rand(32, 32) > 0.5),
        f"{FIRST} - T1.pt",
        "dtype bool; allowed",
    ),
    "int64": (
        lambda r: _save(r, f"{FIRST} - T1.pt", torch.randint(0, 9, (32, 32))),
        f"{FIRST} - T1.pt",
        "dtype int64; allowed",
    ),
    "3-D": (
        lambda r: _save(r, f"{FIRST} - T2.pt", torch.rand(2, 32, 32)),
        f"{FIRST} - T2.pt",
        "shape [2, 32, 32]; allowed: [H, W] or [1, H, W], each side >= 7",
    ),
    "NaN": (
        lambda r: _save(r, f"{FIRST} - T2.pt", torch.full((32, 32), float("nan"))),
        f"{FIRST} - T2.pt",
        "holds NaN or infinite values; allowed: finite values",
    ),
    "constant target": (
        lambda r: _save(r, f"{FIRST} - T2.pt", torch.zeros(32, 32)),
        f"{FIRST} - T2.pt",
        "every value is 0; allowed: an image with contrast",
    ),
    "not a tensor file": (
        lambda r: (r / f"{FIRST} - T1.pt").write_bytes(b"\0garbage"),
        f"{FIRST} - T1.pt",
        "not a readable tensor file",
    ),
    "another size": (
        lambda r: _save(r, f"{FIRST} - T2.pt", torch.rand(40, 40)),
        f"{FIRST} - T2.pt",
        "size [40, 40], but",
    ),
    "a folder named .pt": (
        lambda r: (r / "sub-IXI900 - T2.pt").mkdir(),
        "sub-IXI900 - T2.pt",
        "a folder, named like a data file",
    ),
    "a link loop named .pt": (
        lambda r: os.symlink("loop - T1.pt", r / "loop - T1.pt"),
        "loop - T1.pt",
        "a broken or looping link, named like a data file",
    ),
    "one subject": (
        _one_subject,
        "",
        "1 complete subject(s) give 0 training, 0 validation and 1 test subject(s)",
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_a_bad_ixi_file_is_refused_at_submit_naming_it(case, clean, tmp_path, capsys):
    root = tmp_path / "data"
    shutil.copytree(clean, root, symlinks=True)
    damage, named, expected = CASES[case]
    damage(root)
    assert main(["submit", str(_spec(tmp_path, root)), "--runs", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    where = f"{root / named}: " if named else f"{root}: "
    assert f"data.root: {where}{expected}" in err and "Traceback" not in err, err
    assert not (tmp_path / "runs").exists()


def test_sides_the_generator_cannot_halve_are_refused(clean, tmp_path, capsys):
    """32 x 32 images and a four-level generator (sides must divide by 16): fine; five levels:
    refused."""
    spec = _spec(tmp_path, clean)
    assert main(["validate", str(spec), "--check-paths"]) == 0
    text = yaml.safe_load(spec.read_text())
    text["model"]["G"]["widths"] = [8, 8, 8, 8, 8, 8]
    spec.write_text(yaml.safe_dump(text))
    assert main(["validate", str(spec), "--check-paths"]) == 2
    assert "size [32, 32]; allowed: sides divisible by 64 (2 ** G levels" in capsys.readouterr().err


def test_a_file_damaged_after_submit_fails_the_point_naming_it(clean, tmp_path):
    """The run directory is made (the data clean), then a target is overwritten with NaN before
    the point starts: it fails, and status.json names the file."""
    root = tmp_path / "data"
    shutil.copytree(clean, root)
    code = (
        "import sys; from pathlib import Path; from mrihpc.login import checks, launch; "
        "spec, raw, points, _ = checks.prepare(sys.argv[1]); "
        "print(launch.write_run_directory(Path(sys.argv[2]), spec, raw, sys.argv[1], "
        "points, 'debug').root)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(_spec(tmp_path, root)), str(tmp_path / "runs")],
        capture_output=True,
        text=True,
        check=True,
    )
    run = Path(out.stdout.strip().splitlines()[-1])
    bad = root / f"{FIRST} - T2.pt"
    torch.save(torch.full((32, 32), float("inf")), bad)
    subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from mrihpc.node.runner import run_point; run_point(sys.argv[1], 0)",
            str(run),
        ],
        capture_output=True,
    )
    status = read_json(run / "points" / "0" / "status.json")
    assert status["state"] == "failed", status
    assert (
        status["error"] == f"DataError: {bad}: holds NaN or infinite values; allowed: finite values"
    )
