"""Benchmark: slices/s of the fastMRI-size U-Net training step (320 x 320, chans 32, 4 pools,
batch ``--batch``) under the spec options the Trainer applies: fp32 (the reference), bf16
autocast, ``train.channels_last``, ``train.compile``, and channels_last + compile.

Each configuration builds the real Trainer (knee task, synthetic fastMRI-layout data) and times
``task.train_step`` on one batch already on the device, so the loader is not in the figure
(benchmarks/knee_loader.py measures it). On a GPU it also reports model FLOPs utilisation: the
step's FLOPs counted by ``torch.utils.flop_counter`` over the device's dense bf16 peak. On the
CPU the figures are a smoke test (bf16 autocast is a GPU option there).

    python benchmarks/train_step.py [--steps 10] [--configs fp32 compile ...] > result.json
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from common import machine  # benchmarks/: the script's own folder

REPO = Path(__file__).resolve().parents[1]
CONFIGS = {
    "fp32": {},
    "bf16": {"precision": "bf16"},
    "channels_last": {"channels_last": True},
    "compile": {"compile": True},
    "channels_last+compile": {"channels_last": True, "compile": True},
    "bf16+channels_last+compile": {"precision": "bf16", "channels_last": True, "compile": True},
}
# dense tensor-core bf16 peaks from NVIDIA's data sheets, most specific name first: an H100 PCIe
# card peaks lower than the SXM part, and dividing by the SXM figure would understate its MFU
PEAK_BF16 = (
    ("H100 PCIe", 756e12),
    ("H100 NVL", 835e12),
    ("H100", 989e12),
    ("H200", 989e12),
    ("A100", 312e12),
)


def peak_bf16(name: str) -> float | None:
    """The dense bf16 peak of a device named like ``torch.cuda.get_device_name()``, or None."""
    return next((v for k, v in PEAK_BF16 if k in name), None)


class Quiet:
    def log(self, record, step):
        pass


def spec_for(options: dict, batch: int, size: int) -> dict:
    return {
        "name": "step",
        "task": "reconstruction",
        "data": {
            "format": "fastmri",
            "synthetic": {
                "volumes": 2,
                "slices": max(4, batch),
                "shape": [size * 2, size],
                "recon_shape": [size, size],
            },
            "skip_slices": 0,
        },
        "model": {"preset": "fastmri"},
        "loss": {"l1": 1.0},
        "optim": {"name": "adam", "lr": 1e-4},
        "train": {
            "epochs": 1,
            "batch_size": batch,
            "workers": 0,
            "precision": "fp32",
            "seed": 0,
            **options,
        },
    }


def measure(options: dict, steps: int, batch: int, size: int, warmup: int) -> dict:
    import torch

    from mrihpc.node.distributed import World
    from mrihpc.node.train import Trainer
    from mrihpc.specfile import validate_dict
    from mrihpc.workloads.knee.task import ReconstructionTask

    device = torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu")
    world = World(device=device)
    spec = validate_dict(spec_for(options, batch, size), "bench")
    trainer = Trainer(
        spec, ReconstructionTask(spec, world), world, Path(tempfile.mkdtemp()), Quiet()
    )
    batch_data = trainer.device_batch(next(iter(trainer.train_loader)))
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    start = time.perf_counter()
    for _ in range(warmup):  # compilation and autotuning happen here
        trainer.run_step(batch_data)
    sync()
    warm_s = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(steps):
        trainer.run_step(batch_data)
    sync()
    step_s = (time.perf_counter() - start) / steps
    out = {
        "step_s": round(step_s, 4),
        "slices_per_s": round(batch / step_s, 2),
        "warmup_s": round(warm_s, 2),
    }
    if device.type == "cuda":
        from torch.utils.flop_counter import FlopCounterMode

        with FlopCounterMode(display=False) as counter:
            trainer.run_step(batch_data)
        peak = peak_bf16(torch.cuda.get_device_name())
        flops = counter.get_total_flops()
        out |= {"flops_per_step": flops, "achieved_tflops": round(flops / step_s / 1e12, 1)}
        if peak:
            out["mfu"] = round(flops / step_s / peak, 3)
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--size", type=int, default=320)
    p.add_argument(
        "--configs",
        nargs="+",
        default=None,
        help=f"of {', '.join(CONFIGS)} (default: all the device runs)",
    )
    args = p.parse_args()
    os.environ.setdefault("MRIHPC_CACHE", tempfile.mkdtemp(prefix="mrihpc-bench-step-"))
    import torch

    cuda = torch.cuda.is_available()
    names = args.configs or [n for n in CONFIGS if cuda or "bf16" not in n]
    results = {
        name: measure(CONFIGS[name], args.steps, args.batch, args.size, args.warmup)
        for name in names
    }
    ref = results.get("fp32")
    for r in results.values():
        if ref:
            r["speedup_vs_fp32"] = round(ref["step_s"] / r["step_s"], 2)
    print(
        json.dumps(
            {
                "benchmark": "train_step",
                "model": "fastMRI U-Net, chans 32, 4 pools (7,756,097 parameters)",
                "image": [args.size, args.size],
                "batch": args.batch,
                "steps": args.steps,
                "device": torch.cuda.get_device_name()
                if cuda
                else f"cpu ({torch.get_num_threads()} threads)",
                "configs": results,
                "target_mfu_h100": 0.35,
                "machine": machine(),
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
