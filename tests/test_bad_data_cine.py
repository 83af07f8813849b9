"""Cine data the training could not use is refused at submit, naming the .npz and saying what
is allowed, before a run folder exists or anything is queued; so are masks the data's size
cannot give and sizes the metrics are not defined for."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml

from mrihpc.login.cli import main
from mrihpc.workloads.cine.synth import generate

SPEC = {
    "name": "cine-bad",
    "task": "cine",
    "data": {"root": None, "mask": {"acceleration": 4, "sample_n": 4}},
    "model": {
        "unet": {"preset": "cine", "channels": 4, "depth": 2},
        "refiner": {"width": 4, "blocks": 1},
    },
    "train": {"epochs": 1, "batch_size": 2, "workers": 0, "precision": "fp32", "threads": 1},
    "cluster": {"executor": "local"},
}


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> np.ndarray:
    npz = generate(tmp_path_factory.mktemp("cine") / "src", cases=7, frames=7, size=32, seed=2)
    return np.load(npz)["dataset"]


def _npy(header_shape, dtype, data: bytes) -> bytes:
    """An .npy member whose header says ``header_shape`` but holds ``data``."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf,
        {
            "descr": np.lib.format.dtype_to_descr(np.dtype(dtype)),
            "fortran_order": False,
            "shape": tuple(header_shape),
        },
    )
    return buf.getvalue() + data


def _zip(path: Path, member: bytes) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("dataset.npy", member)
    return path


def _with_nan(a: np.ndarray) -> np.ndarray:
    a = a.copy()
    a[2, 3, 5, 5] = np.nan
    return a


def _flat_case(a: np.ndarray) -> np.ndarray:
    a = a.copy()
    a[4] = 0
    return a


#: name -> (how the file is made from the clean [7, 7, 32, 32] array, what the refusal says)
CASES = {
    "all zero": (
        lambda a, p: np.savez(p, dataset=np.zeros_like(a)),
        "case 0 is 0 everywhere; allowed: cases whose images vary",
    ),
    "one case all zero": (
        lambda a, p: np.savez(p, dataset=_flat_case(a)),
        "case 4 is 0 everywhere",
    ),
    "NaN": (
        lambda a, p: np.savez(p, dataset=_with_nan(a)),
        "case 2 holds NaN or infinite values; allowed: finite values",
    ),
    "int64": (
        lambda a, p: np.savez(p, dataset=(a * 100).astype(np.int64)),
        "holds int64; allowed: float32, float64, complex64, complex128",
    ),
    "bool": (lambda a, p: np.savez(p, dataset=a > 0.5), "holds bool; allowed: float32"),
    "object": (
        lambda a, p: np.savez(p, dataset=a[:, :, :8, :8].astype(object)),
        "holds object; allowed: float32",
    ),
    "3-D": (
        lambda a, p: np.savez(p, dataset=a[:, 0]),
        "has shape [7, 32, 32]; allowed: [N, T, X, Y] in C order",
    ),
    "Fortran order": (
        lambda a, p: np.savez(p, dataset=np.asfortranarray(a)),
        "in Fortran order; allowed: [N, T, X, Y]",
    ),
    "two cases": (lambda a, p: np.savez(p, dataset=a[:2]), "holds 2 case(s); allowed: at least 3"),
    "six frames": (
        lambda a, p: np.savez(p, dataset=a[:, :6]),
        "has frames x size [6, 32, 32]; allowed: each >= 7",
    ),
    "member cut short": (
        lambda a, p: _zip(p, _npy(a.shape, a.dtype, a.tobytes()[:-1000])),
        "the member holds",
    ),
    "header claims 10^9 cases": (
        lambda a, p: _zip(p, _npy((10**9,) + a.shape[1:], a.dtype, a.tobytes())),
        "the header promises [1000000000, 7, 32, 32]",
    ),
    "not an array": (lambda a, p: _zip(p, b"PK not an npy at all"), "is not a NumPy array"),
    "not a zip": (lambda a, p: Path(p).write_bytes(b"\x00" * 100), "not a readable .npz"),
}


@pytest.mark.parametrize("case", CASES)
def test_a_bad_cine_file_is_refused_at_submit_naming_it(case, clean, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MRIHPC_CACHE", str(tmp_path / "cache"))
    npz = tmp_path / "cine.npz"
    make, expected = CASES[case]
    make(clean, npz)
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({**SPEC, "data": {**SPEC["data"], "root": str(npz)}}))
    assert main(["submit", str(spec), "--runs", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert f"{npz}" in err and expected in err and "Traceback" not in err, err
    assert not (tmp_path / "runs").exists()  # nothing queued, no run folder
    assert not [
        p for p in (tmp_path / "cache").rglob("data.npy")
    ]  # and no cache entry to trip over later


def test_a_mask_the_lines_cannot_give_is_refused(clean, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MRIHPC_CACHE", str(tmp_path / "cache"))
    npz = tmp_path / "cine.npz"
    np.savez(npz, dataset=clean)
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        yaml.safe_dump(
            {**SPEC, "data": {"root": str(npz), "mask": {"acceleration": 64, "sample_n": 0}}}
        )
    )
    assert main(["submit", str(spec), "--runs", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert (
        f"{npz}: dataset has 32 lines (X); data.mask: acceleration 64 keeps no line of "
        "32; allowed: 1-32" in err
    ), err
    synthetic = {
        **SPEC,
        "data": {
            "synthetic": {"cases": 7, "frames": 7, "size": 32},
            "mask": {"acceleration": 4, "sample_n": 10},
        },
    }
    spec.write_text(yaml.safe_dump(synthetic))
    assert main(["validate", str(spec)]) == 2
    assert (
        "spec.yaml: data: mask: sample_n 10 centre lines exceed the 8 of 32 lines "
        "acceleration 4 keeps" in capsys.readouterr().err
    )


def test_frames_the_3d_ssim_has_no_window_for_are_refused_at_validate(tmp_path, capsys):
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        yaml.safe_dump({**SPEC, "data": {"synthetic": {"cases": 7, "frames": 6, "size": 32}}})
    )
    assert main(["validate", str(spec)]) == 2
    assert (
        "data.synthetic.frames: Input should be greater than or equal to 7"
        in capsys.readouterr().err
    )


def test_the_smallest_accepted_cine_trains_with_a_finite_ssim(tmp_path, capsys):
    """Clean 7 frames x 32 x 32: every metric defined (it was val_ssim NaN at 6 frames)."""
    import math

    from mrihpc.paths import RunPaths, read_jsonl

    spec = tmp_path / "spec.yaml"
    spec.write_text(
        yaml.safe_dump(
            {
                **SPEC,
                "data": {
                    "synthetic": {"cases": 7, "frames": 7, "size": 32},
                    "mask": {"acceleration": 4, "sample_n": 4},
                },
            }
        )
    )
    assert main(["submit", str(spec), "--runs", str(tmp_path / "runs")]) == 0
    run = RunPaths(next((tmp_path / "runs" / "cine-bad").iterdir()))
    final = [r for r in read_jsonl(run.point(0).metrics) if r.get("kind") == "epoch"][-1]
    assert all(math.isfinite(final[k]) for k in ("val_ssim", "val_psnr", "val_mse")), final
