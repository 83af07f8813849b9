"""Benchmark: what a stock image costs a point, on the real engine of tools/docker-engine.sh.

- start-up: ``docker run --rm --network none IMAGE python -c pass`` against the host's
  ``python -c pass`` (median of ``--repeats``);
- provisioning: the first task on an image (the site folder installed from the wheelhouse: cold)
  against a later one (the site found: warm), as whole local-executor submits of one small point,
  and the install itself (``site.json``);
- training: epoch time of the same point (knee U-Net, CPU, fp32) in the container and on the host.

    python benchmarks/container_start.py [--repeats 5] [--epochs 3] > result.json

Needs root (dockerd) and the test image (built into $MRIHPC_TEST_CACHE on first use, 3-5 min).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from common import machine  # benchmarks/: the script's own folder

REPO = Path(__file__).resolve().parents[1]
ENGINE = REPO / "tools" / "docker-engine.sh"
IMAGE = os.environ.get("MRIHPC_TEST_IMAGE", "mrihpc-test/stock-torch:2.13.0")


def median_s(cmd: list[str], repeats: int, env=None) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True, env=env)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def point(work: Path, env: dict, name: str, spec: dict) -> dict:
    """Submit one point (local executor); wall time, epoch times and the run directory."""
    path = work / f"{name}.yaml"
    path.write_text(yaml.safe_dump({**spec, "name": name}))
    start = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-m", "mrihpc", "submit", str(path), "--runs", str(work / "runs")],
        env=env,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - start
    if out.returncode:
        raise SystemExit(f"{name}: {out.stdout}\n{out.stderr}")
    run = sorted((work / "runs" / name).iterdir())[-1]
    rows = [
        json.loads(line)
        for line in (run / "points" / "0" / "metrics.jsonl").read_text().splitlines()
    ]
    epochs = [r["epoch_time_s"] for r in rows if r.get("kind") == "epoch"]
    return {"wall_s": round(wall, 2), "epoch_times_s": epochs, "run": run}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--epochs", type=int, default=3)
    args = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mrihpc-bench-ctr-"))
    engine = Path(tempfile.mkdtemp(prefix="mrihpc-bd-"))
    subprocess.run(["bash", str(ENGINE), "install"], check=True, capture_output=True)
    subprocess.run(["bash", str(ENGINE), "start", str(engine)], check=True, capture_output=True)
    host = f"unix://{engine}/docker.sock"
    env = {**os.environ, "DOCKER_HOST": host, "MRIHPC_CACHE": str(work / "cache")}
    try:
        subprocess.run(["bash", str(ENGINE), "image"], check=True, env=env)
        docker = ["docker", "--host", host]
        start_host = median_s([sys.executable, "-c", "pass"], args.repeats)
        start_ctr = median_s(
            [*docker, "run", "--rm", "--network", "none", IMAGE, "python", "-c", "pass"],
            args.repeats,
        )
        start_torch = median_s(
            [*docker, "run", "--rm", "--network", "none", IMAGE, "python", "-c", "import torch"],
            args.repeats,
        )
        spec = yaml.safe_load((REPO / "benchmarks" / "bench_point.yaml").read_text())
        spec["train"]["epochs"] = args.epochs
        in_docker = {
            **spec,
            "container": {
                "runtime": "docker",
                "image": IMAGE,
                "docker": {"host": host, "network": "none"},
            },
        }
        on_host = point(work, env, "host", spec)  # also makes the synthetic data
        cold = point(
            work, env, "cold", in_docker
        )  # wheelhouse downloaded at submit, site installed by the task
        site = json.loads(next((work / "cache" / "sites").glob("*/site.json")).read_text())
        warm = point(work, env, "warm", in_docker)
        ctr_epochs, host_epochs = (
            cold["epoch_times_s"][1:] + warm["epoch_times_s"][1:],
            on_host["epoch_times_s"][1:],
        )
        result = {
            "benchmark": "container_start",
            "machine": machine(),
            "image": IMAGE,
            "repeats": args.repeats,
            "startup_s": {
                "host_python": round(start_host, 3),
                "container_python": round(start_ctr, 3),
                "container_import_torch": round(start_torch, 3),
                "container_over_host": round(start_ctr / start_host, 1),
            },
            "provisioning": {
                "site_install_s": site["seconds"],
                "distributions_installed": len(site["installed"]),
                "kept_from_image": sorted(site["kept_from_image"]),
                "first_task_submit_s": cold["wall_s"],
                "warm_submit_s": warm["wall_s"],
                "host_submit_s": on_host["wall_s"],
            },
            "epoch_s": {
                "host_median": statistics.median(host_epochs),
                "container_median": statistics.median(ctr_epochs),
                "container_over_host": round(
                    statistics.median(ctr_epochs) / statistics.median(host_epochs), 3
                ),
                "note": "epochs after the first (the first includes the data loader's start)",
            },
        }
        print(json.dumps(result, indent=2))
    finally:
        subprocess.run(["bash", str(ENGINE), "stop", str(engine)], capture_output=True)
        for folder in (work / "runs").glob("*/*/code"):
            from mrihpc.snapshot import make_writable

            make_writable(folder)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
