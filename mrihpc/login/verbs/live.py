"""Live plots: ``visdom start | stop | status | assets | replay`` and ``tunnel``."""

from __future__ import annotations

import argparse
import socket
import sys
from pathlib import Path

from mrihpc.login.live import DEFAULT_PORT
from mrihpc.login.views import RunError, open_run


def add_verbs(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser(
        "visdom", help="a local Visdom server for live plots, and replay of a run's plots"
    )
    vis = s.add_subparsers(dest="visdom_verb", required=True)
    s = vis.add_parser(
        "start",
        help="start a server bound to 127.0.0.1 and the follower that streams the "
        "points' visdom.log into it (both detached)",
    )
    s.add_argument("--port", type=int, default=DEFAULT_PORT)
    s.add_argument(
        "--env-path", type=Path, help="where envs are saved (default <cache>/visdom/envs)"
    )
    s.add_argument(
        "--runs",
        type=Path,
        nargs="+",
        default=[Path("runs")],
        help="runs folders, experiment folders or run directories to follow (default ./runs)",
    )
    s.add_argument(
        "--no-login", action="store_true", help="Visdom's login off (a private machine only)"
    )
    s.add_argument("--no-follow", action="store_true", help="the server alone")
    s = vis.add_parser(
        "stop", help="stop the server and follower you started on this host and port"
    )
    s.add_argument("--port", type=int, default=DEFAULT_PORT)
    s = vis.add_parser(
        "status", help="what runs: server, login, follower, the runs it follows, its lag"
    )
    s.add_argument("--port", type=int, default=DEFAULT_PORT)
    s = vis.add_parser(
        "assets", help="install the page's JS/CSS/MathJax from npm packages (for offline use)"
    )
    s.add_argument(
        "--tarballs",
        type=Path,
        help="folder of `npm pack` tarballs (missing ones are fetched into it)",
    )
    s = vis.add_parser("replay", help="rebuild every window of a run from its points' visdom.log")
    s.add_argument("run")
    s.add_argument("--server", help="server URL with port (default http://127.0.0.1:PORT)")
    s.add_argument("--port", type=int, default=DEFAULT_PORT)
    for s in vis.choices.values():
        s.set_defaults(fn=cmd_visdom)

    s = sub.add_parser("tunnel", help="the ssh line that shows a run's Visdom plots on your laptop")
    s.add_argument("run")
    s.add_argument(
        "--login", help="login host as your laptop reaches it (default: this host's name)"
    )
    s.add_argument("--local-port", type=int, help="port on your laptop (default: the server's)")
    s.set_defaults(fn=cmd_tunnel)


def cmd_visdom(args) -> int:
    from mrihpc.login.live import assets, server

    if args.visdom_verb == "start":
        from mrihpc.login.live import follower

        s = server.start(args.port, args.env_path, login=not args.no_login)
        print(
            f"visdom server pid {s['pid']} at {s['url']} (bound to 127.0.0.1; envs in "
            f"{s['env_path']}, log {s['log']})"
        )
        print(
            "login: "
            + (
                f"credentials in {s['credentials']} (mode 600)"
                if s["login"]
                else "off (--no-login)"
            )
        )
        if not args.no_follow:
            f = follower.start(args.port, args.runs)
            print(
                f"follower pid {f['pid']} streams the points' visdom.log under "
                f"{', '.join(f['runs'])} (log {f['log']})"
            )
        print("from your laptop: `mrihpc tunnel RUN` prints the ssh line")
    elif args.visdom_verb == "stop":
        from mrihpc.login.live import follower

        if (f := follower.stop(args.port)) is not None:
            print(f"stopped the follower pid {f['pid']}")
        s = server.stop(args.port)
        print(f"stopped visdom server pid {s['pid']} on port {s['port']}")
    elif args.visdom_verb == "status":
        from mrihpc.login.live import follower

        s = server.running(args.port)
        if s is None:
            print(f"no visdom server of yours runs on {socket.gethostname()} port {args.port}")
            return 1
        print(f"server pid {s['pid']} at {s['url']}, envs in {s['env_path']}, log {s['log']}")
        print(
            f"login: {'credentials in ' + str(s.get('credentials')) if s.get('login') else 'off'}"
        )
        f = follower.status(args.port)
        if f is None:
            print(
                "follower: not running (`mrihpc visdom start` starts one; points under "
                "Slurm only write visdom.log)"
            )
        else:
            lag = (
                "-"
                if f.get("lag_s") is None
                else f"{f['lag_s']:.2f} s (worst {f.get('max_lag_s', 0):.2f} s)"
            )
            print(
                f"follower pid {f['pid']} following {', '.join(f['runs'])}: {f.get('files', 0)} "
                f"visdom.log files, {f.get('posted', 0)} calls posted, lag {lag}, log {f['log']}"
            )
            if f.get("last_error"):
                print(f"follower: last server error: {f['last_error']}")
    elif args.visdom_verb == "assets":
        print(f"installed {assets.install(args.tarballs)} files into {assets.static_dir()}")
    elif args.visdom_verb == "replay":
        from mrihpc.visdom_transport import replay

        run, manifest = open_run(args.run)
        logs = [run.point(p["index"]).visdom_log for p in manifest["points"]]
        logs = [log for log in logs if log.is_file()]
        if not logs:
            raise RunError(f"{run.root}: no point has a visdom.log (was monitor.visdom set?)")
        url = args.server or f"http://127.0.0.1:{args.port}"
        try:
            done = replay(logs, url)
        except ConnectionError as e:
            print(f"mrihpc visdom replay: {e}", file=sys.stderr)
            return 1
        print(
            f"replayed {done['calls']} calls from {done['logs']} points into {url} env "
            f"{', '.join(done['envs'])}"
        )
    return 0


def cmd_tunnel(args) -> int:
    from mrihpc.login.live.tunnel import point_config, tunnel

    run, manifest = open_run(args.run)
    lines, warnings = tunnel(run, manifest, point_config(run), args.login, args.local_port)
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)
    print("\n".join(lines))
    return 0
