"""The login node's Visdom follower: every point of a Slurm sweep, none of which can reach a server,
shows up live in the login node's server through its visdom.log; the follower killed (SIGKILL)
and restarted mid-run, a torn last line, and a restarted server all end with exactly the records
logged, checked through Visdom's own API; Visdom's login refuses a request without credentials;
Chromium renders the env (screenshot kept, windows counted in the DOM)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from pathlib import Path

import pytest
import requests

from conftest import TINY, merge
from mrihpc.login.cli import main
from mrihpc import visdom_credentials as credentials
from mrihpc.login.live import follower, server
from mrihpc.visdom_transport import read_log
from mrihpc.node.monitors.visdom import VisdomMonitor
from mrihpc.paths import RunPaths, read_json
from test_slurm import SLURM_TINY, submit, wait_done
from test_visdom import _check_point_windows, _windows, free_port

ARTIFACTS = Path(
    os.environ.get("MRIHPC_TEST_ARTIFACTS", Path(__file__).parent.parent / "test-artifacts")
)


@pytest.fixture
def login_server(tmp_path):
    """A real visdom server with Visdom's login on (the default), on a free port; stopped
    afterwards."""
    port = free_port()
    state = server.start(port, tmp_path / "envs")
    yield state
    follower.stop(port)
    if server.running(port):
        server.stop(port)


def _fake_run(root: Path, points: int = 1) -> RunPaths:
    """A run folder as submit writes it, for a Slurm sweep whose points do not post."""
    run = RunPaths(root / "exp" / "20261122-000000-000")
    for i in range(points):
        run.point(i).root.mkdir(parents=True)
        run.point(i).config.write_text(
            "name: exp\ntask: reconstruction\nmonitor: {visdom: {port: 1}}\n"
        )
    run.manifest.write_text(
        json.dumps({"executor": "slurm", "points": [{"index": i} for i in range(points)]})
    )
    return run


def test_a_point_that_posts_itself_is_not_followed_twice(tmp_path):
    """monitor.visdom.post set per point by a sweep (in the manifest's overrides) or by a user's
    edit of a point's config.yaml: the follower skips only those points' logs. A started point's
    config.yaml decides (the node reads it); without one the manifest does, and without an override
    the run's spec and executor."""
    run = _fake_run(tmp_path, points=4)
    (run.root / "spec.yaml").write_text(
        "name: exp\ntask: reconstruction\nmonitor: {visdom: {port: 1}}\n"
    )
    manifest = json.loads(run.manifest.read_text())
    for i in (1, 3):
        manifest["points"][i]["overrides"] = {"monitor.visdom.post": True}
    run.manifest.write_text(json.dumps(manifest))
    posting = "name: exp\ntask: reconstruction\nmonitor: {visdom: {port: 1, post: true}}\n"
    run.point(1).config.write_text(posting)  # as the node writes it, the override applied
    run.point(2).config.write_text(posting)  # a user's edit
    run.point(3).config.unlink()  # a point of an older run
    for i in range(4):
        run.point(i).visdom_log.write_text("")
    assert follower.posting_points(run.root) == {
        "1",
        "3",
    }  # Slurm: the others leave it to the follower
    watcher = follower.Follower([tmp_path], "http://127.0.0.1:1", tmp_path / "offsets.json")
    assert [f.parent.name for f in watcher.scan()] == ["0"]
    run.manifest.write_text(json.dumps({**manifest, "executor": "local"}))
    assert follower.posting_points(run.root) == {"0", "1", "2", "3"}  # local runs post by default


def _log_steps(monitor: VisdomMonitor, first: int, last: int) -> None:
    for step in range(first, last):
        monitor.log(
            {
                "kind": "step",
                "epoch": 0,
                "batch": step,
                "batches": 100,
                "loss": 1.0 / step,
                "lr": 0.1,
            },
            step,
        )
    monitor._flush_steps()


def _x(port: int, env: str, win: str = "p0_loss") -> list[float]:
    return _windows(port, env, login=True)[win]["content"]["data"][0]["x"]


def test_follower_posts_each_record_once_across_a_torn_line_a_kill_and_a_server_restart(
    tmp_path, login_server
):
    port = login_server["port"]
    run = _fake_run(tmp_path / "runs")
    monitor = VisdomMonitor(
        run.point(0), "exp_env", 0, "p0", "ssim", "{}", "http://127.0.0.1:1", post=False
    )
    _log_steps(monitor, 1, 11)
    offsets = tmp_path / "offsets.json"
    f = follower.Follower(
        [tmp_path / "runs"], f"http://127.0.0.1:{port}", offsets, server.state_file(port)
    )
    log = run.point(0).visdom_log
    assert f.poll() == len(read_log(log)) == 5  # config; loss and lr created, then appended
    assert _x(port, "exp_env") == list(range(1, 11))

    _log_steps(monitor, 11, 16)  # appends a loss line, then an lr line
    whole = log.read_bytes()
    cut = len(whole) - 40
    log.write_bytes(whole[:cut])  # a point in the middle of writing its last line
    assert f.poll() == 1  # the loss append went; the torn lr line waits
    assert _x(port, "exp_env") == list(range(1, 16)) and _x(port, "exp_env", "p0_lr") == list(
        range(1, 11)
    )
    with open(log, "ab") as out:
        out.write(whole[cut:])
    assert f.poll() == 1 and _x(port, "exp_env", "p0_lr") == list(range(1, 16))

    # killed between marking a batch in flight and saving its end: the restarted follower replays
    # the file
    _log_steps(monitor, 16, 21)
    saved = json.loads(offsets.read_text())
    saved["files"][str(log)]["inflight"] = True
    offsets.write_text(json.dumps(saved))
    f = follower.Follower(
        [tmp_path / "runs"], f"http://127.0.0.1:{port}", offsets, server.state_file(port)
    )
    assert f.poll() == len(read_log(log))  # every call again: creations replace, so nothing doubles
    assert _x(port, "exp_env") == list(range(1, 21))

    # a restarted server has only what was saved; the follower sees the new start time and replays
    server.stop(port)
    server.start(port, Path(login_server["env_path"]))
    _log_steps(monitor, 21, 26)
    assert f.poll() == len(read_log(log))
    assert _x(port, "exp_env") == list(range(1, 26)) == _x(port, "exp_env", "p0_lr")
    assert f.poll() == 0  # nothing new: nothing sent


def test_a_request_without_credentials_is_refused(login_server):
    url = login_server["url"]
    creds = credentials.load()
    assert (credentials.credentials_file().stat().st_mode & 0o777) == 0o600
    msg = {
        "eid": "intruder",
        "win": "w",
        "data": [{"content": "hello", "type": "text"}],
        "layout": {},
        "opts": {},
    }
    assert requests.post(f"{url}/events", json=msg, timeout=5).status_code == 400
    assert requests.post(f"{url}/env/intruder", json={}, timeout=5).status_code == 400
    assert "login" in requests.get(f"{url}/", timeout=5).text.lower()  # the page asks for the login
    session = requests.Session()
    assert credentials.login(session, url, creds)
    assert session.post(f"{url}/events", json=msg, timeout=5).ok
    wrong = requests.Session()
    assert not credentials.login(wrong, url, {**creds, "password": "guess"})


@pytest.mark.slurm
def test_a_slurm_sweep_that_reaches_no_server_fills_the_login_node_env(
    slurm_cluster, tmp_path, write_spec, capsys, login_server
):
    port = login_server["port"]
    runs = tmp_path / "runs"
    runs.mkdir()
    # the points get a port where nothing listens and do not post (the default under Slurm)
    spec = merge(
        SLURM_TINY,
        name="followed",
        train={**TINY["train"], "epochs": 6},
        monitor={"visdom": {"port": free_port(), "flush_every": 2}, "memory": {"interval_s": 0.2}},
        sweep={"grid": {"optim.lr": [2e-3, 1e-3]}},
    )
    f = follower.start(port, [runs])
    run = submit(write_spec(spec), runs, capsys)
    env = f"followed_{run.root.name}"
    _wait_for(
        lambda: any(
            p.visdom_log.is_file() and p.visdom_log.stat().st_size > 0
            for p in map(run.point, (0, 1))
        )
    )
    time.sleep(1.0)
    os.kill(f["pid"], signal.SIGKILL)  # mid-run, wherever it is
    time.sleep(1.0)
    follower.start(port, [runs])
    wait_done(run)
    _wait_for(lambda: _caught_up(port, run), timeout=30)
    windows = _windows(port, env, login=True)
    for index in (0, 1):
        assert not (read_json(run.point(index).status).get("visdom") or {}).get(
            "sent"
        )  # nothing came from the nodes
        _check_point_windows(windows, run, index, read_json(run.manifest)["points"][index]["name"])
    status = follower.status(port)
    assert status["files"] == 2 and status["lag_s"] is not None
    assert main(["visdom", "status", "--port", str(port)]) == 0
    out = capsys.readouterr().out
    assert f"following {runs.resolve()}" in out and str(credentials.credentials_file()) in out
    _screenshot_with_login(
        f"http://127.0.0.1:{port}/env/{env}", ARTIFACTS / "follower_env.png", expected=len(windows)
    )


def _wait_for(check, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if check():
            return
        time.sleep(0.2)
    pytest.fail(f"timed out after {timeout}s waiting for {check}")


def _caught_up(port: int, run: RunPaths) -> bool:
    """The follower's saved offsets reach the end of every point's log."""
    try:
        saved = json.loads(follower.state_path(port, "offsets.json").read_text())["files"]
    except (FileNotFoundError, ValueError, KeyError):
        return False
    logs = [run.point(i).visdom_log for i in (0, 1)]
    return all(
        str(p) in saved
        and saved[str(p)]["offset"] == p.stat().st_size
        and not saved[str(p)]["inflight"]
        for p in logs
    )


def _screenshot_with_login(url: str, png: Path, expected: int) -> None:
    """Open the env in headless Chromium (DevTools protocol) with the cookie Visdom's login gives,
    count the windows the page renders, and keep a screenshot."""
    from chromium_page import ChromiumPage

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "chromium is not installed: tools/setup.sh --test installs it"
    creds = credentials.load()
    with ChromiumPage(chromium) as page:
        page.login_visdom(url, creds["username"], creds["password"])
        page.open(url)
        count = page.wait_for(
            lambda: page.evaluate("document.querySelectorAll('.react-grid-item').length"),
            lambda n: n >= expected,
            timeout=60,
        )
        assert count == expected, f"the page shows {count} windows, the server holds {expected}"
        png.parent.mkdir(parents=True, exist_ok=True)
        png.write_bytes(page.screenshot())


def test_the_lag_benchmark_runs_at_a_tiny_size():
    """benchmarks/visdom_follower_lag.py at 3 points for 2 s, so it cannot rot (the figures come
    from its full run, never from an assertion on time here)."""
    import subprocess
    import sys

    out = subprocess.run(
        [
            sys.executable,
            str(Path(__file__).parent.parent / "benchmarks" / "visdom_follower_lag.py"),
            "--points",
            "3",
            "--seconds",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["seen"] == result["written"] == 9 and {"median", "p95", "worst"} <= set(
        result["lag_s"]
    )
