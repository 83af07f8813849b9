"""Benchmark: how long each login-node verb takes, as a whole process (``python -m mrihpc ...``),
against a bare interpreter start and an ``import torch`` measured in the same run.

The verbs ask about a finished local run of the quickstart (1 epoch, 2 steps), made first;
none of them may import torch (tests/test_login_node.py checks that), so each should cost
little more than the interpreter. Median of ``--repeats`` runs; target <= 0.3 s each.

    python benchmarks/login_verbs.py [--repeats 5] > result.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import machine  # benchmarks/: the script's own folder

REPO = Path(__file__).resolve().parents[1]


def median_s(cmd: list[str], env: dict, repeats: int, ok=(0,)) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = subprocess.run(cmd, env=env, capture_output=True, text=True)
        times.append(time.perf_counter() - start)
        if out.returncode not in ok:
            raise SystemExit(
                f"{' '.join(cmd)} exited {out.returncode}:\n{out.stdout}\n{out.stderr}"
            )
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mrihpc-bench-verbs-"))
    env = {**os.environ, "MRIHPC_CACHE": str(work / "cache")}
    py = [sys.executable]
    mrihpc = py + ["-m", "mrihpc"]
    quickstart = str(REPO / "jobs" / "quickstart.yaml")
    subprocess.run(
        mrihpc
        + [
            "submit",
            quickstart,
            "--runs",
            str(work / "runs"),
            "-o",
            "train.epochs=1",
            "-o",
            "train.steps_per_epoch=2",
            "-o",
            "sweep.zip={}",
        ],
        env=env,
        check=True,
        capture_output=True,
    )
    run = str(next((work / "runs" / "quickstart").iterdir()))
    verbs = {
        "validate": (["validate", quickstart], (0,)),
        "submit --dry-run": (
            ["submit", quickstart, "--dry-run", "--runs", str(work / "dry")],
            (0,),
        ),
        "status": (["status", run], (0,)),
        "results": (["results", run], (0,)),
        "logs": (["logs", run, "0"], (0,)),
        "cancel": (["cancel", run], (0, 1)),
        "resubmit --failed": (["resubmit", run, "--failed"], (0,)),
        "tunnel": (["tunnel", run, "--login", "login.example.org"], (0,)),
        "visdom status": (["visdom", "status", "--port", "1"], (0, 1)),
    }
    startup = median_s(py + ["-c", "pass"], env, args.repeats)
    torch_s = median_s(py + ["-c", "import torch"], env, args.repeats)
    results = {}
    for name, (argv, ok) in verbs.items():
        seconds = median_s(mrihpc + argv, env, args.repeats, ok)
        results[name] = {
            "median_s": round(seconds, 3),
            "minus_interpreter_s": round(seconds - startup, 3),
            "meets_target": seconds <= 0.3,
        }
    print(
        json.dumps(
            {
                "benchmark": "login_verbs",
                "repeats": args.repeats,
                "target_s": 0.3,
                "python_startup_s": round(startup, 3),
                "import_torch_s": round(torch_s, 3),
                "verbs": results,
                "slowest_verb_s": max(v["median_s"] for v in results.values()),
                "machine": machine(),
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
