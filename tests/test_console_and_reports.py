"""Console output (bar on a terminal, clean lines in logs), results --plot, profile, tunnel
lines."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from conftest import TINY, merge
from mrihpc.login.cli import main
from mrihpc.node.monitors.console import Console
from mrihpc.paths import RunPaths, atomic_write_json, read_json, read_jsonl
from mrihpc.progress import SweepProgress, last_record, point_fraction


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _feed(console, epochs=2, batches=4):
    step = 0
    for epoch in range(epochs):
        for batch in range(1, batches + 1):
            step += 1
            console.log(
                {
                    "kind": "step",
                    "epoch": epoch,
                    "batch": batch,
                    "batches": batches,
                    "loss": 0.5,
                    "lr": 1e-3,
                },
                step,
            )
        console.log(
            {"kind": "epoch", "epoch": epoch, "train_loss": 0.5, "lr": 1e-3, "val_ssim": 0.8}, step
        )


def test_console_draws_a_bar_on_a_terminal_and_clean_lines_in_a_log():
    log, tty = io.StringIO(), Terminal()
    _feed(Console("knee", 2, "ssim", log))
    _feed(Console("knee", 2, "ssim", tty))
    assert "\r" not in log.getvalue()
    lines = log.getvalue().splitlines()
    assert (
        len(lines) == 2
        and lines[0].startswith("[knee] epoch 1/2 step 4 ")
        and "val_ssim=0.8" in lines[0]
    )
    assert "eta" in lines[0]
    drawn = tty.getvalue().split("\r")
    assert any("|############------------|  50%" in d for d in drawn)  # end of epoch 1 of 2
    assert any("|######------------------|  25%" in d for d in drawn)


def test_point_fraction_and_sweep_progress(tmp_path):
    assert point_fraction({"kind": "step", "epoch": 1, "batch": 2, "batches": 4}, 4) == 1.5 / 4
    assert point_fraction({"kind": "epoch", "epoch": 3}, 4) == 1.0
    files = [tmp_path / "a.jsonl", tmp_path / "b.jsonl"]
    files[0].write_text(
        json.dumps({"kind": "epoch", "epoch": 1}) + "\n" + '{"kind": "st'
    )  # torn last line
    assert last_record(files[0]) == {"kind": "epoch", "epoch": 1}
    tty = Terminal()
    progress = SweepProgress(files, 4, tty)
    progress.update(finished=0)
    assert "0/2 points finished |######------------------|  25%" in tty.getvalue()
    pipe = io.StringIO()
    SweepProgress(files, 4, pipe).update(finished=0)
    assert pipe.getvalue() == ""


def test_results_plot_draws_every_point(tmp_path, write_spec, capsys):
    spec = merge(TINY, sweep={"grid": {"optim.lr": [2e-3, 1e-3]}})
    assert main(["submit", str(write_spec(spec)), "--runs", str(tmp_path / "runs")]) == 0
    run = RunPaths(next((tmp_path / "runs" / "tiny").iterdir()))
    from mrihpc.login.plots import plot_curves

    manifest = read_json(run.manifest)
    drawn = plot_curves(run, manifest, "ssim", tmp_path / "curves.png")
    for p in manifest["points"]:
        records = read_jsonl(run.point(p["index"]).metrics)
        assert drawn["training loss"][f"{p['index']}: {p['name']}"] == sum(
            r["kind"] == "step" for r in records
        )
        assert (
            drawn["validation ssim"][f"{p['index']}: {p['name']}"]
            == sum(r["kind"] == "epoch" for r in records)
            == 2
        )
    capsys.readouterr()
    assert main(["results", str(run.root), "--plot", str(tmp_path / "cli.png")]) == 0
    assert "curves of 2 points" in capsys.readouterr().out
    img = np.asarray(Image.open(tmp_path / "cli.png").convert("L"))
    assert img.shape == (450, 1800) and (img < 128).mean() > 0.01  # axes, text and curves drawn


def test_profile_reports_peak_and_line_profile(write_spec, capsys):
    assert main(["profile", str(write_spec(TINY)), "--steps", "3"]) == 0
    out = capsys.readouterr().out
    assert "def train_step" in out and "Increment" in out and "ctx.step(loss)" in out
    assert "3 steps on cpu" in out and "host RSS peak" in out
    # with the knee transform on the device the batches go through the task's on_device, as in
    # training
    device = merge(TINY, data={**TINY["data"], "transform_on": "device"})
    assert main(["profile", str(write_spec(device, "device.yaml")), "--steps", "2"]) == 0
    assert "2 steps on cpu" in capsys.readouterr().out


def test_profile_with_fp16_steps_an_enabled_grad_scaler(write_spec, capsys, monkeypatch):
    """fp16 enables the GradScaler only on a GPU; here one is enabled on the CPU (the one stand-in:
    no GPU), as the GPU would have it. Profile stepped without scaler.update() and failed at its
    second step ("step() has already been called since the last update()")."""
    import torch

    real, made = torch.amp.GradScaler, []

    def enabled(device, enabled=True, **kw):
        made.append(real(device, enabled=True, **kw))
        return made[-1]

    monkeypatch.setattr(torch.amp, "GradScaler", enabled)
    fp16 = merge(TINY, train={**TINY["train"], "precision": "fp16"})
    assert main(["profile", str(write_spec(fp16)), "--steps", "3"]) == 0
    assert "3 steps on cpu" in capsys.readouterr().out
    assert (
        len(made) == 1 and made[0].is_enabled() and made[0]._growth_tracker is not None
    )  # it stepped and updated


@pytest.mark.parametrize("post", [None, True])
def test_tunnel_is_one_line_to_the_login_node_or_to_the_nodes_of_points_that_post(
    tmp_path, capsys, post
):
    """Status files as rank 0 writes them on its node (the Slurm runs themselves are in
    test_slurm and test_follower). Under Slurm the points do not post by default: the login
    node's follower brings their plots, so one forward to the login node shows them all."""
    run = RunPaths(tmp_path / "runs" / "tiny" / "20260101-000000-000")
    spec = merge(TINY, monitor={"visdom": {"port": 8099, "post": post}})
    for i, (state, host) in enumerate(
        [("running", "node7"), ("done", "node8"), ("running", "node9")]
    ):
        run.point(i).root.mkdir(parents=True)
        import yaml

        run.point(i).config.write_text(yaml.safe_dump(spec))
        atomic_write_json(run.point(i).status, {"state": state, "host": host})
    run.spec.write_text(yaml.safe_dump(spec))
    atomic_write_json(
        run.manifest,
        {
            "name": "tiny",
            "sweep_id": run.root.name,
            "executor": "slurm",
            "points": [{"index": i, "name": f"p{i}"} for i in range(3)],
            "submissions": [],
        },
    )
    assert main(["tunnel", str(run.root), "--login", "dgx-login", "--local-port", "18099"]) == 0
    out = capsys.readouterr().out.splitlines()
    if post is None:
        assert [line for line in out if line.startswith("ssh")] == [
            f"ssh -N -L 18099:localhost:8099 {_user()}@dgx-login"
        ]
    else:  # posting from the nodes to a server on each node: a forward per node
        assert [line for line in out if line.startswith("ssh")] == [
            f"ssh -N -L 18099:localhost:8099 -J {_user()}@dgx-login {_user()}@node7",
            f"ssh -N -L 18099:localhost:8099 -J {_user()}@dgx-login {_user()}@node9",
        ]
    assert f"then open http://localhost:18099/env/tiny_{run.root.name}" in out


def test_tunnel_of_a_run_whose_first_point_has_not_started(tmp_path, capsys):
    """No config.yaml yet: the server comes from the run's spec and point 0's overrides."""
    import yaml

    run = RunPaths(tmp_path / "runs" / "tiny" / "20260101-000000-000")
    run.root.mkdir(parents=True)
    run.spec.write_text(yaml.safe_dump(merge(TINY, monitor={"visdom": {"port": 8099}})))
    atomic_write_json(
        run.manifest,
        {
            "name": "tiny",
            "sweep_id": run.root.name,
            "executor": "slurm",
            "submissions": [],
            "points": [
                {"index": 0, "name": "p0", "seed": 0, "overrides": {"monitor.visdom.port": 8123}}
            ],
        },
    )
    assert not run.point(0).config.exists()
    assert main(["tunnel", str(run.root), "--login", "dgx-login"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line for line in out if line.startswith("ssh")] == [
        f"ssh -N -L 8123:localhost:8123 {_user()}@dgx-login"
    ]
    run.point(0).root.mkdir(parents=True)
    run.point(0).config.write_text("name: tiny\nmonitor: {visdom: [\n")  # a user's edit gone wrong
    assert main(["tunnel", str(run.root)]) == 2
    assert f"{run.point(0).config}: not valid YAML" in capsys.readouterr().err
    assert main(["status", str(run.root)]) == 0  # status still answers, from the manifest


def _user() -> str:
    import getpass

    return getpass.getuser()


def test_parameter_counts_in_validate_the_point_log_and_status(tmp_path, write_spec, capsys):
    """Every seed printed its parameter count: validate --params (the seeds' figures for the
    shipped recipes), the point's log, status.json and status's total."""
    from conftest import REPO
    from mrihpc.models.unet import build_unet
    from mrihpc.specfile import validate_dict

    specs = [
        str(REPO / "jobs" / f) for f in ("ixi_pix2pix.yaml", "acdc_unet.yaml", "knee_gan.yaml")
    ]
    assert main(["validate", *specs, "--params"]) == 0
    out = capsys.readouterr().out
    assert "point 0 (mode=generator,loss=l1): G 13,611,073" in out  # seed 002's generator
    assert "model 69,822,340" in out  # seed 004's U-Net
    assert "G 13,394,242 + D 42,240 = 13,436,482" in out  # seed 000's generator and discriminator
    spec = merge(TINY, train={**TINY["train"], "epochs": 1})
    expected = sum(p.numel() for p in build_unet(validate_dict(spec, "t").model).parameters())
    assert main(["submit", str(write_spec(spec)), "--runs", str(tmp_path / "runs")]) == 0
    run = RunPaths(next((tmp_path / "runs" / "tiny").iterdir()))
    assert read_json(run.point(0).status)["params"] == {"model": expected}
    log = "".join(p.read_text() for p in run.logs.glob("*_0_log.out"))
    assert f"[mrihpc] parameters: model {expected:,}" in log, log
    capsys.readouterr()
    assert main(["status", str(run.root)]) == 0
    header, row = capsys.readouterr().out.splitlines()[:2]
    assert "params" in header.split() and f"{expected:,}" in row.split()  # under 0.1M: every digit
