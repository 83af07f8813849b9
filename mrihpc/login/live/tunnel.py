"""The SSH line that brings a run's Visdom server to the user's laptop.

Where the server is, from the run's spec (``monitor.visdom``) and executor:
- on this (login) node, the usual case: the points write their visdom.log and the login
  node's follower streams them into the server here (or the points post to it directly with
  the local executor); the server is bound to 127.0.0.1, so ONE forward to ``localhost``
  through the login node shows every point of every sweep;
- on the compute nodes (``post: true`` under Slurm with a 127.0.0.1 server: each point posts
  to its own node): the nodes come from the points' status and the forward ends on the node
  itself, jumping through the login node;
- on a named host: forward to that host through the login node.
"""

from __future__ import annotations

import getpass
import socket
from urllib.parse import urlparse

from mrihpc.login.live import DEFAULT_PORT
from mrihpc.login.live.follower import posting_points, running
from mrihpc.login.live.server import answers, port_taken
from mrihpc.login.live.server import running as server_state
from mrihpc.login.results import started_config
from mrihpc.paths import RunPaths, read_json

LOCAL_NAMES = {"localhost", "127.0.0.1", "::1"}


def compute_nodes(run: RunPaths, manifest: dict) -> list[str]:
    """Hosts of the points that are running now (rank 0's node, from status.json)."""
    hosts = []
    for p in manifest.get("points", []):
        status = read_json(run.point(p["index"]).status, {}) or {}
        if status.get("state") == "running" and status.get("host") and status["host"] not in hosts:
            hosts.append(status["host"])
    return hosts


def point_config(run: RunPaths) -> dict:
    """Point 0's whole spec as a plain dict, every default filled in: its config.yaml once it has
    started, else derived from the run's spec and the point's overrides."""
    raw = started_config(run)
    if raw is not None:
        return raw
    from mrihpc.specfile import point_raw

    return point_raw(run.point(0))


def visdom_address(config: dict) -> tuple[str | None, int]:
    """(host, port) of ``monitor.visdom`` in a point's spec dict; None, DEFAULT_PORT when absent."""
    visdom = (config.get("monitor") or {}).get("visdom")
    if visdom is None:
        return None, DEFAULT_PORT
    server = str(visdom.get("server", "127.0.0.1"))  # a user may have cut keys from config.yaml
    return urlparse(server if "://" in server else f"http://{server}").hostname, visdom.get(
        "port", DEFAULT_PORT
    )


def tunnel(
    run: RunPaths,
    manifest: dict,
    config: dict,
    login: str | None = None,
    local_port: int | None = None,
) -> tuple[list[str], list[str]]:
    """(lines to print, warnings), for the run's point spec ``config`` (``point_config``)."""
    warnings = []
    host, port = visdom_address(config)
    if host is None:
        warnings.append(
            f"this run's spec has no monitor.visdom: nothing is plotted live (showing port {port})"
        )
        host = "127.0.0.1"
    local = local_port or port
    user = getpass.getuser()
    login = login or (
        socket.getfqdn() if not socket.getfqdn().startswith("localhost") else socket.gethostname()
    )
    env = f"{config['name']}_{run.root.name}"
    here = host in LOCAL_NAMES | {socket.gethostname(), socket.getfqdn()}
    followed = len(posting_points(run.root)) < len(
        manifest.get("points", [])
    )  # some point leaves it to a follower
    lines = []
    if here and manifest.get("executor") == "slurm" and not followed:
        nodes = compute_nodes(run, manifest)
        if not nodes:
            warnings.append(
                "no point is running, so no compute node serves plots now; "
                f"`mrihpc visdom replay {run.root}` fills a server on this node"
            )
        for node in nodes:
            lines.append(f"ssh -N -L {local}:localhost:{port} -J {user}@{login} {user}@{node}")
    else:
        target = "localhost" if here else host
        lines.append(f"ssh -N -L {local}:{target}:{port} {user}@{login}")
        if here and not answers(port):
            if port_taken(port):
                warnings.append(
                    f"port {port} on {socket.gethostname()} is taken by a program that is not "
                    "visdom; start one on another port (`mrihpc visdom start --port N`, and set "
                    "monitor.visdom.port)"
                )
            else:
                warnings.append(
                    f"no visdom server answers on port {port} here; `mrihpc visdom start "
                    f"--port {port}`"
                )
        elif here and followed and running(port) is None:
            warnings.append(
                f"no follower streams the points' visdom.log into the server on port {port}; "
                f"`mrihpc visdom stop --port {port} && mrihpc visdom start --port {port} "
                f"--runs {run.root.parent.parent}`"
            )
    if lines:
        lines.append(f"then open http://localhost:{local}/env/{env}")
        if here and (state := server_state(port)) is not None and state.get("login"):
            lines.append(
                f"and log in with the username and password in {state['credentials']} (on "
                "the login node)"
            )
        if local == port:
            lines.append(
                f"(if port {local} is taken on your laptop, add --local-port N and open "
                "that port instead)"
            )
    return lines, warnings
