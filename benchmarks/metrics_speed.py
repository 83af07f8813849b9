"""Benchmark: fastMRI's volume metrics (SSIM, PSNR, NMSE) in torch (``mrihpc.metrics``) against
scikit-image / NumPy as fastMRI's evaluate.py computes them, on one 35 x 320 x 320 volume.

Reference: skimage ``structural_similarity`` per slice (7 x 7 window, data_range = max(gt)),
``peak_signal_noise_ratio`` with the same data range, NMSE in NumPy. Ours: the same
definitions in float64 torch on the CPU (and on the GPU when there is one). Median of
``--repeats``; the values must agree to 1e-4.

    python benchmarks/metrics_speed.py [--repeats 5] > result.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from common import machine  # benchmarks/: the script's own folder


def reference(gt: np.ndarray, pred: np.ndarray) -> dict:
    maxval = gt.max()
    ssim = np.mean(
        [structural_similarity(g, p, data_range=maxval, win_size=7) for g, p in zip(gt, pred)]
    )
    return {
        "ssim": float(ssim),
        "psnr": float(peak_signal_noise_ratio(gt, pred, data_range=maxval)),
        "nmse": float(np.linalg.norm(gt - pred) ** 2 / np.linalg.norm(gt) ** 2),
    }


def timed(fn, repeats: int) -> tuple[float, dict]:
    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--shape", type=int, nargs=3, default=[35, 320, 320])
    args = p.parse_args()
    from mrihpc.metrics import volume_metrics

    rng = np.random.default_rng(0)
    gt = rng.random(args.shape).astype(np.float32)
    pred = np.clip(gt + rng.normal(0, 0.05, gt.shape), 0, None).astype(np.float32)
    ref_s, ref = timed(lambda: reference(gt, pred), args.repeats)
    g, q = torch.from_numpy(gt), torch.from_numpy(pred)
    cpu_s, cpu = timed(lambda: volume_metrics(g, q), args.repeats)
    result = {
        "benchmark": "metrics_speed",
        "volume": args.shape,
        "skimage_s": round(ref_s, 4),
        "torch_cpu_s": round(cpu_s, 4),
        "speedup_cpu": round(ref_s / cpu_s, 1),
        "max_abs_diff_cpu": max(abs(cpu[k] - ref[k]) for k in ref),
        "values": ref,
        "target_speedup": 10,
        "tolerance": 1e-4,
    }
    if torch.cuda.is_available():
        gc, qc = g.cuda(), q.cuda()
        volume_metrics(gc, qc)

        def on_gpu():
            out = volume_metrics(gc, qc)
            torch.cuda.synchronize()
            return out

        gpu_s, gpu = timed(on_gpu, args.repeats)
        result |= {
            "torch_gpu_s": round(gpu_s, 5),
            "speedup_gpu": round(ref_s / gpu_s, 1),
            "max_abs_diff_gpu": max(abs(gpu[k] - ref[k]) for k in ref),
        }
    result["machine"] = f"{machine()} ({torch.get_num_threads()} threads)"
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
