"""Sinogram denoising / inpainting (seed 003): raw-file checks, wrap pad / crop, MS-SSIM parity with
pytorch-msssim, the seed's U-Net size, the restart schedule, and both demos beating their inputs,
with predictions that read back in the input's layout."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import pytorch_msssim
import torch
import yaml

from conftest import REPO
from mrihpc.login.cli import main
from mrihpc.models.denoise_unet import DenoiseUNet
from mrihpc.msssim import WEIGHTS, ms_ssim
from mrihpc.node.checkpoint import load
from mrihpc.node.optim import DecayRestarts
from mrihpc.paths import RunPaths, read_jsonl
from mrihpc.specfile import load_point_spec
from mrihpc.workloads.sinogram.data import crop, resolve_layout, wrap_pad
from mrihpc.workloads.sinogram.synth import generate

SHAPE = [2, 8, 50, 64]


def _epochs(run: RunPaths, point: int = 0) -> list[dict]:
    """The point's epoch records, in order."""
    return [r for r in read_jsonl(run.point(point).metrics) if r.get("kind") == "epoch"]


def _best(run: RunPaths, point: int = 0) -> dict:
    """The epoch record of best.pt, the checkpoint ``predict`` uses."""
    return [r for r in _epochs(run, point) if r.get("best")][-1]


def test_seed_unet_has_its_used_parameters_and_the_seeds_registered_count():
    ours = sum(p.numel() for p in DenoiseUNet(in_channels=5, width=64, norm="batch").parameters())
    assert ours == 7_328_641
    # the seed also registers block 1's stride-2 conv (5 x 5 x 3 x 3, never called without
    # downsampling) and norms it never calls: bn1-3 of both up blocks, last_bn (64), last_bn2 (1)
    unused = 5 * 5 * 3 * 3 + 2 * (3 * 128 + 3 * 64 + 64 + 1)
    assert ours + unused == 7_330_148
    out = DenoiseUNet(width=8)(torch.rand(2, 5, 52, 64))
    assert out.shape == (2, 1, 52, 64) and (out >= 0).all()  # Softplus: non-negative counts
    with pytest.raises(ValueError, match="multiples of 4"):
        DenoiseUNet(width=8)(torch.rand(1, 5, 50, 64))


def test_residual_unet_starts_as_the_identity_on_the_centre_slice_and_learns_a_correction():
    torch.manual_seed(0)
    net = DenoiseUNet(width=8, residual=True, out_activation="none")
    x = torch.rand(2, 5, 52, 64)
    assert torch.equal(net(x), x[:, 2:3])
    loss = (net(x) - 0.5 * x[:, 2:3]).abs().mean()
    loss.backward()
    assert net.head[-1].weight.grad.abs().sum() > 0  # the zeroed conv still gets gradient
    plain = DenoiseUNet(width=8)
    assert sum(p.numel() for p in net.parameters()) == sum(p.numel() for p in plain.parameters())


@pytest.mark.parametrize(
    "size,multiple", [((50, 64), 4), ((50, 520), 16), ((50, 520), 64), ((13, 7), 4)]
)
def test_wrap_pad_then_crop_is_exact(size, multiple):
    x = np.random.default_rng(0).random((3, *size)).astype(np.float32)
    padded = wrap_pad(x, multiple)
    assert padded.shape[-2] % multiple == 0 == padded.shape[-1] % multiple
    assert np.array_equal(crop(padded, size, multiple), x)
    assert np.array_equal(crop(torch.from_numpy(padded), size, multiple).numpy(), x)
    top = (padded.shape[-2] - size[0]) // 2
    if top:  # the rows above are the last rows of the sinogram (wrap), not a reflection
        assert np.array_equal(
            padded[:, :top, (padded.shape[-1] - size[1]) // 2 :][:, :, : size[1]], x[:, -top:]
        )


@pytest.mark.parametrize("win", [9, 11])
def test_ms_ssim_equals_pytorch_msssim(win):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 2, 161, 200, generator=g, dtype=torch.float64)
    y = (x + 0.1 * torch.randn(x.shape, generator=g, dtype=torch.float64)).clamp(0, 1)
    ref = pytorch_msssim.ms_ssim(x, y, data_range=1.0, size_average=False, win_size=win)
    assert (ms_ssim(x, y, 1.0, win) - ref).abs().max() < 1e-4
    # the reduced-scale path: 3 scales with the first three weights renormalised
    weights = [w / sum(WEIGHTS[:3]) for w in WEIGHTS[:3]]
    ref3 = pytorch_msssim.ms_ssim(
        x, y, data_range=1.0, size_average=False, win_size=win, weights=weights
    )
    assert (ms_ssim(x, y, 1.0, win, scales=3) - ref3).abs().max() < 1e-4


def test_ms_ssim_uses_fewer_scales_on_a_sinogram_and_has_finite_gradients():
    x = torch.rand(2, 1, 52, 64, requires_grad=True)
    with pytest.raises(AssertionError):  # what the library does with a 52-pixel side
        pytorch_msssim.ms_ssim(x, x, data_range=1.0, win_size=9)
    loss = 1 - ms_ssim(x, torch.rand(2, 1, 52, 64)).mean()
    loss.backward()
    assert torch.isfinite(x.grad).all() and 0 < float(loss.detach()) <= 1
    assert float(ms_ssim(x.detach(), x.detach()).min()) == pytest.approx(1.0, abs=1e-6)


def test_decay_restarts_restart_at_L_2L_3L_plus_I_and_resume_exactly():
    opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    s = DecayRestarts(opt, period=3, increment=1, decay=0.5, unit=1)
    lrs, restarts = [], []
    for t in range(16):
        lrs.append(opt.param_groups[0]["lr"])
        restarts += [t] if s.restarted else []
        opt.step()
        s.step()
        if t == 7:
            saved = s.state_dict()
    assert restarts == [3, 6, 10, 15]  # L, 2L, 3L + I, 4L + 3I
    assert lrs[:4] == [1.0, 0.5, 0.25, 1.0] and lrs[9] == 0.125
    opt2 = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    s2 = DecayRestarts(opt2, period=3, increment=1, decay=0.5, unit=1)
    s2.load_state_dict(saved)
    s2.step()
    assert opt2.param_groups[0]["lr"] == lrs[9]


def _raw_layout(tmp_path):
    src = generate(
        tmp_path / "src",
        train_files=2,
        val_files=1,
        test_files=1,
        tof=2,
        slices=8,
        angles=50,
        bins=64,
    )
    spec = {
        "name": "sino",
        "task": "sinogram",
        "data": {
            "train_dir": str(src / "train"),
            "val_dir": str(src / "val"),
            "shape": SHAPE,
            "mode": "inpaint",
            "mask_file": str(src / "mask.npy"),
        },
    }
    return src, spec


def test_a_file_of_the_wrong_size_and_a_bad_mask_are_refused_naming_them(
    tmp_path, write_spec, capsys
):
    src, spec = _raw_layout(tmp_path)
    path = write_spec(yaml.safe_dump(spec))
    assert main(["validate", str(path), "--check-paths"]) == 0
    bad = src / "train" / "case001_clean.raw"
    bad.write_bytes(bad.read_bytes()[:-100])
    np.save(src / "mask.npy", np.ones((50, 60), np.uint8))
    capsys.readouterr()
    assert main(["validate", str(path), "--check-paths"]) != 0
    err = capsys.readouterr().err
    assert (
        f"data.train_dir: {bad}: 102300 bytes; data.shape [2, 8, 50, 64] of uint16 needs "
        "102400 bytes" in err
    )
    assert "mask.npy: mask shape [50, 60]; expected [50, 64] or [8, 50, 64]" in err
    (src / "val" / "case000_noisy.raw").unlink()
    capsys.readouterr()
    assert (
        main(
            [
                "validate",
                str(
                    write_spec(
                        yaml.safe_dump(
                            {**spec, "data": {**spec["data"], "mode": "denoise", "mask_file": None}}
                        )
                    )
                ),
                "--check-paths",
            ]
        )
        != 0
    )
    assert (
        "case000_clean.raw: no noisy partner case000_noisy.raw (data.noisy_suffix) for mode denoise"
        in capsys.readouterr().err
    )


def test_denoising_demo_beats_the_noisy_input_and_predicts_in_the_input_layout(tmp_path, capsys):
    runs = tmp_path / "runs"
    assert main(["submit", str(REPO / "jobs" / "sino_denoise_demo.yaml"), "--runs", str(runs)]) == 0
    run = RunPaths(next((runs / "sino-denoise-demo").iterdir()))
    # best.pt (what predict uses) AND the final model: each of the last three epochs beats the
    # noisy input by 3 dB. Measured on the 2-core EPYC with oneDNN capped at SSE41 / AVX2 /
    # AVX512 and 1 or 2 threads: last three epochs 30.1-33.6 dB against the input's 24.91
    test = [
        r for r in read_jsonl(run.point(0).metrics) if r.get("kind") == "test"
    ]  # the test folder, once
    assert len(test) == 1 and test[0]["test_psnr"] >= test[0]["test_base_psnr"] + 3.0, test
    assert "test_last_psnr" in test[0]
    for record in [_best(run), *_epochs(run)[-3:]]:
        assert record["val_psnr"] >= record["val_base_psnr"] + 3.0, record
        assert record["val_ssim"] >= record["val_base_ssim"] + 0.05, record
        assert record["val_nmse"] <= 0.5 * record["val_base_nmse"], record
    # decay_restarts (L = 4 epochs): Adam's state was cleared at epoch 4, so it counts 2 epochs of
    # steps
    state = load(run.point(0).checkpoints / "last.pt")
    steps = [int(s["step"]) for s in state["optimizers"]["main"]["state"].values()]
    assert set(steps) == {2 * 128 // 8}
    assert (run.point(0).memory).stat().st_size > 0  # the seed's memory profile

    assert main(["predict", str(run.root), "--point", "0", "--split", "test"]) == 0
    out = run.point(0).predictions / "test"
    summary = json.loads((out / "predictions.json").read_text())
    assert summary["shape"] == SHAPE and summary["dtype"] == "uint16"
    pred = np.fromfile(out / "case000_pred.raw", dtype=np.uint16)
    assert pred.size == np.prod(SHAPE)
    pred = pred.reshape(SHAPE).astype(np.float64)
    inputs = summary["files"][0]["input"]
    clean = (
        np.fromfile(inputs.replace("_noisy.raw", "_clean.raw"), dtype=np.uint16)
        .reshape(SHAPE)
        .astype(np.float64)
    )
    noisy = np.fromfile(inputs, dtype=np.uint16).reshape(SHAPE).astype(np.float64)
    assert ((pred - clean) ** 2).mean() < 0.6 * (
        (noisy - clean) ** 2
    ).mean()  # in counts, read back

    # a new acquisition: a test folder holding a noisy file without a clean partner is predicted,
    # listed without scores; the same counts as its paired twin give the same prediction
    new = tmp_path / "new"
    new.mkdir()
    for name in ("case000_clean.raw", "case000_noisy.raw"):
        (new / name).write_bytes(Path(inputs).with_name(name).read_bytes())
    (new / "scan900_noisy.raw").write_bytes(Path(inputs).read_bytes())
    config = yaml.safe_load(run.point(0).config.read_text())
    layout = resolve_layout(load_point_spec(run.point(0)).data)
    config["data"] = {k: v for k, v in config["data"].items() if k != "synthetic"} | {
        "train_dir": str(layout.dirs["train"]),
        "val_dir": str(layout.dirs["val"]),
        "test_dir": str(new),
        "shape": SHAPE,
        "dtype": "uint16",
    }
    run.point(0).config.write_text(yaml.safe_dump(config))
    assert main(["predict", str(run.root), "--point", "0", "--split", "test"]) == 0
    files = {
        f["prediction"]: f for f in json.loads((out / "predictions.json").read_text())["files"]
    }
    assert (
        files["scan900_pred.raw"]["scores"] == {}
        and files["case000_pred.raw"]["scores"]["psnr"] > 0
    )
    assert (out / "scan900_pred.raw").read_bytes() == (out / "case000_pred.raw").read_bytes()


def test_inpainting_demo_fills_the_bad_blocks_and_scores_only_files_with_truth_there(tmp_path):
    runs = tmp_path / "runs"
    assert main(["submit", str(REPO / "jobs" / "sino_inpaint_demo.yaml"), "--runs", str(runs)]) == 0
    run = RunPaths(next((runs / "sino-inpaint-demo").iterdir()))
    best = _best(run)
    assert best["val_psnr_hole"] >= best["val_base_psnr_hole"] + 10.0, best
    assert best["val_nmse_hole"] <= 0.2 * best["val_base_nmse_hole"], best
    assert best["val_ssim_hole"] >= best["val_base_ssim_hole"] + 0.2, best

    # predictions score the filled-in blocks too; a file acquired with the dead blocks (its own
    # values there are zero) has no truth to score the filling against, so it is listed unscored
    layout = resolve_layout(load_point_spec(run.point(0)).data)
    clean_file = next(layout.dirs["test"].glob("*_clean.raw"))
    new = tmp_path / "new"
    new.mkdir()
    (new / "case000_clean.raw").write_bytes(clean_file.read_bytes())
    clean = np.fromfile(clean_file, dtype=np.uint16).reshape(SHAPE)
    mask = np.broadcast_to(np.load(layout.mask_file), SHAPE[1:])  # 1 measured, 0 in the dead blocks
    assert 0 < (mask == 0).sum() < mask.size
    (clean * mask[None].astype(np.uint16)).astype(np.uint16).tofile(new / "scan900_clean.raw")
    config = yaml.safe_load(run.point(0).config.read_text())
    config["data"] = {k: v for k, v in config["data"].items() if k != "synthetic"} | {
        "train_dir": str(layout.dirs["train"]),
        "val_dir": str(layout.dirs["val"]),
        "test_dir": str(new),
        "mask_file": str(layout.mask_file),
        "shape": SHAPE,
        "dtype": "uint16",
    }
    run.point(0).config.write_text(yaml.safe_dump(config))
    assert main(["predict", str(run.root), "--point", "0", "--split", "test"]) == 0
    out = run.point(0).predictions / "test"
    files = {
        f["prediction"]: f for f in json.loads((out / "predictions.json").read_text())["files"]
    }
    paired = files["case000_pred.raw"]
    assert paired["scores"]["psnr_hole"] >= paired["input_scores"]["psnr_hole"] + 10.0, paired
    assert "unscored" not in paired
    gapped = files["scan900_pred.raw"]
    assert (
        gapped["scores"] == {}
        and gapped["input_scores"] == {}
        and "bad blocks are all zero" in gapped["unscored"]
    )
    # the inputs were the same (masking the gapped file again changes nothing), so the predictions
    # are
    assert (out / "scan900_pred.raw").read_bytes() == (out / "case000_pred.raw").read_bytes()


def test_the_dgx_spec_runs_in_docker_with_its_data_folders_and_mask_mounted(tmp_path):
    from mrihpc.login import container
    from mrihpc.specfile import load_spec

    spec, _ = load_spec(REPO / "jobs" / "sino_inpaint.yaml")
    assert (
        spec.container.runtime == "docker"
        and spec.cluster.gpus_per_node == 1
        and spec.cluster.mail_type == "END,FAIL"
    )
    mounted = {host for host, _, _ in container.mounts(spec, tmp_path)}
    assert {
        "/badblock/data/DataTOF_Train",
        "/badblock/data/DataTOF_Val",
        "/badblock/data/DataTOF_test",
        "/badblock/data/mask.npy",
    } <= mounted
    assert (
        spec.monitor.visdom is not None and spec.monitor.memory is not None
    )  # as the seed watched it
