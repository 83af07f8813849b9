"""A Visdom server bound to 127.0.0.1: start it detached, find it, stop exactly that one.

Bound to 127.0.0.1 because visdom has no authentication by default: on every interface,
anyone on the cluster could read (and write) the plots. 127.0.0.1 is still reachable by every
user of the node, so Visdom's login is on by default, with the user's credentials
(``credentials.py``); ``--no-login`` turns it off on a private machine. Users reach it
through ``mrihpc tunnel``. Each server leaves a state file ``<cache>/visdom/<host>-<port>.json``
(home folders are shared between nodes, so the host is part of the name).

Run as ``python -m mrihpc.login.live.server --port P --env-path D``: the server itself, with
the assets checked first and Tornado's autoreload off (visdom forces debug mode, which
restarts the server whenever an imported file changes, e.g. during a ``pip install``).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from mrihpc.data.cache import cache_root
from mrihpc.login.live import DEFAULT_PORT, ServerError  # noqa: F401 - raised here, caught by the CLI


def state_file(port: int, host: str | None = None) -> Path:
    return cache_root() / "visdom" / f"{host or socket.gethostname()}-{port}.json"


def default_env_path() -> Path:
    return cache_root() / "visdom" / "envs"


def answers(port: int, host: str = "127.0.0.1", timeout: float = 1.0) -> bool:
    """True when a visdom server answers on host:port (its page, or its login page, renders).
    http.client, not requests: tunnel and status ask this, and requests costs them 80 ms to
    import."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", "/")
        return conn.getresponse().status < 400  # a redirect (to the login page) answers too
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


def port_taken(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def _alive(pid: int) -> bool:
    """Running (a zombie, dead but not yet reaped by the process that started it, is not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def running(port: int) -> dict | None:
    """The state of our server on this host and port, or None (a stale state file is removed)."""
    path = state_file(port)
    try:
        state = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    if _alive(state["pid"]):
        return state
    path.unlink(missing_ok=True)
    return None


def start(
    port: int = DEFAULT_PORT, env_path: Path | None = None, wait_s: float = 60.0, login: bool = True
) -> dict:
    """Start a detached server; returns its state (pid, port, url, env_path, log, credentials)."""
    from mrihpc import visdom_credentials as credentials
    from mrihpc.login.live import assets

    if (state := running(port)) is not None:
        raise ServerError(
            f"a visdom server of yours already runs on port {port} (pid {state['pid']}); "
            f"`mrihpc visdom stop --port {port}` first"
        )
    if port_taken(port):
        raise ServerError(
            f"port {port} on 127.0.0.1 is taken by another program; pick one with --port"
        )
    if missing := assets.missing():
        raise ServerError(
            f"visdom's page assets are not installed ({len(missing)} missing, e.g. {missing[0]}); "
            "run `mrihpc visdom assets` where npm can reach its registry"
        )
    env_path = Path(env_path or default_env_path()).resolve()
    env_path.mkdir(parents=True, exist_ok=True)
    path = state_file(port)
    path.parent.mkdir(parents=True, exist_ok=True)
    log = path.with_suffix(".log")
    if login:
        credentials.ensure()
        credentials.ensure_cookie_secret()
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mrihpc.login.live.server",
                "--port",
                str(port),
                "--env-path",
                str(env_path),
            ]
            + ([] if login else ["--no-login"]),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )  # outlives this shell
    deadline = time.time() + wait_s
    while not answers(port):
        if proc.poll() is not None:
            raise ServerError(f"the visdom server exited with code {proc.returncode}; see {log}")
        if time.time() > deadline:
            proc.kill()
            raise ServerError(f"the visdom server did not answer within {wait_s:.0f} s; see {log}")
        time.sleep(0.2)
    state = {
        "pid": proc.pid,
        "port": port,
        "host": socket.gethostname(),
        "url": f"http://127.0.0.1:{port}",
        "env_path": str(env_path),
        "log": str(log),
        "started": time.time(),
        "login": login,
        "credentials": str(credentials.credentials_file()) if login else None,
    }
    path.write_text(json.dumps(state))
    return state


def stop(port: int = DEFAULT_PORT, wait_s: float = 10.0) -> dict:
    """Stop the server this user started on this host and port (SIGTERM, then SIGKILL)."""
    state = running(port)
    if state is None:
        raise ServerError(
            f"no visdom server started by mrihpc runs on {socket.gethostname()} port {port}"
        )
    terminate(state["pid"], wait_s, group=True)
    state_file(port).unlink(missing_ok=True)
    return state


def terminate(pid: int, wait_s: float, group: bool = False) -> None:
    """SIGTERM ``pid`` (its process group with ``group``), SIGKILL if still alive after
    ``wait_s``."""
    kill = os.killpg if group else os.kill
    kill(pid, signal.SIGTERM)
    deadline = time.time() + wait_s
    while _alive(pid) and time.time() < deadline:
        time.sleep(0.05)
    if _alive(pid):
        kill(pid, signal.SIGKILL)


def _serve(port: int, env_path: str, login: bool) -> None:
    import tornado.autoreload
    from visdom.server.run_server import start_server

    from mrihpc import visdom_credentials as credentials

    tornado.autoreload.start = lambda *a, **k: None  # see the module docstring
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    user = credentials.server_credential(credentials.load()) if login else None
    # base_url "" as visdom's own main() passes it: the default "/" makes every route "//..."
    start_server(
        port=port,
        base_url="",
        env_path=env_path.rstrip("/") + "/",
        bind_local=True,
        user_credential=user,
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--env-path", required=True)
    parser.add_argument("--no-login", action="store_true")
    a = parser.parse_args()
    _serve(a.port, a.env_path, not a.no_login)
