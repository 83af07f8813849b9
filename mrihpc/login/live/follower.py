"""The login node's follower: streams the points' ``visdom.log`` files into the local server.

Compute nodes often have no route to the login node, and a server bound to 127.0.0.1 could
not be reached from them anyway. The points only append each Visdom call to
``points/<i>/visdom.log`` on the shared filesystem; this process, next to the server, follows
every such file under the runs folders it is given (new runs are found by a rescan) and posts
each complete line as it appears.

Exactly once, across restarts of either side:
- each file's offset is persisted in ``<host>-<port>.offsets.json`` after every batch, with the
  batch marked in flight before it is sent; a follower killed mid-batch (not knowing which
  calls reached the server) replays that file from its start on restart;
- a torn last line (a point still writing it) is left for the next poll, never skipped;
- when the server was restarted (its state file's start time changed), every file is replayed
  from its start, since the server has only what it last saved.
Replaying a file is idempotent: each window's first call in a log creates (replaces) it and the
later ones append, so a replay rebuilds the window rather than doubling it.

Points that post directly (``monitor.visdom.post``) are skipped: their calls arrive
already. Run as ``python -m mrihpc.login.live.follower --port P [--runs DIR ...]``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import socket
import time
from pathlib import Path
from typing import Optional

from mrihpc.data.cache import cache_root

log = logging.getLogger("mrihpc.follower")


def state_path(port: int, suffix: str) -> Path:
    """``<cache>/visdom/<host>-<port>.<suffix>``: follower.json (pid, runs), offsets.json,
    follower.log."""
    return cache_root() / "visdom" / f"{socket.gethostname()}-{port}.{suffix}"


def _write_json(path: Path, value: dict) -> None:
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(value))
    os.replace(tmp, path)


def posting_points(run: Path) -> set[str]:
    """The point folders (names under ``points/``) whose points post to the server themselves:
    ``monitor.visdom.post`` as the node resolves it, from the run's spec and each point's
    overrides in the manifest (a sweep may set it per point); default on except under Slurm."""
    import yaml

    try:  # the run's spec and manifest (a point's own config.yaml exists only once it has started)
        spec = yaml.safe_load((run / "spec.yaml").read_text()) or {}
        manifest = json.loads((run / "manifest.json").read_text())
    except (OSError, ValueError):
        return set()
    post = ((spec.get("monitor") or {}).get("visdom") or {}).get("post")
    default = bool(post) if post is not None else manifest.get("executor") != "slurm"
    return {
        str(p["index"])
        for p in manifest.get("points", [])
        if bool((p.get("overrides") or {}).get("monitor.visdom.post", default))
    }


def point_posts(point: Path, executor: str | None) -> bool | None:
    """``monitor.visdom.post`` as the node resolved it from the point's own config.yaml (written as
    the point starts, so a user's edit there counts); None when there is no readable config.yaml."""
    import yaml

    try:
        config = yaml.load(
            (point / "config.yaml").read_text(),
            Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader),
        )
        post = config["monitor"]["visdom"].get("post")
    except (OSError, ValueError, yaml.YAMLError, KeyError, TypeError, AttributeError):
        return None
    return bool(post) if post is not None else executor != "slurm"


def find_runs(roots: list[Path]) -> list[Path]:
    """Run folders (holding manifest.json) given directly, or one or two levels under a root
    (``runs/<name>/<id>``, ``runs/<name>``)."""
    found = []
    for root in roots:
        if (root / "manifest.json").is_file():
            found.append(root)
            continue
        for pattern in ("*/manifest.json", "*/*/manifest.json"):
            found += sorted(p.parent for p in root.glob(pattern))
    return list(dict.fromkeys(found))


def _executor(run: Path) -> str | None:
    try:
        return json.loads((run / "manifest.json").read_text()).get("executor")
    except (OSError, ValueError):
        return None


class Follower:
    def __init__(
        self,
        roots: list[Path],
        url: str,
        offsets_file: Path,
        server_state: Optional[Path] = None,
        rescan_s: float = 1.0,
        save_s: float = 10.0,
    ):
        from mrihpc.visdom_transport import (
            Transport,
        )  # here: tunnel and status read this module without requests

        self.roots, self.offsets_file, self.server_state = (
            [Path(r).resolve() for r in roots],
            offsets_file,
            server_state,
        )
        self.transport = Transport(url, timeout_s=5.0, backoff_s=1.0, max_backoff_s=10.0)
        self.rescan_s, self.last_scan, self.files = rescan_s, 0.0, []
        self.direct: dict[
            Path, set[str]
        ] = {}  # run -> its point folders that post themselves (manifest)
        self.executors: dict[Path, str | None] = {}  # run -> its executor (manifest)
        self.skipped: dict[
            Path, bool
        ] = {}  # visdom.log -> its point posts itself (decided as the log appears)
        self.posted, self.lag_s, self.max_lag_s = 0, None, 0.0
        # saving an env writes all of it to disk, slower as it grows: at most every save_s (a
        # restarted server is replayed anyway; the saves are for reading the envs later)
        self.save_s, self.last_save, self.unsaved = save_s, time.monotonic(), set()
        saved = json.loads(offsets_file.read_text()) if offsets_file.is_file() else {}
        self.offsets: dict[str, dict] = saved.get("files", {})
        self.server_started = saved.get("server_started")
        for path, entry in self.offsets.items():
            if entry.get("inflight"):  # killed mid-batch: which calls arrived is unknown
                log.info(
                    "%s: a batch was in flight when the follower stopped; replaying the file", path
                )
                entry.update(offset=0, inflight=False)

    # ----------------------------------------------------------------- bookkeeping
    def _save(self) -> None:
        _write_json(
            self.offsets_file, {"files": self.offsets, "server_started": self.server_started}
        )

    def _check_server(self) -> None:
        """Replay everything into a server that was restarted since the offsets were written."""
        if self.server_state is None or not self.server_state.is_file():
            return
        try:
            started = json.loads(self.server_state.read_text()).get("started")
        except ValueError:
            return
        if started != self.server_started:
            if self.server_started is not None:
                log.info("the server was restarted: replaying every file from its start")
            for entry in self.offsets.values():
                entry.update(offset=0, inflight=False)
            self.server_started = started
            self._save()

    def scan(self) -> list[Path]:
        files = []
        for run in find_runs(self.roots):
            if run not in self.direct:  # read once a run: a 10,000-point manifest is 3.7 MB
                self.direct[run], self.executors[run] = posting_points(run), _executor(run)
                if self.direct[run]:
                    log.info(
                        "%s: points %s post directly; not followed",
                        run,
                        ", ".join(sorted(self.direct[run], key=int)),
                    )
            for log_file in sorted((run / "points").glob("*/visdom.log")):
                if (
                    log_file not in self.skipped
                ):  # its point has started: its config.yaml has the last word
                    posts = point_posts(log_file.parent, self.executors[run])
                    self.skipped[log_file] = (
                        log_file.parent.name in self.direct[run] if posts is None else posts
                    )
                if not self.skipped[log_file]:
                    files.append(log_file)
        new = set(files) - set(self.files)
        for path in sorted(new):
            log.info("following %s", path)
        self.files, self.last_scan = files, time.monotonic()
        return files

    # ----------------------------------------------------------------- the loop
    def _pending(self, path: Path) -> tuple[dict, bytes, float] | None:
        """(entry, complete new lines, file mtime) or None; a replaced or truncated file starts
        over."""
        try:
            st = path.stat()
        except FileNotFoundError:
            return None
        entry = self.offsets.setdefault(
            str(path), {"offset": 0, "inode": st.st_ino, "inflight": False}
        )
        if entry.get("inode") != st.st_ino or st.st_size < entry["offset"]:
            entry.update(offset=0, inode=st.st_ino)
        if st.st_size == entry["offset"]:
            return None
        with open(path, "rb") as f:
            f.seek(entry["offset"])
            data = f.read(st.st_size - entry["offset"])
        end = data.rfind(b"\n")
        return (entry, data[: end + 1], st.st_mtime) if end >= 0 else None  # a torn line waits

    def poll(self) -> int:
        """Post every complete new line of every followed file; returns the calls posted."""
        self._check_server()
        if time.monotonic() - self.last_scan >= self.rescan_s:
            self.scan()
        pending = {p: got for p in self.files if (got := self._pending(p)) is not None}
        if not pending:
            return 0
        for entry, _, _ in pending.values():
            entry["inflight"] = True
        self._save()
        posted, envs = 0, set()
        for path, (entry, data, mtime) in pending.items():
            for line in data.splitlines(keepends=True):
                try:
                    endpoint, msg = json.loads(line)
                except ValueError:
                    log.warning(
                        "%s: skipping a line that is not a visdom call at byte %d",
                        path,
                        entry["offset"],
                    )
                    entry["offset"] += len(line)
                    continue
                if not self.transport.post(endpoint, msg):
                    log.warning(
                        "%s: %s; retrying later", self.transport.url, self.transport.last_error
                    )
                    break
                entry["offset"] += len(line)
                posted += 1
                envs.add(msg.get("eid"))
            entry["inflight"] = False
            # since the file's last write: how long its newest line waited to be seen
            self.lag_s = max(0.0, time.time() - mtime)
            self.max_lag_s = max(self.max_lag_s, self.lag_s)
        self._save()
        self.unsaved |= envs - {None}
        if time.monotonic() - self.last_save >= self.save_s:
            self.save_envs()
        self.posted += posted
        return posted

    def save_envs(self) -> None:
        """Ask the server to write the envs changed since the last save to disk."""
        if self.unsaved and self.transport.post("save", {"data": sorted(self.unsaved)}):
            self.unsaved = set()
        self.last_save = time.monotonic()

    def status(self) -> dict:
        return {
            "files": len(self.files),
            "posted": self.posted,
            "lag_s": self.lag_s,
            "max_lag_s": round(self.max_lag_s, 3),
            "server_failures": self.transport.failed,
            "last_error": self.transport.last_error,
        }


def start(port: int, roots: list[Path], wait_s: float = 10.0) -> dict:
    """Start a detached follower for the server on ``port``; returns its state (pid, runs, log)."""
    import subprocess
    import sys

    if running(port) is not None:
        stop(port)
    roots = [Path(r).resolve() for r in roots]
    log_file = state_path(port, "follower.log")
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "ab") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mrihpc.login.live.follower",
                "--port",
                str(port),
                "--runs",
                *map(str, roots),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    state = {
        "pid": proc.pid,
        "port": port,
        "runs": [str(r) for r in roots],
        "log": str(log_file),
        "offsets": str(state_path(port, "offsets.json")),
        "started": time.time(),
    }
    _write_json(state_path(port, "follower.json"), state)
    deadline = time.time() + wait_s
    while (
        not state_path(port, "follower-status.json").is_file()
        or json.loads(state_path(port, "follower-status.json").read_text()).get("time", 0)
        < state["started"]
    ):
        if proc.poll() is not None:
            raise RuntimeError(f"the follower exited with code {proc.returncode}; see {log_file}")
        if time.time() > deadline:
            break  # slow start (a large runs folder): it keeps going; status shows it
        time.sleep(0.1)
    return state


def running(port: int) -> dict | None:
    """The state of this user's follower for ``port`` on this host, or None."""
    from mrihpc.login.live.server import _alive

    try:
        state = json.loads(state_path(port, "follower.json").read_text())
    except (FileNotFoundError, ValueError):
        return None
    return state if _alive(state["pid"]) else None


def stop(port: int, wait_s: float = 10.0) -> dict | None:
    """SIGTERM the follower (it finishes its batch and saves its offsets), SIGKILL after
    ``wait_s``."""
    from mrihpc.login.live.server import terminate

    state = running(port)
    if state is None:
        return None
    terminate(state["pid"], wait_s)
    state_path(port, "follower.json").unlink(missing_ok=True)
    return state


def status(port: int) -> dict | None:
    """What the follower last reported (files, calls posted, lag), with its state."""
    state = running(port)
    if state is None:
        return None
    try:
        state |= json.loads(state_path(port, "follower-status.json").read_text())
    except (FileNotFoundError, ValueError):
        pass
    return state


def run(port: int, roots: list[Path], poll_s: float = 0.2) -> None:
    """The follower process: poll until SIGTERM, writing its status beside the server's state."""
    from mrihpc.login.live import server

    logging.basicConfig(
        filename=state_path(port, "follower.log"),
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
    )
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    follower = Follower(
        roots, f"http://127.0.0.1:{port}", state_path(port, "offsets.json"), server.state_file(port)
    )
    log.info(
        "follower pid %d: following %s into port %d",
        os.getpid(),
        ", ".join(map(str, follower.roots)),
        port,
    )
    status_file, last_status = state_path(port, "follower-status.json"), 0.0
    while not stop:
        follower.poll()
        if time.monotonic() - last_status > 1.0:
            _write_json(status_file, follower.status() | {"time": time.time()})
            last_status = time.monotonic()
        time.sleep(poll_s)
    follower.save_envs()
    _write_json(status_file, follower.status() | {"time": time.time(), "stopped": True})
    log.info("follower stopped (posted %d calls)", follower.posted)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--runs", type=Path, nargs="+", required=True)
    parser.add_argument("--poll-s", type=float, default=0.2)
    a = parser.parse_args()
    run(a.port, a.runs, a.poll_s)
