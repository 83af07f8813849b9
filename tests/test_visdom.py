"""Live plots against a real Visdom server (started by the tests, bound to 127.0.0.1, offline
assets): windows read back through Visdom's API, a server killed mid-run then replayed, a
hung server, a headless Chromium screenshot of the env page."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time

import numpy as np
import pytest
from PIL import Image
from visdom import Visdom

from conftest import TINY, merge
from mrihpc import visdom_credentials as credentials
from mrihpc.login import checks, launch
from mrihpc.login.cli import main
from mrihpc.login.live import assets, server
from mrihpc.node.runner import run_point
from mrihpc.paths import read_json, read_jsonl
from mrihpc.visdom_transport import read_log

VISDOM_TINY = merge(
    TINY,
    monitor={
        "visdom": {"port": 0, "timeout_s": 1.0, "backoff_s": 30.0, "flush_every": 2},
        "memory": {"interval_s": 0.2},
    },
    sweep={"grid": {"optim.lr": [2e-3, 1e-3]}},
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def visdom_server(tmp_path):
    """A real visdom server of ours on a free port, login off (a private machine: these tests
    look at plotting; test_follower.py runs the login); stopped afterwards."""
    assert not assets.missing(), "visdom page assets missing: tools/setup.sh --test installs them"
    port = free_port()
    state = server.start(port, tmp_path / "envs", login=False)
    yield state
    if server.running(port):
        server.stop(port)


def _spec(port: int, **changes) -> dict:
    spec = merge(VISDOM_TINY, **changes)
    spec["monitor"] = {**spec["monitor"], "visdom": {**spec["monitor"]["visdom"], "port": port}}
    return spec


def _run_dir(tmp_path, write_spec, spec: dict):
    path = write_spec(spec)
    prepared, raw, points, _ = checks.prepare(str(path), [])
    checks.prepare_data([s for _, s in points])
    return launch.write_run_directory(tmp_path / "runs", prepared, raw, str(path), points, "debug")


def _windows(port: int, env: str, login: bool = False) -> dict:
    creds = credentials.load() if login else None  # a server with Visdom's login on wants them
    v = Visdom(
        port=port,
        use_incoming_socket=False,
        raise_exceptions=True,
        username=creds["username"] if creds else None,
        password=creds["password"] if creds else None,
    )
    return json.loads(v.get_window_data(env=env))


def _traces(window: dict) -> dict:
    return {t["name"]: (t["x"], t["y"]) for t in window["content"]["data"]}


def _content(windows: dict) -> dict:
    """What a window shows: its traces (name, x, y) or its text / image (not server-made ids)."""
    return {
        win: [(t.get("name"), t["x"], t["y"]) for t in w["content"]["data"]]
        if isinstance(w["content"], dict) and "data" in w["content"]
        else w["content"]
        for win, w in windows.items()
    }


def _check_point_windows(windows: dict, run, index: int, name: str) -> None:
    records = read_jsonl(run.point(index).metrics)
    steps = [r for r in records if r["kind"] == "step"]
    epochs = [r for r in records if r["kind"] == "epoch"]
    p = f"p{index}_"
    assert {
        p + w
        for w in (
            "config",
            "images",
            "loss",
            "lr",
            "memory",
            "val_ssim",
            "val_psnr",
            "val_nmse",
            "val_loss",
        )
    } <= set(windows)
    x, y = _traces(windows[p + "loss"])["loss"]
    assert x == [r["step"] for r in steps] and y == pytest.approx([r["loss"] for r in steps])
    assert _traces(windows[p + "lr"])["lr"][1] == pytest.approx([r["lr"] for r in steps])
    ssim = _traces(windows[p + "val_ssim"])
    assert ssim["model"][1] == pytest.approx([r["val_ssim"] for r in epochs])
    assert ssim["zero-filled"][1] == pytest.approx([r["val_zf_ssim"] for r in epochs])
    assert _traces(windows[p + "memory_peaks"])["mem_host_peak_mib"][1] == pytest.approx(
        [r["mem_host_peak_mib"] for r in epochs]
    )
    samples = [
        line.split()
        for line in run.point(index).memory.read_text().splitlines()
        if line.startswith("MEM ")
    ]
    x, y = _traces(windows[p + "memory"])["host_rss_mib"]  # every sample of memory.dat, over time
    assert len(x) >= len(epochs) and x == sorted(x) and x[0] == 0.0
    assert y == pytest.approx([float(s[1]) for s in samples][: len(y)])
    assert windows[p + "images"]["content"]["src"].startswith("data:image/png;base64,")
    assert name in windows[p + "config"]["content"]
    compare = _traces(windows["compare_ssim"])
    assert compare[name] == (
        [float(r["epoch"] + 1) for r in epochs],
        pytest.approx([r["val_ssim"] for r in epochs]),
    )


def _pixels(png) -> tuple[float, int]:
    """(fraction of white pixels: the window panes on visdom's blue page, pixels of plotly's
    orange second trace: drawn plots)."""
    rgb = np.asarray(Image.open(png).convert("RGB")).astype(int)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    white = ((r > 240) & (g > 240) & (b > 240)).mean()
    orange = int(((r > 220) & (g > 100) & (g < 160) & (b < 60)).sum())
    return float(white), orange


def _screenshot(url: str, png) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "chromium is not installed: tools/setup.sh --test installs it"
    subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--window-size=1600,1400",
            "--virtual-time-budget=20000",
            f"--screenshot={png}",
            url,
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )


def test_local_sweep_fills_the_env_and_chromium_renders_it(
    tmp_path, write_spec, visdom_server, capsys
):
    port = visdom_server["port"]
    spec_path = write_spec(_spec(port))
    assert main(["submit", str(spec_path), "--runs", str(tmp_path / "runs")]) == 0
    run = next((tmp_path / "runs" / "tiny").iterdir())
    from mrihpc.paths import RunPaths

    run = RunPaths(run)
    env = f"tiny_{run.root.name}"
    windows = _windows(port, env)
    manifest = read_json(run.manifest)
    for p in manifest["points"]:
        _check_point_windows(windows, run, p["index"], p["name"])
        assert read_json(run.point(p["index"]).status)["visdom"]["failed"] == 0
    assert set(_traces(windows["compare_ssim"])) == {p["name"] for p in manifest["points"]}
    assert (tmp_path / "envs" / f"{env}.json").is_file()  # saved each epoch

    # the page renders offline, plots included
    png, empty = run.root / "visdom.png", tmp_path / "empty.png"
    _screenshot(f"http://127.0.0.1:{port}/env/{env}", png)
    _screenshot(f"http://127.0.0.1:{port}/env/nothing-here", empty)
    assert Image.open(png).size == (1600, 1400)
    white, orange = _pixels(png)
    assert white > 0.3 and orange > 500, (white, orange)
    assert _pixels(empty)[0] < 0.05 and _pixels(empty)[1] == 0

    # the tunnel line for a server on this (login) node
    capsys.readouterr()
    assert main(["tunnel", str(run.root), "--login", "login.example.org"]) == 0
    out = capsys.readouterr().out
    assert f"ssh -N -L {port}:localhost:{port} " in out and "@login.example.org" in out
    assert f"http://localhost:{port}/env/{env}" in out


def test_server_killed_mid_run_then_replay_restores_every_window(
    tmp_path, write_spec, visdom_server
):
    port = visdom_server["port"]
    spec = _spec(port, train={**TINY["train"], "epochs": 3}, sweep={})
    run = _run_dir(tmp_path, write_spec, spec)
    env = f"tiny_{run.root.name}"

    def kill_after_first_epoch():
        while not any(r["kind"] == "epoch" for r in read_jsonl(run.point(0).metrics)):
            time.sleep(0.05)
        os.kill(visdom_server["pid"], signal.SIGKILL)

    killer = threading.Thread(target=kill_after_first_epoch)
    killer.start()
    run_point(run.root, 0)
    killer.join()
    status = read_json(run.point(0).status)
    assert status["state"] == "done" and status["visdom"]["failed"] >= 1
    assert len([r for r in read_jsonl(run.point(0).metrics) if r["kind"] == "epoch"]) == 3

    fresh = server.start(port, tmp_path / "envs-2", login=False)
    try:
        assert main(["visdom", "replay", str(run.root), "--port", str(port)]) == 0
        first = _windows(port, env)
        _check_point_windows(first, run, 0, read_json(run.manifest)["points"][0]["name"])
        assert main(["visdom", "replay", str(run.root), "--port", str(port)]) == 0  # no duplicates
        assert _content(_windows(port, env)) == _content(first)
    finally:
        server.stop(fresh["port"])


def test_hung_server_is_given_up_on_and_nothing_is_lost(tmp_path, write_spec, visdom_server):
    """SIGSTOP: connections are accepted, nothing answers. The transport waits one timeout, then
    backs off; training never waits on it (the time this costs is measured by
    benchmarks/visdom_hung_server.py, not asserted here)."""
    port = visdom_server["port"]
    run = _run_dir(tmp_path, write_spec, _spec(port, sweep={}))
    os.kill(visdom_server["pid"], signal.SIGSTOP)
    try:
        run_point(run.root, 0)
    finally:
        os.kill(visdom_server["pid"], signal.SIGCONT)
    status = read_json(run.point(0).status)
    assert status["state"] == "done"
    stats = status["visdom"]
    assert stats["sent"] == 0 and 1 <= stats["failed"] <= 2 and stats["skipped"] > 10
    assert "Timeout" in stats["last_error"]
    wins = {msg["win"] for _, msg in read_log(run.point(0).visdom_log)}
    assert {"p0_loss", "p0_lr", "p0_val_ssim", "p0_images", "p0_config", "compare_ssim"} <= wins


def test_server_start_stop_binds_localhost_only(tmp_path, visdom_server, capsys):
    port = visdom_server["port"]
    with pytest.raises(server.ServerError, match="already runs"):
        server.start(port)
    listening = subprocess.run(
        ["ss", "-Hltn", f"sport = :{port}"], capture_output=True, text=True
    ).stdout
    local_addresses = [line.split()[3] for line in listening.splitlines()]
    assert local_addresses == [f"127.0.0.1:{port}"]
    assert main(["visdom", "stop", "--port", str(port)]) == 0
    assert not server.answers(port)
    assert main(["visdom", "stop", "--port", str(port)]) == 2
    assert "no visdom server started by mrihpc" in capsys.readouterr().err


def test_a_sample_grid_of_another_size_gets_its_own_window(tmp_path, visdom_server):
    """Synthesis shows input | prediction | target | error (64 x 64) and a 3 x 5 sample grid: the
    panels share one window, the grid gets its own (they cannot be stacked into one)."""
    import torch

    from mrihpc.node.monitors.visdom import VisdomMonitor
    from mrihpc.paths import PointPaths

    port = visdom_server["port"]
    paths = PointPaths(tmp_path / "p0")
    paths.root.mkdir()
    monitor = VisdomMonitor(paths, "grid_env", 0, "p0", "ssim", "{}", f"http://127.0.0.1:{port}")
    images = {k: torch.rand(64, 64) for k in ("input", "prediction", "target", "error")} | {
        "samples": torch.rand(192, 320)
    }
    monitor.log({"kind": "images", "epoch": 0, "images": images}, 1)
    monitor.close()
    windows = _windows(port, "grid_env")
    assert {"p0_images", "p0_image_samples"} <= set(windows)
    assert windows["p0_image_samples"]["content"]["src"].startswith("data:image/png;base64,")
