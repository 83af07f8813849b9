"""Benchmark: prediction throughput of knee and cine through ``load_trained``, batched (a
training batch per forward pass) against the per-sample loop every ``predict.py`` ran before
(one slice or case per forward pass: the same code with ``batch_size=1``), in the same run.

Each workload trains one point for a step (synthetic data in its real format, written once),
then predicts its held-out split both ways and as ``mrihpc predict`` does by default (the training
batch on a GPU; on the CPU fewer where samples are large), ``--repeats`` times, and keeps the
fastest of each. The written predictions are compared (largest absolute difference: the target is
1e-5).
The figure includes what a user waits for: reading the data, the forward passes, the files.

    python benchmarks/predict_throughput.py [--repeats 3] [--batch 8] > result.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from common import machine  # benchmarks/: the script's own folder


def one_step(batch: int) -> dict:
    """The train and cluster sections of a point trained for one step, here."""
    train = {
        "epochs": 1,
        "steps_per_epoch": 1,
        "batch_size": batch,
        "workers": 0,
        "precision": "fp32",
        "seed": 0,
    }
    return {"train": train, "cluster": {"executor": "local"}}


def knee_spec(volumes: int, slices: int, size: int, batch: int) -> dict:
    return {
        "name": "predict-knee",
        "task": "reconstruction",
        "data": {
            "format": "fastmri",
            "skip_slices": 0,
            "normalize": "zero_filled_max",
            "synthetic": {
                "volumes": volumes,
                "slices": slices,
                "shape": [2 * size, size],
                "recon_shape": [size, size],
                "seed": 0,
            },
            "mask": {"kind": "random", "accelerations": [4], "center_fractions": [0.08]},
        },
        "model": {"preset": "fastmri"},
        "loss": {"l1": 1.0},
        "optim": {"name": "adam", "lr": 1e-4},
        **one_step(batch),
    }


def cine_spec(cases: int, frames: int, size: int, batch: int) -> dict:
    return {
        "name": "predict-cine",
        "task": "cine",
        "data": {
            "synthetic": {"cases": cases, "frames": frames, "size": size, "seed": 0},
            "mask": {"acceleration": 4, "sample_n": 6},
        },
        "model": {
            "unet": {"preset": "cine", "channels": 32, "depth": 4, "residual": True},
            "refiner": {"width": 32, "blocks": 2},
            "data_consistency": True,
        },
        "loss": {"mse": 1.0},
        "optim": {"name": "adam", "lr": 1e-3},
        **one_step(batch),
    }


def train_point(spec: dict, root: Path) -> Path:
    """Train point 0 of ``spec`` under ``root``; its run folder."""
    import yaml

    from mrihpc.login.cli import main as cli

    path = root / f"{spec['name']}.yaml"
    path.write_text(yaml.safe_dump(spec))
    with contextlib.redirect_stdout(sys.stderr):  # stdout is the JSON
        code = cli(["run", str(path), "--point", "0", "--runs", str(root / "runs")])
    if code != 0:
        raise SystemExit(f"training {path} failed")
    return next(
        p.parents[3] for p in (root / "runs").rglob("last.pt") if spec["name"] in str(p)
    )  # run/points/0/checkpoints


def predictions(folder: Path) -> dict[str, "object"]:
    """name -> array of every prediction file in ``folder`` (knee .h5 volumes, cine .npy)."""
    import h5py
    import numpy as np

    out = {}
    for f in sorted(folder.iterdir()):
        if f.suffix == ".h5":
            with h5py.File(f, "r") as h:
                out[f.name] = h["reconstruction"][()]
        elif f.suffix == ".npy":
            out[f.name] = np.load(f)
    return out


def measure(run: Path, split: str, batch: int, repeats: int, shape: tuple) -> dict:
    """Seconds of predicting ``split`` one sample at a time, ``batch`` at a time and as
    ``mrihpc predict`` does; ``shape``: one sample's network input."""
    import numpy as np

    from mrihpc import workloads
    from mrihpc.node.trained import load_trained

    timings, outputs = {}, {}
    # default: what ``mrihpc predict`` does (the training batch on a GPU, fewer on the CPU for
    # large samples: ``Trained.batch_for``)
    for name, size in (("per_sample", 1), ("batched", batch), ("default", None)):
        trained = load_trained(run, 0, batch_size=size)  # on the GPU where there is one
        predict = workloads.resolve(workloads.get(trained.spec.task).predict)
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            predict(trained, split)
            best = min(best, time.perf_counter() - start)
        timings[name] = best
        outputs[name] = predictions(trained.output_dir(split))
        shutil.rmtree(trained.output_dir(split))
    samples = sum(len(a) for a in outputs["batched"].values())  # knee slices, cine cases
    diff = max(
        float(np.abs(outputs[way][k] - v).max())
        for k, v in outputs["per_sample"].items()
        for way in ("batched", "default")
    )
    return {
        "samples": samples,
        "batch": batch,
        "per_sample_s": round(timings["per_sample"], 3),
        "batched_s": round(timings["batched"], 3),
        "per_sample_samples_per_s": round(samples / timings["per_sample"], 2),
        "batched_samples_per_s": round(samples / timings["batched"], 2),
        "speedup": round(timings["per_sample"] / timings["batched"], 2),
        "default_batch": trained.batch_for(shape),
        "default_s": round(timings["default"], 3),
        "default_speedup": round(timings["per_sample"] / timings["default"], 2),
        "files": len(outputs["batched"]),
        "max_abs_diff": diff,
    }


def matmul_peak(device) -> float:
    """FLOP/s of a float32 2048 x 2048 matmul on ``device``, the best of 5: this device's peak,
    as a reference for the forward passes' rate."""
    import torch

    n = 2048
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    best = float("inf")
    for _ in range(7):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        a @ b
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best


def knee_forward_rate(run: Path, size: int, per_sample_s: float, samples: int) -> dict:
    """The per-sample knee loop's rate against the device's float32 matmul: the U-Net's FLOPs per
    slice (``torch.utils.flop_counter``, direct convolution) times the slices, over the whole
    per-sample time (reading and writing included). At or above 1 the loop already does the
    forward's work as fast as the device multiplies matrices (oneDNN's 3 x 3 convolutions can
    beat it: fewer multiplications than direct), so no batching or fusion in float32 can win
    much on that device."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from mrihpc.node.trained import load_trained

    trained = load_trained(run, 0, batch_size=1)
    x = torch.randn(1, 1, size, size, device=trained.device)
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        trained.nets["model"](x)
    flops, peak = counter.get_total_flops(), matmul_peak(trained.device)
    rate = samples * flops / per_sample_s
    return {
        "gflop_per_slice": round(flops / 1e9, 2),
        "matmul_gflop_per_s": round(peak / 1e9, 1),
        "per_sample_gflop_per_s": round(rate / 1e9, 1),
        "per_sample_over_matmul": round(rate / peak, 2),
    }


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument(
        "--knee",
        nargs=3,
        type=int,
        default=[8, 16, 320],
        metavar=("VOLUMES", "SLICES", "SIZE"),
        help="volumes (a quarter predicted), slices each, image size (fastMRI U-Net, chans "
        "32, 4 pools)",
    )
    p.add_argument(
        "--cine",
        nargs=3,
        type=int,
        default=[40, 20, 96],
        metavar=("CASES", "FRAMES", "SIZE"),
        help="cases (the test split is a fifth), frames, image size",
    )
    args = p.parse_args()
    root = Path(tempfile.mkdtemp(prefix="mrihpc-bench-predict-"))
    os.environ.setdefault("MRIHPC_CACHE", str(root / "cache"))
    import torch

    try:
        volumes, slices, size = args.knee
        knee = train_point(knee_spec(volumes, slices, size, args.batch), root)
        cases, frames, csize = args.cine
        cine = train_point(cine_spec(cases, frames, csize, args.batch), root)
        # the knee twin holds out a quarter of its volumes as val (fastMRI has no test targets)
        results = {
            "knee": measure(knee, "val", args.batch, args.repeats, (1, size, size)),
            "cine": measure(cine, "test", args.batch, args.repeats, (2, frames, csize, csize)),
        }
        k = results["knee"]
        k["forward"] = knee_forward_rate(knee, size, k["per_sample_s"], k["samples"])
        print(
            json.dumps(
                {
                    "benchmark": "predict_throughput",
                    "target_speedup": 3.0,
                    "target_max_abs_diff": 1e-5,
                    "knee": {"volumes": volumes, "slices": slices, "size": size, **results["knee"]},
                    "cine": {"cases": cases, "frames": frames, "size": csize, **results["cine"]},
                    "device": torch.cuda.get_device_name()
                    if torch.cuda.is_available()
                    else f"cpu ({torch.get_num_threads()} threads)",
                    "machine": machine(),
                },
                indent=1,
            )
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
