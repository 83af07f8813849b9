"""Benchmark: submitting a large sweep to the real test cluster, against bare submitit.

For each ``--points`` N, in one run on the same cluster, as whole processes (interpreter start
and imports included, as a user pays them):
  - mrihpc: ``mrihpc submit`` of an N-point spec (load, validate, expand and validate every
    point, write the run directory, one ``sbatch`` per array chunk);
  - reference: a script of bare submitit, ``AutoExecutor.map_array`` of N trivial calls;
  - ``mrihpc submit --dry-run`` (no run directory, no sbatch).
Both arrays are submitted held and cancelled at once, so nothing runs. ``sbatch`` calls are
counted by a shim on PATH; files and bytes written are counted in each one's folder.

    python benchmarks/submit_sweep.py [--points 1000 10000] [--repeats 3] > result.json
"""

from __future__ import annotations

import argparse
import atexit
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

REFERENCE = """
import sys, submitit
def trivial(i):
    return i
ex = submitit.AutoExecutor(folder=sys.argv[1], cluster="slurm")
ex.update_parameters(
    timeout_min=10, slurm_array_parallelism=8, slurm_additional_parameters={"hold": True}
)
n, chunk = int(sys.argv[2]), int(sys.argv[3])  # submitit does not split at MaxArraySize: by hand
jobs = [ex.map_array(trivial, range(s, min(s + chunk, n)))[0] for s in range(0, n, chunk)]
arrays = [job.job_id.split("_")[0] for job in jobs]
print(" ".join(arrays))
"""


def cluster_env(directory: Path) -> dict:
    conf = directory / "etc" / "slurm.conf"
    up = (
        conf.is_file()
        and subprocess.run(
            ["scontrol", "ping"], env={**os.environ, "SLURM_CONF": str(conf)}, capture_output=True
        ).returncode
        == 0
    )
    if not up:  # started here, stopped when the benchmark ends: no daemons left behind
        atexit.register(
            subprocess.run,
            ["bash", str(REPO / "slurm" / "cluster.sh"), "stop", str(directory)],
            stdout=sys.stderr,
        )
        subprocess.run(
            ["bash", str(REPO / "slurm" / "cluster.sh"), "start", str(directory)],
            check=True,
            stdout=sys.stderr,
        )
    return {**os.environ, "SLURM_CONF": str(conf)}


def spec_for(points: int, folder: Path) -> Path:
    spec = yaml.safe_load((REPO / "jobs" / "quickstart.yaml").read_text())
    spec["name"] = "bench"
    spec["cluster"] = {
        "executor": "slurm",
        "time": "10:00",
        "array_parallelism": 8,
        "sbatch": {"hold": True},
    }
    spec["sweep"] = {"grid": {"train.seed": list(range(points))}, "max_points": max(points, 10_000)}
    path = folder / f"bench-{points}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def timed(cmd: list[str], env: dict) -> tuple[float, str]:
    start = time.perf_counter()
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{out.stdout}\n{out.stderr}")
    return time.perf_counter() - start, out.stdout


def written(folder: Path) -> dict:
    files = [p for p in folder.rglob("*") if p.is_file()]
    return {"files": len(files), "bytes": sum(p.stat().st_size for p in files)}


def cancel(job_ids: list[str], env: dict) -> None:
    if job_ids:
        subprocess.run(["scancel", *job_ids], env=env, capture_output=True)


def max_array_size(env: dict) -> int:
    out = subprocess.run(
        ["scontrol", "show", "config"], env=env, capture_output=True, text=True
    ).stdout
    return next(
        int(line.split("=")[1]) for line in out.splitlines() if line.startswith("MaxArraySize")
    )


def one_size(points: int, repeats: int, work: Path, env: dict, calls: Path) -> dict:
    max_array = max_array_size(env)
    spec = spec_for(points, work)
    mrihpc = [sys.executable, "-m", "mrihpc"]
    ours, theirs, dry = [], [], []
    for r in range(repeats):
        runs = work / f"runs-{points}-{r}"
        before = len(calls.read_text().splitlines()) if calls.is_file() else 0
        seconds, out = timed(mrihpc + ["submit", str(spec), "--runs", str(runs)], env)
        ours.append(seconds)
        ours_sbatch = len(calls.read_text().splitlines()) - before
        cancel(
            [
                j
                for line in out.splitlines()
                if "submitted array job " in line
                for j in line.split("submitted array job ")[1].split(" with")[0].split(", ")
            ],
            env,
        )
        ours_written = written(runs)

        folder = work / f"submitit-{points}-{r}"
        script = work / "reference.py"
        script.write_text(REFERENCE)
        before = len(calls.read_text().splitlines())
        seconds, out = timed(
            [sys.executable, str(script), str(folder), str(points), str(max_array)], env
        )
        theirs.append(seconds)
        theirs_sbatch = len(calls.read_text().splitlines()) - before
        cancel(out.split(), env)
        theirs_written = written(folder)

        seconds, _ = timed(
            mrihpc + ["submit", str(spec), "--dry-run", "--runs", str(work / "dry")], env
        )
        dry.append(seconds)
    mine, ref = statistics.median(ours), statistics.median(theirs)
    return {
        "points": points,
        "mrihpc_submit_s": round(mine, 3),
        "submitit_map_array_s": round(ref, 3),
        "ratio_to_submitit": round(mine / ref, 2),
        "mrihpc_dry_run_s": round(statistics.median(dry), 3),
        "mrihpc_sbatch_calls": ours_sbatch,
        "submitit_sbatch_calls": theirs_sbatch,
        "mrihpc_written": ours_written,
        "submitit_written": theirs_written,
        "runs": {
            "mrihpc_s": [round(s, 3) for s in ours],
            "submitit_s": [round(s, 3) for s in theirs],
        },
    }


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--points", type=int, nargs="+", default=[1000, 10_000])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument(
        "--cluster", default=os.environ.get("MRIHPC_TEST_CLUSTER", "/tmp/mrihpc-test-cluster")
    )
    args = p.parse_args()
    env = cluster_env(Path(args.cluster))
    work = Path(tempfile.mkdtemp(prefix="mrihpc-bench-"))
    shim = work / "bin"
    shim.mkdir()
    calls = work / "sbatch-calls.log"
    calls.touch()
    (shim / "sbatch").write_text(
        f'#!/bin/sh\necho "$@" >> {calls}\nexec {shutil.which("sbatch")} "$@"\n'
    )
    (shim / "sbatch").chmod(0o755)
    env = {**env, "PATH": f"{shim}:{env['PATH']}", "MRIHPC_CACHE": str(work / "cache")}
    # the synthetic data is generated once per cache, not per submission: keep it out of the timing
    subprocess.run(
        [
            sys.executable,
            "-m",
            "mrihpc",
            "run",
            str(spec_for(1, work)),
            "-o",
            "train.epochs=1",
            "-o",
            "train.steps_per_epoch=1",
            "--runs",
            str(work / "warm"),
        ],
        env=env,
        check=True,
        capture_output=True,
    )
    sizes = [one_size(n, args.repeats, work, env, calls) for n in args.points]
    print(
        json.dumps(
            {
                "benchmark": "submit_sweep",
                "sizes": sizes,
                "repeats": args.repeats,
                "targets": {
                    "points": 1000,
                    "submit_s": 0.5,
                    "ratio_to_submitit": 4.0,
                    "written_bytes": 2_000_000,
                },
                "machine": machine(),
            },
            indent=1,
        )
    )
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
