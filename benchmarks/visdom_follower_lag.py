"""Benchmark: how long a point's Visdom call takes to reach the login node's server through the
follower (write to visdom.log on a node -> visible in the server), with many points logging.

A real server (Visdom's login on) and the production ``Follower`` (in a thread, polling as the
``mrihpc visdom start`` process does) follow one run folder of ``--points`` points; a writer
thread appends one line-plot call per point per ``--interval-s`` to each point's visdom.log,
formatted by Visdom's own offline client, as the points write them. A call counts as visible when
the server has acknowledged its POST (Visdom applies an event before answering). The reference,
in the same run, is the same calls posted straight to the server (what a point on the login
node's own host would see). JSON: median / p95 / worst lag in seconds, counts, and the ratio.

    python benchmarks/visdom_follower_lag.py [--points 100] [--seconds 20] > result.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import threading
import time
from pathlib import Path

from common import free_port, machine  # benchmarks/: the script's own folder


def summary(lags: list[float]) -> dict:
    lags = sorted(lags)
    return {
        "median": round(statistics.median(lags), 4),
        "p95": round(lags[int(0.95 * (len(lags) - 1))], 4),
        "worst": round(lags[-1], 4),
        "count": len(lags),
    }


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--points", type=int, default=100)
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument(
        "--interval-s", type=float, default=1.0, help="seconds between two calls of one point"
    )
    p.add_argument(
        "--poll-s", type=float, default=0.2, help="the follower's poll interval (its default)"
    )
    args = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mrihpc-bench-follower-"))
    os.environ["MRIHPC_CACHE"] = str(work / "cache")
    from visdom import Visdom

    from mrihpc.login.live import follower, server
    from mrihpc.visdom_transport import Transport

    port = free_port()
    server.start(port, work / "envs")
    run = work / "runs" / "bench" / "20261122-000000-000"
    clients = []
    for i in range(args.points):
        folder = run / "points" / str(i)
        folder.mkdir(parents=True)
        (folder / "config.yaml").write_text(
            "name: bench\ntask: reconstruction\nmonitor: {visdom: {}}\n"
        )
        clients.append(
            Visdom(
                env="bench",
                offline=True,
                log_to_filename=str(folder / "visdom.log"),
                use_incoming_socket=False,
            )
        )
    (run / "manifest.json").write_text(
        json.dumps({"executor": "slurm", "points": [{"index": i} for i in range(args.points)]})
    )

    lags: list[float] = []
    f = follower.Follower(
        [work / "runs"], f"http://127.0.0.1:{port}", work / "offsets.json", server.state_file(port)
    )
    post = f.transport.post

    def timed_post(
        endpoint: str, msg: dict
    ) -> bool:  # instrumentation only: the write time is the call's y
        ok = post(endpoint, msg)
        if ok and msg.get("win", "").startswith("t"):  # events (creation) and update (append)
            lags.append(time.time() - msg["data"][0]["y"][-1])
        return ok

    f.transport.post = timed_post
    stop = threading.Event()

    def follow() -> None:
        while not stop.is_set():
            f.poll()
            time.sleep(args.poll_s)

    thread = threading.Thread(target=follow, daemon=True)
    thread.start()

    written, step, start = 0, 0, time.time()
    while time.time() - start < args.seconds:
        for i, vis in enumerate(
            clients
        ):  # spread over the interval, as independent points would be
            target = start + step * args.interval_s + i * args.interval_s / args.points
            time.sleep(max(0.0, target - time.time()))
            vis.line(Y=[time.time()], X=[step], win=f"t{i}", update="append" if step else None)
            written += 1
        step += 1
    deadline = time.time() + 30
    while len(lags) < written and time.time() < deadline:
        time.sleep(0.1)
    stop.set()
    thread.join()

    direct, transport = [], Transport(f"http://127.0.0.1:{port}", timeout_s=5.0)
    for i in range(min(written, 500)):  # the reference: the same kind of call posted straight
        msg = {
            "eid": "bench_direct",
            "win": f"d{i % args.points}",
            "data": [{"x": [i], "y": [time.time()], "type": "scatter", "mode": "lines"}],
            "layout": {},
            "opts": {},
        }
        t = time.time()
        assert transport.post("events", msg), transport.last_error
        direct.append(time.time() - t)
    server.stop(port)
    follow_lag, direct_lag = summary(lags), summary(direct)
    print(
        json.dumps(
            {
                "benchmark": "visdom_follower_lag",
                "points": args.points,
                "interval_s": args.interval_s,
                "seconds": args.seconds,
                "poll_s": args.poll_s,
                "written": written,
                "seen": len(lags),
                "lag_s": follow_lag,
                "direct_post_s": direct_lag,
                "median_ratio_to_direct": round(
                    follow_lag["median"] / max(direct_lag["median"], 1e-9), 1
                ),
                "target_worst_s": 2.0,
                "meets_target": follow_lag["worst"] <= 2.0,
                "machine": machine(),
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
