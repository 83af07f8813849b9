"""Fault injection, as counts: what a killed process, a NaN, a corrupt file, a full disk and
restarted Slurm daemons cost a run. Nothing may be lost; every count below should read 0
(or true for the *_intact / *_right / identical flags).

  kills       kill -9 of the training process at random moments, half of them while a
              checkpoint is being written (a watcher kills it when a temporary file appears);
              each restart must resume where last.pt says and the run must end with the
              weights of an uninterrupted run.
  nan         a 2-point sweep whose first point diverges: it fails with the reason and step,
              the other finishes.
  corrupt     a truncated HDF5 file: refused at submit naming it; truncated after submit, the
              point fails naming it.
  bad_data    damaged data files of all five formats (bad_inputs.py), counted per workload by
              what submit did: named the file / an error not naming it / a traceback / silently
              accepted. Every case belongs in the first column.
  damaged_runs  a run's manifest, status, metrics and provenance files cut, emptied, not UTF-8
              or of the wrong shape, under every verb that reads them: the same four columns.
  disk_full   the run directory on a small tmpfs filled up mid-training (root only): a clear
              error in status.json, no torn file, the previous checkpoint intact, and a
              resume once space is back; and `mrihpc run` on a full disk leaves no run folder.
  slurm       (with --slurm) slurmdbd and slurmctld restarted while a 2-point sweep runs on
              the test cluster: both points end done and status says so.

    python benchmarks/faults.py [--kills 20] [--slurm] [--out benchmarks/results/faults.json]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

import bad_inputs  # beside this script

REPO = Path(__file__).resolve().parents[1]
TINY = {
    "name": "faults",
    "task": "reconstruction",
    "data": {
        "format": "fastmri",
        "synthetic": {
            "volumes": 6,
            "slices": 10,
            "shape": [96, 80],
            "recon_shape": [64, 64],
            "seed": 1,
        },
        "skip_slices": 3,
        "mask": {"kind": "random", "accelerations": [4], "center_fractions": [0.08]},
    },
    "model": {"name": "unet", "channels": 16, "depth": 2, "residual": True, "dropout": 0.1},
    "loss": {"l1": 1.0},
    "optim": {"name": "adam", "lr": 2e-3},
    "schedule": {"warmup_epochs": 1, "restart_epochs": 2},
    "train": {"epochs": 6, "batch_size": 2, "workers": 0, "precision": "fp32", "threads": 1},
    "cluster": {"executor": "local", "time": "10:00", "array_parallelism": 2},
}
ATTEMPT = (
    "import sys; from mrihpc.node.runner import run_point; run_point(sys.argv[1], int(sys.argv[2]))"
)


def mrihpc(*args: str, env=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mrihpc", *args], capture_output=True, text=True, env=env
    )


def new_run(folder: Path, spec: dict, runs: Path, env=None) -> Path:
    """A run directory for ``spec`` (debug executor, nothing started), via the real CLI path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    code = (
        "import sys; from pathlib import Path; from mrihpc.login import checks, launch; "
        "spec, raw, points, _ = checks.prepare(sys.argv[1]); "
        "checks.prepare_data([s for _, s in points]); "
        "print(launch.write_run_directory(Path(sys.argv[2]), spec, raw, sys.argv[1], "
        "points, 'debug').root)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(path), str(runs)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    return Path(out.stdout.strip().splitlines()[-1])


def position(last: Path):
    """(epoch, batch) in last.pt; None without one; "corrupt" when it does not load."""
    from mrihpc.node import checkpoint

    try:
        state = checkpoint.load(last)
    except checkpoint.CheckpointError:
        return "corrupt"
    return None if state is None else (state["epoch"], state.get("batch", 0))


def weights(last: Path) -> dict:
    from mrihpc.node import checkpoint

    return checkpoint.load(last)["nets"]["model"]


def _lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def kills(n: int, work: Path, seed: int = 0) -> dict:
    """kill -9 at n moments; count corrupt checkpoints, restarts from scratch, leftover temp
    files."""
    import torch

    rng = random.Random(seed)
    work.mkdir(parents=True, exist_ok=True)
    reference = new_run(work / "reference", TINY, work / "runs")
    subprocess.run(
        [sys.executable, "-c", ATTEMPT, str(reference), "0"], check=True, capture_output=True
    )
    expected = weights(reference / "points" / "0" / "checkpoints" / "last.pt")
    counts = {
        "kills": 0,
        "during_checkpoint_write": 0,
        "corrupt_checkpoints": 0,
        "restarts_from_scratch": 0,
        "resumed_elsewhere": 0,
        "temp_files_removed_on_restart": 0,
        "leftover_temp_files": 0,
        "runs": 0,
        "final_weights_identical": True,
    }
    while counts["kills"] < n:
        run = new_run(work / f"killed{counts['runs']}", TINY, work / "runs")
        counts["runs"] += 1
        point = run / "points" / "0"
        finished = False
        while not finished:
            before = position(point / "checkpoints" / "last.pt")
            if before == "corrupt":
                counts["corrupt_checkpoints"] += 1
            stale = list(point.rglob(".*.tmp"))
            counts["temp_files_removed_on_restart"] += len(stale)
            logged = _lines(point / "metrics.jsonl")
            log = work / f"attempt{time.time_ns()}.log"
            with open(log, "w") as out:
                proc = subprocess.Popen(
                    [sys.executable, "-c", ATTEMPT, str(run), "0"],
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
                at_write = counts["kills"] % 2 == 1 and counts["kills"] < n
                deadline = time.time() + (rng.uniform(2.5, 6.0) if not at_write else 30)
                killed = False
                while proc.poll() is None and time.time() < deadline and counts["kills"] < n:
                    if at_write and any(
                        p.name.startswith(".last.pt.")
                        for p in (point / "checkpoints").glob(".*.tmp")
                    ):
                        break
                    time.sleep(0.001 if at_write else 0.02)
                if proc.poll() is None and counts["kills"] < n:
                    if at_write and any((point / "checkpoints").glob(".*.tmp")):
                        counts["during_checkpoint_write"] += 1
                    proc.send_signal(signal.SIGKILL)
                    killed = True
                    counts["kills"] += 1
                proc.wait()
            text = log.read_text()
            trained = _lines(point / "metrics.jsonl") > logged  # it logged a step or epoch
            if before not in (None, "corrupt") and (trained or not killed):
                if "[mrihpc] resumed from" not in text:
                    counts["restarts_from_scratch"] += 1
                elif f"[mrihpc] resumed from epoch {before[0]} batch {before[1]} " not in text:
                    counts["resumed_elsewhere"] += 1
            if not killed and proc.returncode != 0:  # ended on its own, badly: say why, try again
                counts.setdefault("attempt_failures", []).append(text[-600:])
                if len(counts["attempt_failures"]) > 3:
                    raise RuntimeError(f"attempts keep failing: {counts['attempt_failures']}")
                continue
            finished = not killed
        got = weights(point / "checkpoints" / "last.pt")
        same = all(torch.equal(got[k], expected[k]) for k in expected)
        counts["final_weights_identical"] &= same
        counts["leftover_temp_files"] += len(list(point.rglob(".*.tmp")))
    return counts


def nan(work: Path) -> dict:
    work.mkdir(parents=True, exist_ok=True)
    spec = {
        **TINY,
        "name": "nan",
        "train": {**TINY["train"], "epochs": 1},
        "sweep": {"points": [{"optim.lr": 1e30}, {}]},
    }
    path = work / "nan.yaml"
    path.write_text(yaml.safe_dump(spec))
    mrihpc("submit", str(path), "--runs", str(work / "runs"))
    run = next((work / "runs" / "nan").iterdir())
    bad, good = (json.loads((run / "points" / str(i) / "status.json").read_text()) for i in (0, 1))
    return {
        "failed_with_reason_and_step": bad["state"] == "failed"
        and "NonFiniteLoss" in bad["error"]
        and " step " in bad["error"],
        "other_point_done": good["state"] == "done",
        "error": bad["error"][:160],
    }


def corrupt(work: Path) -> dict:
    """A knee file truncated before submit is refused there, naming it (nothing queued); one
    truncated after submit, while the point is queued, fails that point naming it."""
    work.mkdir(parents=True, exist_ok=True)
    data = work / "knee"
    mrihpc(
        "data",
        "synth",
        "knee",
        str(data),
        "--volumes",
        "5",
        "--slices",
        "8",
        "--shape",
        "96",
        "80",
        "--recon-shape",
        "64",
        "64",
    )
    victim = sorted((data / "val").iterdir())[0]
    intact = victim.read_bytes()
    spec = {
        **TINY,
        "name": "corrupt",
        "data": {k: v for k, v in TINY["data"].items() if k != "synthetic"} | {"root": str(data)},
    }
    run = new_run(work / "corrupt", spec, work / "runs")
    victim.write_bytes(intact[:2000])  # truncated mid-file
    subprocess.run([sys.executable, "-c", ATTEMPT, str(run), "0"], capture_output=True)
    status = json.loads((run / "points" / "0" / "status.json").read_text())
    path = work / "corrupt" / "again.yaml"
    path.write_text(yaml.safe_dump({**spec, "name": "again"}))
    refused = mrihpc("submit", str(path), "--runs", str(work / "runs"))
    return {
        "failed_naming_the_file": status["state"] == "failed"
        and str(victim) in (status.get("error") or ""),
        "refused_at_submit_naming_the_file": refused.returncode == 2
        and str(victim) in refused.stderr
        and not (work / "runs" / "again").exists(),
        "error": (status.get("error") or "")[:200],
        "submit_error": refused.stderr.strip()[-200:],
    }


def disk_full(work: Path) -> dict:
    work.mkdir(parents=True, exist_ok=True)
    mount = work / "tmpfs"
    mount.mkdir(parents=True)
    if subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mount)], capture_output=True
    ).returncode:
        return {"skipped": "cannot mount a tmpfs here (needs root)"}
    try:
        env = {
            **os.environ,
            "MRIHPC_CACHE": str(work / "cache"),
        }  # the data stays off the small disk
        run = new_run(
            work / "full",
            {**TINY, "name": "full", "train": {**TINY["train"], "epochs": 40}},
            mount / "runs",
            env,
        )
        point = run / "points" / "0"
        proc = subprocess.Popen(
            [sys.executable, "-c", ATTEMPT, str(run), "0"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.time() + 120
        while time.time() < deadline and position(point / "checkpoints" / "last.pt") is None:
            time.sleep(0.1)
        filler = mount / "filler"
        try:  # take every free byte
            with open(filler, "wb") as f:
                while True:
                    f.write(b"\0" * 65536)
                    f.flush()
        except OSError:
            pass
        proc.wait(timeout=300)
        status = json.loads((point / "status.json").read_text())
        before = position(point / "checkpoints" / "last.pt")
        counts = {
            "exit_code": proc.returncode,
            "clear_error": status.get("state") == "failed"
            and "No space left" in (status.get("error") or ""),
            "torn_files": len(list(point.rglob(".*.tmp"))),
            "previous_checkpoint_intact": before not in (None, "corrupt"),
            "error": (status.get("error") or "")[:160],
        }
        # still full: `mrihpc run` refuses with a message and leaves no half-made run folder
        spec = work / "full.yaml"
        spec.write_text(yaml.safe_dump({**TINY, "name": "again"}))
        out = mrihpc("run", str(spec), "--runs", str(mount / "runs"), env=env)
        counts["run_on_full_disk_message"] = (
            out.returncode == 2 and "No space left" in out.stderr and "Traceback" not in out.stderr
        )
        counts["half_made_run_folders"] = (
            len(list((mount / "runs" / "again").glob("*")))
            if (mount / "runs" / "again").exists()
            else 0
        )
        filler.unlink()
        subprocess.run([sys.executable, "-c", ATTEMPT, str(run), "0"], env=env, capture_output=True)
        after = json.loads((point / "status.json").read_text())
        counts["resumed_once_space_is_back"] = (
            after.get("state") == "done" and after.get("attempts") == 2
        )
        return counts
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def slurm(work: Path, cluster: Path) -> dict:
    work.mkdir(parents=True, exist_ok=True)
    conf = cluster / "etc" / "slurm.conf"
    if subprocess.run(
        ["scontrol", "ping"], env={**os.environ, "SLURM_CONF": str(conf)}, capture_output=True
    ).returncode:
        subprocess.run(
            ["bash", str(REPO / "slurm" / "cluster.sh"), "start", str(cluster)],
            check=True,
            stdout=sys.stderr,
        )
    env = {**os.environ, "SLURM_CONF": str(conf)}
    spec = {
        **TINY,
        "name": "daemons",
        "train": {**TINY["train"], "epochs": 8},
        "cluster": {
            "executor": "slurm",
            "time": "10:00",
            "array_parallelism": 2,
            "cpus_per_task": 1,
        },
        "sweep": {"points": [{}, {"train.seed": 1}]},
    }
    path = work / "daemons.yaml"
    path.write_text(yaml.safe_dump(spec))
    mrihpc("submit", str(path), "--runs", str(work / "runs"), env=env)
    run = next((work / "runs" / "daemons").iterdir())
    time.sleep(6)
    sh = ["bash", str(REPO / "slurm" / "cluster.sh")]
    for verb in ("stop-dbd", "stop-ctld", "start-ctld", "start-dbd"):
        subprocess.run(sh + [verb, str(cluster)], check=True, env=env, capture_output=True)
    deadline = time.time() + 300
    while time.time() < deadline:
        states = [
            json.loads((run / "points" / str(i) / "status.json").read_text()).get("state")
            if (run / "points" / str(i) / "status.json").exists()
            else None
            for i in (0, 1)
        ]
        if all(s in ("done", "failed") for s in states):
            break
        time.sleep(1)
    out = mrihpc("status", str(run), env=env).stdout
    return {
        "points_done": states.count("done"),
        "status_right": "2 points: 2 done" in out,
        "status": out.splitlines()[-1:],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--kills", type=int, default=20)
    p.add_argument(
        "--slurm", action="store_true", help="also restart the test cluster's daemons mid-sweep"
    )
    p.add_argument(
        "--cluster",
        type=Path,
        default=Path(os.environ.get("MRIHPC_TEST_CLUSTER", "/tmp/mrihpc-test-cluster")),
    )
    p.add_argument("--out", type=Path, help="also write the JSON here")
    args = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mrihpc-faults-"))
    os.environ.setdefault("MRIHPC_CACHE", str(work / "cache"))
    start = time.time()
    try:
        result = {
            "benchmark": "faults",
            "kills": kills(args.kills, work / "kills"),
            "nan": nan(work / "nan"),
            "corrupt": corrupt(work / "corrupt"),
            "disk_full": disk_full(work / "disk"),
            "bad_data": bad_inputs.bad_data(work / "bad"),
            "damaged_runs": bad_inputs.damaged_runs(work / "damaged"),
        }
        if args.slurm:
            result["slurm"] = slurm(work / "slurm", args.cluster)
        result["seconds"] = round(time.time() - start, 1)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
