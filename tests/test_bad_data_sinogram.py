"""Raw sinogram data the training could not use: refused at submit naming the file (every file's
values are streamed once, cached by path, size and mtime, and the nodes' scales reuse that pass);
a file that turns bad after the submit fails the point naming file, TOF bin and slice. Nothing
named like data is skipped."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from mrihpc.login.cli import main
from mrihpc.paths import read_json
from mrihpc.workloads.sinogram.synth import generate

SHAPE = [2, 8, 50, 64]
TRAIN = {"epochs": 1, "batch_size": 2, "workers": 0, "precision": "fp32", "threads": 1}


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> Path:
    """uint16 files as the synthetic twin writes them, and a float32 copy of the same counts."""
    src = generate(
        tmp_path_factory.mktemp("sino") / "u16",
        train_files=2,
        val_files=1,
        test_files=1,
        tof=2,
        slices=8,
        angles=50,
        bins=64,
    )
    f32 = src.parent / "f32"
    shutil.copytree(src, f32)
    for raw in f32.rglob("*.raw"):
        np.fromfile(raw, np.uint16).astype(np.float32).tofile(raw)
    return src.parent


def _spec(tmp_path: Path, root: Path, **data) -> Path:
    spec = tmp_path / "spec.yaml"
    data = {
        "train_dir": str(root / "train"),
        "val_dir": str(root / "val"),
        "shape": SHAPE,
        "mode": "denoise",
        "epoch_size": 4,
        "val_samples": 2,
    } | data
    spec.write_text(
        yaml.safe_dump(
            {
                "name": "sino-bad",
                "task": "sinogram",
                "data": data,
                "model": {"width": 4},
                "train": TRAIN,
                "cluster": {"executor": "local", "time": "10:00"},
            }
        )
    )
    return spec


def _fill(path: Path, value) -> None:
    np.full(path.stat().st_size // 4, value, np.float32).tofile(path)


def _nan_somewhere(path: Path) -> None:
    values = np.fromfile(path, np.float32)
    values[1234] = np.nan
    values.tofile(path)


CASES = {  # name -> (copy, damage, extra data settings, the file the refusal names, what it says)
    "uint16 read as float32": (
        "u16",
        lambda r: None,
        {"dtype": "float32", "shape": [2, 8, 50, 32]},
        "train/case000_clean.raw",
        "not float32 data (uint16 counts read as float32?): ",
    ),
    "NaN in a float32 file": (
        "f32",
        lambda r: _nan_somewhere(r / "val" / "case000_noisy.raw"),
        {"dtype": "float32"},
        "val/case000_noisy.raw",
        "holds NaN or infinite values; allowed: finite values",
    ),
    "a constant target": (
        "f32",
        lambda r: _fill(r / "train" / "case001_clean.raw", 0.0),
        {"dtype": "float32"},
        "train/case001_clean.raw",
        "every value is 0; allowed: a clean sinogram with counts",
    ),
    "a folder named like data": (
        "u16",
        lambda r: (r / "train" / "case009_clean.raw").mkdir(),
        {},
        "train/case009_clean.raw",
        "a folder, named like a data file",
    ),
    "a link loop named like data": (
        "u16",
        lambda r: os.symlink("x_noisy.raw", r / "val" / "x_noisy.raw"),
        {},
        "val/x_noisy.raw",
        "a broken or looping link, named like a data file",
    ),
    "a mask with every block missing": (
        "u16",
        lambda r: np.save(r / "mask.npy", np.zeros((50, 64), np.uint8)),
        "inpaint",
        "mask.npy",
        "every block is missing (0); allowed: a mask with both",
    ),
    "a mask with none missing": (
        "u16",
        lambda r: np.save(r / "mask.npy", np.ones((8, 50, 64), bool)),
        "inpaint",
        "mask.npy",
        "every block is measured (1)",
    ),
    "a 0-byte mask": (
        "u16",
        lambda r: (r / "mask.npy").write_bytes(b""),
        "inpaint",
        "mask.npy",
        "not a readable .npy (EOFError",
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_a_bad_sinogram_file_is_refused_at_submit_naming_it(
    case, clean, tmp_path, capsys, monkeypatch
):
    monkeypatch.setenv("MRIHPC_CACHE", str(tmp_path / "cache"))
    kind, damage, data, named, expected = CASES[case]
    root = tmp_path / "data"
    shutil.copytree(clean / kind, root, symlinks=True)
    damage(root)
    if data == "inpaint":
        data = {"mode": "inpaint", "mask_file": str(root / "mask.npy")}
    assert (
        main(["submit", str(_spec(tmp_path, root, **data)), "--runs", str(tmp_path / "runs")]) == 2
    )
    err = capsys.readouterr().err
    assert f"{root / named}: {expected}" in err and "Traceback" not in err, err
    assert not (tmp_path / "runs").exists()


def test_empty_or_equal_suffixes_are_refused_at_validate(clean, tmp_path, capsys):
    assert main(["validate", str(_spec(tmp_path, clean / "u16", clean_suffix=""))]) == 2
    assert "data.clean_suffix: String should have at least 1 character" in capsys.readouterr().err
    assert main(["validate", str(_spec(tmp_path, clean / "u16", noisy_suffix="_clean.raw"))]) == 2
    assert (
        "clean_suffix and noisy_suffix are both '_clean.raw': a case needs two files"
        in capsys.readouterr().err
    )


def test_the_clean_float32_copy_is_accepted(clean, tmp_path, monkeypatch):
    """The checks refuse the bad files above and nothing else: the same counts as float32 pass."""
    monkeypatch.setenv("MRIHPC_CACHE", str(tmp_path / "cache"))
    assert (
        main(["validate", str(_spec(tmp_path, clean / "f32", dtype="float32")), "--check-paths"])
        == 0
    )


def test_a_file_turned_bad_after_submit_fails_the_point_naming_file_tof_and_slice(
    clean, tmp_path, monkeypatch
):
    monkeypatch.setenv("MRIHPC_CACHE", str(tmp_path / "cache"))
    root = tmp_path / "data"
    shutil.copytree(clean / "f32", root)
    code = (
        "import sys; from pathlib import Path; from mrihpc.login import checks, launch; "
        "spec, raw, points, _ = checks.prepare(sys.argv[1]); "
        "print(launch.write_run_directory(Path(sys.argv[2]), spec, raw, sys.argv[1], "
        "points, 'debug').root)"
    )
    spec = _spec(tmp_path, root, dtype="float32")
    out = subprocess.run(
        [sys.executable, "-c", code, str(spec), str(tmp_path / "runs")],
        capture_output=True,
        text=True,
        check=True,
    )
    run = Path(out.stdout.strip().splitlines()[-1])
    bad = root / "train" / "case000_noisy.raw"
    _fill(bad, np.inf)
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
        status["error"].startswith(f"DataError: {bad}: TOF ")
        and "holds NaN or infinite values" in status["error"]
    )
