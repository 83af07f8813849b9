"""Benchmark: what a Visdom server that is down or hung costs a training run.

The same point (the quickstart model, a few epochs, CPU) is trained in this process four
ways, in one run: without live plots (the reference), with a healthy server, with no
server (connection refused), and with a server stopped by SIGSTOP for the whole run (it
accepts connections, never answers: the case that blocks visdom's own client forever).
Each is repeated and the median wall time kept; the JSON gives seconds and the overhead
against the reference.

    python benchmarks/visdom_hung_server.py [--epochs 3] [--repeats 3] > result.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

from common import free_port  # benchmarks/: the script's own folder

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mrihpc-bench-visdom-"))
    os.environ.setdefault("MRIHPC_CACHE", str(work / "cache"))
    from mrihpc.login import checks, launch
    from mrihpc.login.live import server
    from mrihpc.node.runner import run_point
    from mrihpc.paths import read_json

    base = yaml.safe_load((REPO / "jobs" / "quickstart.yaml").read_text())
    base["train"] = {**base["train"], "epochs": args.epochs}
    base["sweep"] = {}
    port = free_port()
    state = server.start(port, work / "envs")
    cases = {"reference": None, "healthy": port, "refused": free_port(), "hung": port}
    times: dict[str, list[float]] = {c: [] for c in cases}
    stats = {}
    try:
        for _ in range(args.repeats):
            for case, case_port in cases.items():
                spec = dict(
                    base,
                    monitor={
                        **base.get("monitor", {}),
                        **({"visdom": {"port": case_port}} if case_port else {}),
                    },
                )
                path = work / f"{case}.yaml"
                path.write_text(yaml.safe_dump(spec))
                prepared, raw, points, _ = checks.prepare(str(path), [], "debug")
                checks.prepare_data([s for _, s in points])
                run = launch.write_run_directory(
                    work / "runs", prepared, raw, str(path), points, "debug"
                )
                if case == "hung":
                    os.kill(state["pid"], signal.SIGSTOP)
                start = time.perf_counter()
                try:
                    with contextlib.redirect_stdout(
                        sys.stderr
                    ):  # the training's console lines: stdout is the JSON
                        run_point(run.root, 0)
                finally:
                    times[case].append(time.perf_counter() - start)
                    if case == "hung":
                        os.kill(state["pid"], signal.SIGCONT)
                stats[case] = read_json(run.point(0).status).get("visdom")
    finally:
        server.stop(port)
    median = {c: statistics.median(t) for c, t in times.items()}
    ref = median["reference"]
    print(
        json.dumps(
            {
                "benchmark": "visdom_hung_server",
                "epochs": args.epochs,
                "repeats": args.repeats,
                "seconds": {c: round(v, 3) for c, v in median.items()},
                "overhead_s": {c: round(v - ref, 3) for c, v in median.items() if c != "reference"},
                "ratio_to_reference": {
                    c: round(v / ref, 3) for c, v in median.items() if c != "reference"
                },
                "transport": stats,
                "python": sys.version.split()[0],
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
