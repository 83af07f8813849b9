"""Memory profile of a training process: host RSS (memory_profiler) and CUDA memory, sampled
in a daemon thread into ``memory.dat`` in mprof's format, so ``mprof plot memory.dat`` opens it.

    CMDLINE <command>
    MEM <host RSS MiB> <unix time>                         (read by mprof)
    CUDA <allocated MiB> <reserved MiB> <peak MiB> <time>  (mprof skips it; ours)

As a monitor it adds ``mem_host_peak_mib`` and ``mem_cuda_peak_mib`` to each epoch record,
so the peaks reach metrics.jsonl and status.json. Sampling this process from a thread
(``memory_usage(-1)``) avoids counting a sampling child process, which
``include_children=True`` would.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import torch
from memory_profiler import memory_usage

from mrihpc.paths import open_no_follow

MIB = 2**20


class MemoryProfile:
    def __init__(self, path: Path, interval_s: float, device: torch.device):
        self.cuda = (
            device.type == "cuda" and torch.cuda.is_available()
        )  # no CUDA calls without a GPU
        self.host_peak = 0.0
        self.file = open_no_follow(path, "a", buffering=1)
        if path.stat().st_size == 0:
            self.file.write(f"CMDLINE {' '.join(sys.argv)}\n")
        self.stop = threading.Event()
        self.interval_s = interval_s
        self.sample()
        self.thread = threading.Thread(target=self._run, name="mrihpc-memory", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.wait(self.interval_s):
            self.sample()

    def sample(self) -> None:
        ((host, stamp),) = memory_usage(-1, interval=0.01, max_iterations=1, timestamps=True)
        self.host_peak = max(self.host_peak, host)
        self.file.write(f"MEM {host:.6f} {stamp:.4f}\n")
        if self.cuda:
            self.file.write(
                f"CUDA {torch.cuda.memory_allocated() / MIB:.3f} "
                f"{torch.cuda.memory_reserved() / MIB:.3f} "
                f"{torch.cuda.max_memory_allocated() / MIB:.3f} {stamp:.4f}\n"
            )

    def log(self, metrics: dict, step: int) -> None:
        if metrics.get("kind") == "epoch":
            metrics["mem_host_peak_mib"] = round(self.host_peak, 1)
            if self.cuda:
                metrics["mem_cuda_peak_mib"] = round(torch.cuda.max_memory_allocated() / MIB, 1)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=5)
        self.sample()
        self.file.close()
