"""ACDC-layout PNG data the training could not use, refused at submit naming the file with
nothing queued (every pair is read at submit, as training reads it); and a file name that is not
UTF-8, refused by every workload's reader (it crashed the point when JSON met it)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image  # scikit-image's own PNG writer stores a bool array as 8-bit
from skimage.io import imsave

from mrihpc.login.cli import main
from mrihpc.workloads.segmentation.synth import generate

SEG = {
    "name": "seg-bad",
    "task": "segmentation",
    "model": {"preset": "acdc_small", "channels": 8, "depth": 2},
    "train": {"epochs": 1, "batch_size": 2, "workers": 0, "precision": "fp32", "threads": 1},
    "cluster": {"executor": "local", "time": "10:00"},
}
NOT_UTF8 = os.fsdecode(b"case\xff")  # what os.listdir gives for a Latin-1 name on a UTF-8 system


@pytest.fixture(scope="module")
def acdc(tmp_path_factory) -> Path:
    return generate(
        tmp_path_factory.mktemp("acdc") / "data", train=4, val=2, test=2, size=64, seed=1
    )


def _submit(tmp_path: Path, spec: dict, capsys) -> str:
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    assert main(["submit", str(path), "--runs", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and not (tmp_path / "runs").exists(), err
    return err


CASES = {  # name -> (damage, the file the refusal names, what it says)
    "a 1-bit image": (
        lambda r: Image.fromarray(np.eye(64, dtype=bool)).save(r / "train/image/cmr1.png"),
        "train/image/cmr1.png",
        "bool pixels; allowed: 8- or 16-bit grayscale",
    ),
    "a blank image": (
        lambda r: imsave(
            r / "val/image/cmr5.png", np.zeros((64, 64), np.uint8), check_contrast=False
        ),
        "val/image/cmr5.png",
        "every pixel is 0; allowed: an image with contrast",
    ),
    "a 0-byte image": (
        lambda r: (r / "train/image/cmr2.png").write_bytes(b""),
        "train/image/cmr2.png",
        "not a readable PNG",
    ),
    "a folder named .png": (
        lambda r: (r / "train/image/cmr9.png").mkdir(),
        "train/image/cmr9.png",
        "a folder, named like a data file; allowed: PNG files",
    ),
    "a link loop named .png": (
        lambda r: os.symlink("loop_mask.png", r / "val/mask/loop_mask.png"),
        "val/mask/loop_mask.png",
        "a broken or looping link, named like a data file",
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_a_bad_png_is_refused_at_submit_naming_it(case, acdc, tmp_path, capsys):
    root = tmp_path / "data"
    shutil.copytree(acdc, root, symlinks=True)
    damage, named, expected = CASES[case]
    damage(root)
    err = _submit(tmp_path, {**SEG, "data": {"root": str(root)}}, capsys)
    assert f"data.root: {root / named}: {expected}" in err, err


def test_fewer_training_images_than_a_batch_are_refused(acdc, tmp_path, capsys):
    err = _submit(
        tmp_path,
        {**SEG, "data": {"root": str(acdc)}, "train": {**SEG["train"], "batch_size": 6}},
        capsys,
    )
    assert (
        f"data.root: {acdc / 'train'}: 4 training image(s); allowed: at least train.batch_size (6)"
        in err
    ), err


def _knee(root: Path) -> tuple[dict, Path]:
    from conftest import TINY
    from mrihpc.workloads.knee.kspace.synth import generate as knee

    knee(root, 4, slices=8, shape=(96, 80), recon_shape=(64, 64), seed=1)
    spec = {
        **TINY,
        "data": {k: v for k, v in TINY["data"].items() if k != "synthetic"} | {"root": str(root)},
    }
    return spec, root / "train" / f"{NOT_UTF8}.h5"


def _ixi(root: Path) -> tuple[dict, Path]:
    from mrihpc.workloads.synthesis.synth import generate as ixi

    ixi(root, subjects=6, incomplete=0, size=32, seed=1)
    spec = {
        "name": "ixi",
        "task": "synthesis",
        "data": {"root": str(root)},
        "model": {"mode": "generator", "G": {"widths": [8, 8]}},
        "train": SEG["train"],
        "cluster": SEG["cluster"],
    }
    return spec, root / f"{NOT_UTF8} - T1.pt"


def _sinogram(root: Path) -> tuple[dict, Path]:
    from mrihpc.workloads.sinogram.synth import generate as sino

    sino(root, train_files=1, val_files=1, test_files=1, tof=2, slices=8, angles=50, bins=64)
    spec = {
        "name": "sino",
        "task": "sinogram",
        "data": {
            "train_dir": str(root / "train"),
            "val_dir": str(root / "val"),
            "shape": [2, 8, 50, 64],
        },
        "train": SEG["train"],
        "cluster": SEG["cluster"],
    }
    return spec, root / "train" / f"{NOT_UTF8}_clean.raw"


def _segmentation(root: Path) -> tuple[dict, Path]:
    generate(root, train=2, val=1, test=1, size=64, seed=1)
    return {**SEG, "data": {"root": str(root)}}, root / "train" / "image" / f"{NOT_UTF8}.png"


@pytest.mark.parametrize(
    "layout", [_knee, _ixi, _sinogram, _segmentation], ids=lambda f: f.__name__[1:]
)
def test_a_file_name_that_is_not_utf8_is_refused_naming_it(layout, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MRIHPC_CACHE", str(tmp_path / "cache"))
    spec, odd = layout(tmp_path / "data")
    first = sorted(p for p in odd.parent.iterdir() if p.is_file() and p.suffix == odd.suffix)[0]
    shutil.copy(first, odd)  # a good file under a bad name
    if odd.suffix == ".pt":
        torch.save(torch.load(first), odd)
    err = _submit(tmp_path, spec, capsys)
    assert (
        f"{odd.parent}/case\\xff" in err
        and "the file name is not UTF-8; allowed: UTF-8 file names" in err
    ), err
