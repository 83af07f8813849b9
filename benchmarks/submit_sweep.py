"""Benchmark: submitting a 1,000-point sweep to the real test cluster.

Measures, in one run on the same cluster:
  - dry-run: load + validate + expand 1,000 points + render the sbatch script;
  - real submit: the same, plus the run directory and ONE sbatch (array) call, counted by
    an ``sbatch`` shim on PATH that logs each call and runs the real one;
  - reference: what users do by hand, one ``sbatch`` per point, timed for a sample of points
    and scaled to 1,000.
The array is submitted held (``--hold``) and cancelled at once, so nothing trains.

    python benchmarks/submit_sweep.py [--points 1000] [--cluster DIR] > result.json
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def cluster_env(directory: Path) -> dict:
    conf = directory / "etc" / "slurm.conf"
    up = conf.is_file() and subprocess.run(["scontrol", "ping"], env={**os.environ, "SLURM_CONF": str(conf)},
                                           capture_output=True).returncode == 0
    if not up:
        subprocess.run(["bash", str(REPO / "slurm" / "cluster.sh"), "start", str(directory)], check=True,
                       stdout=sys.stderr)
    return {**os.environ, "SLURM_CONF": str(conf)}


def spec_for(points: int, folder: Path) -> Path:
    spec = yaml.safe_load((REPO / "jobs" / "quickstart.yaml").read_text())
    spec["name"] = "bench"
    spec["cluster"] = {"executor": "slurm", "time": "10:00", "array_parallelism": 8, "sbatch": {"hold": True}}
    spec["sweep"] = {"grid": {"train.seed": list(range(points))}}
    path = folder / "bench.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def timed(cmd: list[str], env: dict) -> tuple[float, str]:
    start = time.perf_counter()
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{out.stdout}\n{out.stderr}")
    return time.perf_counter() - start, out.stdout


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--points", type=int, default=1000)
    p.add_argument("--reference-sample", type=int, default=25)
    p.add_argument("--cluster", default=os.environ.get("MRIHPC_TEST_CLUSTER", "/tmp/mrihpc-test-cluster"))
    args = p.parse_args()
    env = cluster_env(Path(args.cluster))
    work = Path(tempfile.mkdtemp(prefix="mrihpc-bench-"))
    shim = work / "bin"
    shim.mkdir()
    calls = work / "sbatch-calls.log"
    (shim / "sbatch").write_text(f"#!/bin/sh\necho \"$@\" >> {calls}\nexec {shutil.which('sbatch')} \"$@\"\n")
    (shim / "sbatch").chmod(0o755)
    env = {**env, "PATH": f"{shim}:{env['PATH']}", "MRIHPC_CACHE": str(work / "cache")}
    spec = spec_for(args.points, work)
    mrihpc = [sys.executable, "-m", "mrihpc"]

    # the synthetic data is generated once per cache, not per submission: keep it out of the timing
    subprocess.run(mrihpc + ["run", str(spec), "-o", "train.epochs=1", "-o", "train.steps_per_epoch=1",
                             "--runs", str(work / "warm")], env=env, check=True, capture_output=True)
    dry_s, _ = timed(mrihpc + ["submit", str(spec), "--dry-run", "--runs", str(work / "runs")], env)
    submit_s, out = timed(mrihpc + ["submit", str(spec), "--runs", str(work / "runs")], env)
    array = out.split("submitted array job ")[1].split()[0]
    subprocess.run(["scancel", array], env=env)
    sbatch_calls = len(calls.read_text().splitlines())

    # reference: one sbatch per point, as by hand (held, then cancelled)
    ids, start = [], time.perf_counter()
    for i in range(args.reference_sample):
        out = subprocess.run(["sbatch", "--hold", "--parsable", f"--output={work}/ref-%j.out", "--wrap", "true"],
                             env=env, capture_output=True, text=True, check=True)
        ids.append(out.stdout.strip().split(";")[0])
    per_job = (time.perf_counter() - start) / args.reference_sample
    subprocess.run(["scancel", *ids], env=env)

    result = {
        "benchmark": "submit_sweep", "points": args.points,
        "dry_run_s": round(dry_s, 3), "submit_s": round(submit_s, 3), "sbatch_calls": sbatch_calls,
        "reference_sbatch_per_point_s": round(per_job, 4),
        "reference_one_sbatch_per_point_s": round(per_job * args.points, 3),
        "speedup_vs_reference": round(per_job * args.points / submit_s, 2),
    }
    print(json.dumps(result, indent=2))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
