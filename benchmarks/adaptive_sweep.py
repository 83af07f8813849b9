"""Benchmark: successive halving (``sweep.adaptive``) against the full grid, on the real test
cluster, both in the same run.

The quickstart (knee U-Net on its synthetic fastMRI-layout data) swept over learning rate x
width (4 x 4 = 16 points by default). First the full grid, every point to ``--epochs``; then
the same sweep with ``sweep.adaptive: {min_epochs, eta}``: rung arrays and promotion jobs, no
server. Reported: each one's best validation metric (the adaptive one among its last rung), the
epochs each trained (counted from the points' metrics.jsonl), wall time, and CPU-hours from
sacct (points and promotion jobs). Targets: the adaptive best within 1 % of the full grid's, at
<= 35 % of its epochs.

    python benchmarks/adaptive_sweep.py [--epochs 8 --eta 2 --min-epochs 1] > result.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from common import machine  # benchmarks/: the script's own folder
from submit_sweep import cluster_env

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mrihpc import rungs  # noqa: E402 - after the repository is on sys.path
from mrihpc.paths import RunPaths, read_json, scan_jsonl  # noqa: E402
from mrihpc.ranking import best_value  # noqa: E402

TINY_DATA = {"volumes": 4, "slices": 8, "shape": [64, 48], "recon_shape": [32, 32], "seed": 0}


def spec_for(args, adaptive: bool, folder: Path) -> Path:
    spec = yaml.safe_load((REPO / "jobs" / "quickstart.yaml").read_text())
    spec["name"] = "adaptive" if adaptive else "full-grid"
    spec["train"] = {**spec["train"], "epochs": args.epochs}
    spec["cluster"] = {
        "executor": "slurm",
        "time": "30:00",
        "cpus_per_task": 1,
        "array_parallelism": 16,
    }
    spec.pop("monitor", None)
    if args.tiny:
        spec["data"] = {**spec["data"], "synthetic": TINY_DATA, "skip_slices": 2}
    spec["sweep"] = {"grid": {"optim.lr": args.lrs, "model.channels": args.channels}}
    if adaptive:
        spec["sweep"]["adaptive"] = {"min_epochs": args.min_epochs, "eta": args.eta}
    path = folder / f"{spec['name']}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def submit(spec: Path, runs: Path, env: dict) -> RunPaths:
    out = subprocess.run(
        [sys.executable, "-m", "mrihpc", "submit", str(spec), "--runs", str(runs)],
        env=env,
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        raise SystemExit(f"submit failed:\n{out.stdout}\n{out.stderr}")
    return RunPaths(next(p for p in runs.glob("*/*") if p.is_dir()))


def finished(run: RunPaths, manifest: dict) -> bool:
    """Every point of the (last) rung done; an adaptive sweep at its last rung (or stopped)."""
    adaptive = manifest.get("adaptive")
    if adaptive:
        k = len(adaptive["rungs"]) - 1
        if not rungs.is_last(manifest, k) and adaptive["rungs"][k]["points"]:
            return False
        points = adaptive["rungs"][k]["points"]
    else:
        points = [p["index"] for p in manifest["points"]]
    statuses = [read_json(run.point(i).status, {}) or {} for i in points]
    if any(s.get("state") == "failed" for s in statuses):
        raise SystemExit(f"{run.root}: a point failed: {statuses}")
    epochs = adaptive["rungs"][-1]["epochs"] if adaptive else None
    return all(
        s.get("state") == "done" and s.get("epoch") == (epochs or s.get("epochs")) for s in statuses
    )


def wait(run: RunPaths, timeout: float) -> float:
    start = time.monotonic()
    while not finished(run, read_json(run.manifest)):
        if time.monotonic() - start > timeout:
            raise SystemExit(f"{run.root}: not finished after {timeout:.0f} s")
        time.sleep(1)
    return time.monotonic() - start


def epochs_trained(run: RunPaths, manifest: dict) -> int:
    """Distinct epochs each point trained (its metrics.jsonl), summed."""
    total = 0
    for p in manifest["points"]:
        records, _ = scan_jsonl(run.point(p["index"]).metrics, dict)
        total += len({r["epoch"] for r in records if r.get("kind") == "epoch"})
    return total


def cpu_hours(run: RunPaths, manifest: dict, env: dict) -> float:
    """sacct's allocated CPUs x elapsed of every job of the run: arrays and promotion jobs."""
    ids = [s["array_id"] for s in manifest["submissions"] if s.get("array_id")]
    ids += [p["job_id"] for p in (manifest.get("adaptive") or {}).get("promotions", [])]
    out = subprocess.run(
        ["sacct", "-X", "-n", "-P", "-D", "-j", ",".join(ids), "-o", "JobID,AllocCPUS,ElapsedRaw"],
        env=env,
        capture_output=True,
        text=True,
    ).stdout
    return (
        sum(int(c) * int(s) for _, c, s in (line.split("|") for line in out.splitlines() if line))
        / 3600
    )


def measure(run: RunPaths, seconds: float, env: dict) -> dict:
    manifest = read_json(run.manifest)
    metric, higher = manifest["metric"], manifest["metric_directions"][manifest["metric"]] == "max"
    last = (
        manifest["adaptive"]["rungs"][-1]["points"]
        if manifest.get("adaptive")
        else [p["index"] for p in manifest["points"]]
    )
    values = {i: best_value(run.point(i).metrics, metric, higher) for i in last}
    best = (max if higher else min)(values, key=values.get)
    out = {
        "run": str(run.root),
        "best_point": best,
        f"best_val_{metric}": values[best],
        "epochs": epochs_trained(run, manifest),
        "wall_s": round(seconds, 1),
        "cpu_hours": round(cpu_hours(run, manifest, env), 5),
    }
    if manifest.get("adaptive"):
        a = manifest["adaptive"]
        out |= {
            "rungs": [{"epochs": r["epochs"], "points": len(r["points"])} for r in a["rungs"]],
            "promotion_jobs": len(a["promotions"]),
        }
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--min-epochs", type=int, default=1)
    p.add_argument("--eta", type=int, default=2)
    p.add_argument("--lrs", type=float, nargs="+", default=[3e-4, 1e-3, 2e-3, 5e-3])
    p.add_argument("--channels", type=int, nargs="+", default=[4, 8, 12, 16])
    p.add_argument("--tiny", action="store_true", help="tiny data (a smoke test of the script)")
    p.add_argument("--timeout", type=float, default=3600)
    p.add_argument(
        "--cluster", default=os.environ.get("MRIHPC_TEST_CLUSTER", "/tmp/mrihpc-test-cluster")
    )
    args = p.parse_args()
    env = cluster_env(Path(args.cluster))
    work = Path(tempfile.mkdtemp(prefix="mrihpc-adaptive-"))
    env["MRIHPC_CACHE"] = env.get("MRIHPC_CACHE", str(work / "cache"))
    results = {}
    for adaptive in (False, True):
        run = submit(
            spec_for(args, adaptive, work), work / ("adaptive" if adaptive else "full"), env
        )
        results["adaptive" if adaptive else "full_grid"] = measure(
            run, wait(run, args.timeout), env
        )
    full, sh = results["full_grid"], results["adaptive"]
    metric = next(k for k in full if k.startswith("best_val_"))
    gap = abs(sh[metric] - full[metric]) / abs(full[metric])
    ratio = sh["epochs"] / full["epochs"]
    print(
        json.dumps(
            {
                "benchmark": "adaptive_sweep",
                "machine": machine(),
                "points": len(args.lrs) * len(args.channels),
                "epochs": args.epochs,
                "eta": args.eta,
                "min_epochs": args.min_epochs,
                "tiny": args.tiny,
                **results,
                "best_gap_relative": round(gap, 5),
                "epochs_ratio": round(ratio, 4),
                "cpu_hours_ratio": round(sh["cpu_hours"] / full["cpu_hours"], 4)
                if full["cpu_hours"]
                else None,
                "wall_ratio": round(sh["wall_s"] / full["wall_s"], 3),
                "targets": {"best_gap_relative_at_most": 0.01, "epochs_ratio_at_most": 0.35},
                "met": gap <= 0.01 and ratio <= 0.35,
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
