"""``mrihpc profile SPEC [--steps N]``: a few training steps of one point in this process,
with the peak memory and memory_profiler's line-by-line profile of the task's ``train_step``.

memory_profiler's ``LineProfiler`` records the RSS increment of each line as it runs; the
peaks come from the same sampler as ``monitor.memory`` (a thread of this process, so the
profiler's own sampling process is not counted, which ``include_children=True`` would do),
plus CUDA's allocator peak when the point runs on a GPU (never called without one).
"""

from __future__ import annotations

import io
import tempfile
import time
from pathlib import Path

import torch
from memory_profiler import LineProfiler, show_results

from mrihpc import workloads
from mrihpc.node.distributed import World
from mrihpc.node.monitors import Monitors
from mrihpc.node.monitors.memory import MIB, MemoryProfile
from mrihpc.node.train import Trainer
from mrihpc.spec import JobSpec


def profile_steps(spec: JobSpec, steps: int, interval_s: float = 0.1) -> dict:
    """Train ``steps`` batches of ``spec``; returns peaks, step times and the profile as text."""
    device = torch.device(
        "cuda" if spec.cluster.gpus_per_node and torch.cuda.is_available() else "cpu"
    )
    world = World(device=device)
    if spec.train.threads and device.type == "cpu":
        torch.set_num_threads(spec.train.threads)
    task = workloads.resolve(workloads.get(spec.task).task)(spec, world)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(spec, task, world, Path(tmp), Monitors([]))
        memory = MemoryProfile(Path(tmp) / "memory.dat", interval_s, device)
        profiler = LineProfiler(backend="psutil")
        train_step = profiler(type(task).train_step)
        times, done = [], 0
        try:
            while done < steps:
                for batch in trainer.train_loader:
                    batch = trainer.device_batch(
                        batch
                    )  # as the Trainer does: the task's on_device, channels_last
                    start = time.perf_counter()
                    trainer.run_step(batch, lambda b, nets, ctx: train_step(task, b, nets, ctx))
                    times.append(time.perf_counter() - start)
                    done += 1
                    if done == steps:
                        break
        finally:
            memory.close()
    text = io.StringIO()
    show_results(profiler, stream=text, precision=1)
    out = {
        "steps": steps,
        "device": str(device),
        "host_peak_mib": round(memory.host_peak, 1),
        "step_s_median": sorted(times)[len(times) // 2],
        "profile": text.getvalue(),
    }
    if memory.cuda:
        out["cuda_peak_mib"] = round(torch.cuda.max_memory_allocated() / MIB, 1)
    return out
