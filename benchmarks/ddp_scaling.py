"""Benchmark: training steps/s with 1 and 2 DDP ranks (gloo on the CPU: a smoke figure; on a
multi-GPU machine, NCCL and one GPU per rank), and what the ranks' agreement on stop signals and
non-finite losses costs a step.

Each rank builds the real Trainer for the quickstart's knee U-Net (synthetic data, per-rank
batch fixed: weak scaling) and times ``--steps`` of its ``run_step`` after a warm-up, which
agrees as the training loop does. Configurations:
  - ranks 1 (the reference);
  - ranks N, agreement pipelined (``train.stop_check_every`` 10: a non-blocking all-reduce whose
    result is read 10 steps later), the default;
  - ranks N, agreed every step (each step waits on the last one's all-reduce, as the old
    blocking finite check did);
  - ranks N, no agreement within the run;
  - ranks N, pipelined plus a blocking all-reduce every step: the training loop before the
    finite check joined the agreement.
Scaling efficiency = steps/s at N ranks / steps/s at 1 rank (per-rank work is constant).

    python benchmarks/ddp_scaling.py [--ranks 2] [--steps 30] > result.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as torch_dist
import torch.multiprocessing as mp

from common import free_port, machine  # benchmarks/: the script's own folder

#: name -> (steps between agreements, None: none in the run; a blocking all-reduce every step too,
#: as the finite check was before it joined the agreement)
CHECKS = {
    "pipelined": (10, False),
    "every_step": (1, False),
    "none": (None, False),
    "pipelined_plus_blocking_finite": (10, True),
}


class Quiet:
    def log(self, record, step):
        pass


def spec_for(batch: int) -> dict:
    return {
        "name": "ddp",
        "task": "reconstruction",
        "data": {
            "format": "fastmri",
            "synthetic": {
                "volumes": 4,
                "slices": 16,
                "shape": [320, 256],
                "recon_shape": [160, 160],
            },
            "skip_slices": 0,
        },
        "model": {"channels": 16, "depth": 3},
        "loss": {"l1": 1.0},
        "optim": {"name": "adam", "lr": 1e-4},
        "train": {"epochs": 1, "batch_size": batch, "workers": 0, "precision": "fp32", "seed": 0},
    }


def steps_per_s(
    rank: int,
    size: int,
    per_rank_batch: int,
    steps: int,
    warmup: int,
    check: int | None,
    blocking: bool = False,
) -> float:
    from mrihpc.node.distributed import World, all_reduce_mean
    from mrihpc.node.preemption import StopSignals
    from mrihpc.node.train import Trainer
    from mrihpc.specfile import validate_dict
    from mrihpc.workloads.knee.task import ReconstructionTask

    cuda = torch.cuda.is_available() and torch.cuda.device_count() >= size
    device = torch.device("cuda", rank) if cuda else torch.device("cpu")
    world = World(rank=rank, size=size, device=device)
    spec = validate_dict(spec_for(per_rank_batch * size), "bench")
    # no check: an agreement further away than the run (the step still counts its losses)
    signals = StopSignals(every=check or 10**9)
    trainer = Trainer(
        spec,
        ReconstructionTask(spec, world),
        world,
        Path(tempfile.mkdtemp()),
        Quiet(),
        signals=signals,
    )
    batches = [trainer.device_batch(b) for _, b in zip(range(4), trainer.train_loader)]
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    for i in range(warmup + steps):
        if i == warmup:
            sync()
            start = time.perf_counter()
        logged = trainer.run_step(batches[i % len(batches)])  # the agreement included
        if blocking:  # the finite check before this agreement took it in
            all_reduce_mean({"bad": float(not math.isfinite(logged["loss"]))}, world)
    sync()
    rate = steps / (time.perf_counter() - start)
    signals.settle()  # no all-reduce left in flight when the process group goes
    return rate


def _rank(rank: int, size: int, port: int, args, check, out: str) -> None:
    torch.set_num_threads(max(1, (os.cpu_count() or 2) // size))
    backend = "nccl" if torch.cuda.is_available() and torch.cuda.device_count() >= size else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(rank)
    torch_dist.init_process_group(
        backend, init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=size
    )
    try:
        rate = steps_per_s(rank, size, args.batch, args.steps, args.warmup, *check)
        if rank == 0:
            Path(out).write_text(json.dumps(rate))
        # both ranks past their last collective before either closes its sockets: a gloo peer
        # that sees the connection go while it still tears down aborts (seen once in CI, SIGABRT)
        torch_dist.barrier()
    finally:
        torch_dist.destroy_process_group()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--ranks", type=int, default=2)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--batch", type=int, default=2, help="per rank")
    args = p.parse_args()
    os.environ.setdefault("MRIHPC_CACHE", tempfile.mkdtemp(prefix="mrihpc-bench-ddp-"))
    torch.set_num_threads(
        max(1, (os.cpu_count() or 2) // args.ranks)
    )  # the same threads per rank as below
    single = steps_per_s(0, 1, args.batch, args.steps, args.warmup, None)
    multi = {}
    for name, check in CHECKS.items():
        out = tempfile.mktemp()
        mp.spawn(
            _rank, args=(args.ranks, free_port(), args, check, out), nprocs=args.ranks, join=True
        )
        multi[name] = round(json.loads(Path(out).read_text()), 3)
    none = multi["none"]
    print(
        json.dumps(
            {
                "benchmark": "ddp_scaling",
                "ranks": args.ranks,
                "per_rank_batch": args.batch,
                "steps": args.steps,
                "backend": "nccl"
                if torch.cuda.is_available() and torch.cuda.device_count() >= args.ranks
                else "gloo (CPU)",
                "steps_per_s": {
                    "1_rank": round(single, 3),
                    **{f"{args.ranks}_ranks_stop_check_{k}": v for k, v in multi.items()},
                },
                "scaling_efficiency": round(multi["pipelined"] / single, 3),
                "stop_check_cost_fraction": {
                    k: round(1 - v / none, 4) for k, v in multi.items() if k != "none"
                },
                "target_stop_check_cost": 0.01,
                "target_efficiency_8_gpus": 0.9,
                "machine": machine(),
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
