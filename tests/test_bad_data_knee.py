"""Knee (fastMRI HDF5) data the training could not use: refused at submit naming the file when
its header shows it (every header is read before queueing), and at run time, naming the file
and slice, when only the values show it (NaN k-space). Nothing named like data is skipped."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml

from conftest import TINY
from mrihpc.workloads.knee.kspace.synth import generate
from mrihpc.login.cli import main
from mrihpc.paths import RunPaths, read_json


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> Path:
    return generate(
        tmp_path_factory.mktemp("knee") / "data",
        5,
        slices=8,
        shape=(96, 80),
        recon_shape=(64, 64),
        seed=4,
    )


def _spec(tmp_path: Path, root: Path, **train) -> Path:
    data = {k: v for k, v in TINY["data"].items() if k != "synthetic"} | {"root": str(root)}
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        yaml.safe_dump({**TINY, "data": data, "train": {**TINY["train"], "epochs": 1, **train}})
    )
    return spec


def _rewrite(path: Path, key: str, change) -> None:
    with h5py.File(path, "a") as f:
        data = change(f[key][()])
        del f[key]
        f.create_dataset(key, data=data)


def _first(root: Path, split: str = "train") -> Path:
    return sorted((root / split).iterdir())[0]


CASES = {  # name -> (how the copy is damaged, which path the refusal names, what it says)
    "not HDF5": (
        lambda r: (r / "train" / "zz.h5").write_bytes(b"not hdf5 at all"),
        "train/zz.h5",
        "not a readable HDF5 file",
    ),
    "a folder named .h5": (
        lambda r: (r / "train" / "dir.h5").mkdir(),
        "train/dir.h5",
        "a folder, named like a data file",
    ),
    "a link loop named .h5": (
        lambda r: os.symlink("loop.h5", r / "val" / "loop.h5"),
        "val/loop.h5",
        "a broken or looping link, named like a data file",
    ),
    "real k-space": (
        lambda r: _rewrite(_first(r), "kspace", lambda k: np.abs(k).astype(np.float32)),
        "train/file1000.h5",
        "kspace must be a complex (slices, H, W) array",
    ),
    "2-D k-space": (
        lambda r: _rewrite(_first(r), "kspace", lambda k: k[0]),
        "train/file1000.h5",
        "kspace must be a complex (slices, H, W) array",
    ),
    "target of another length": (
        lambda r: _rewrite(_first(r), "reconstruction_esc", lambda t: t[:3]),
        "train/file1000.h5",
        "reconstruction_esc must be float32 (8, h, w)",
    ),
    "no header": (
        lambda r: _rewrite(_first(r), "ismrmrd_header", lambda h: b"<not xml"),
        "train/file1000.h5",
        "ismrmrd_header is not a valid ISMRMRD header",
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_a_bad_knee_file_is_refused_at_submit_naming_it(case, clean, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MRIHPC_CACHE", str(tmp_path / "cache"))
    root = tmp_path / "data"
    shutil.copytree(clean, root)
    damage, named, expected = CASES[case]
    damage(root)
    assert main(["submit", str(_spec(tmp_path, root)), "--runs", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert f"data.root: {root / named}: {expected}" in err and "Traceback" not in err, err
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("workers", [0, 1], ids=["in process", "in a loader worker"])
def test_nan_kspace_fails_the_point_naming_file_and_slice(
    workers, clean, tmp_path, capsys, monkeypatch
):
    monkeypatch.setenv("MRIHPC_CACHE", str(tmp_path / "cache"))
    root = tmp_path / "data"
    shutil.copytree(clean, root)
    bad = _first(root, "val")

    def poison(k):
        k[5, 10, 10] = np.nan
        return k

    _rewrite(bad, "kspace", poison)
    assert (
        main(
            [
                "submit",
                str(_spec(tmp_path, root, workers=workers)),
                "--runs",
                str(tmp_path / "runs"),
            ]
        )
        == 0
    )
    run = RunPaths(next((tmp_path / "runs" / "tiny").iterdir()))
    status = read_json(run.point(0).status)
    assert status["state"] == "failed", status
    assert (
        status["error"]
        == f"DataError: {bad}: kspace slice 5 holds NaN or infinite values; allowed: finite values"
    )


@pytest.mark.parametrize(
    "change,expected",
    [
        (
            {"data": {"crop": [0, 0]}},
            "data.crop: [0, 0]; allowed: each side >= 7 (2 ** model depth 2, and SSIM's "
            "7 x 7 window)",
        ),
        ({"data": {"crop": [4, 4]}}, "data.crop: [4, 4]; allowed: each side >= 7"),
        (
            {"model": {"channels": 10**11}},
            "model.channels: Input should be less than or equal to 4096",
        ),
        (
            {"train": {"epochs": 10**23}},
            "train.epochs: Input should be less than or equal to 100000",
        ),
    ],
    ids=["crop 0", "crop below SSIM's window", "width 1e11", "epochs 1e23"],
)
def test_specs_that_validated_then_crashed_the_point_are_refused_at_validate(
    change, expected, tmp_path, capsys
):
    """Each of these passed validation and then crashed or ran forever on the node."""
    spec = {**TINY, **{k: {**TINY[k], **v} for k, v in change.items()}}
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    assert main(["validate", str(path)]) == 2
    assert expected in capsys.readouterr().err


@pytest.mark.parametrize(
    "task,widths", [("synthesis", []), ("synthesis", [8] * 9), ("knee_gan", [])]
)
def test_generator_and_discriminator_widths_are_bounded(task, widths, tmp_path, capsys):
    from conftest import REPO

    spec = yaml.safe_load(
        (
            REPO
            / "jobs"
            / ("ixi_pix2pix_demo.yaml" if task == "synthesis" else "knee_gan_demo.yaml")
        ).read_text()
    )
    net = "G" if task == "synthesis" else "D"
    spec["model"][net] = {**spec["model"].get(net, {}), "widths": widths}
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    assert main(["validate", str(path)]) == 2
    assert (
        f"model.{net}.widths: {widths}: allowed: 1 to 8 block widths, each 1-4096"
        in capsys.readouterr().err
    )


@pytest.mark.parametrize("dtype", [np.complex64, np.complex128, np.float32, np.float64, np.float16])
def test_the_finite_check_agrees_with_numpy(dtype):
    """all_finite (a sum of squares first, each value only when that is not finite) against
    np.isfinite(...).all(): a NaN or an inf in a real or an imaginary part anywhere, values
    whose squares overflow, strided views and integers."""
    from mrihpc.data import all_finite

    rng = np.random.default_rng(0)
    base = rng.standard_normal((64, 48)).astype(dtype)
    if np.iscomplexobj(base):
        base = base + 1j * rng.standard_normal((64, 48)).astype(dtype)
    cases = [base, base * 1e4, base[::3, 1::2]]
    huge = base.copy()
    huge[5, 7] = np.finfo(base.real.dtype).max / 2  # finite, but its square overflows
    cases.append(huge)
    for bad in (np.nan, np.inf, -np.inf):
        for where in ((0, 0), (63, 47), (31, 20)):
            for part in (1, 1j) if np.iscomplexobj(base) else (1,):
                spoiled = base.copy()
                spoiled[where] = bad * part if part == 1 else complex(0, bad)
                cases += [spoiled, spoiled[::2, ::2]]
    for values in cases:
        assert all_finite(values) == bool(np.isfinite(values).all())
    assert sum(not all_finite(v) for v in cases) >= 9  # the spoiled ones are caught
    assert all_finite(np.arange(12, dtype=np.int64).reshape(3, 4))
