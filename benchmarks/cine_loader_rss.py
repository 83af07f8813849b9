"""Benchmark: host memory of the cine loader as the set grows.

Writes synthetic cine sets of N1 and N2 cases at T x X x Y (default 50 and 200 cases at
20 x 192 x 192, as the course file), then for each: a fresh process converts the .npz into
the memory-mapped cache (streamed) and iterates one epoch of a DataLoader with 2 workers.
Peak RSS of that process and its workers (memory_profiler, children included) is measured;
the reference is what the seed does, ``np.load(npz)[key]`` in one process, measured the same
way. Target: our difference between N2 and N1 under 150 MB.

    python benchmarks/cine_loader_rss.py [--cases 50 200] [--frames 20] [--size 192] > result.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

OURS = """
import sys, numpy as np, torch
from pathlib import Path
from torch.utils.data import DataLoader
from mrihpc.workloads.cine.data import CineCases, _convert, split_cases
from mrihpc.workloads.cine.spec import CineMask
npz, cache = Path(sys.argv[1]), Path(sys.argv[2])
_convert(npz, "dataset", cache)
n = np.load(cache / "data.npy", mmap_mode="r").shape[0]
data = CineCases(cache, list(range(n)), CineMask(), train=True, seed=0)
for batch in DataLoader(data, batch_size=2, num_workers=2):
    pass
"""
SEED = """
import sys, numpy as np
array = np.load(sys.argv[1])["dataset"]  # what the seed does: the whole set, decompressed
total = float(array.sum())
"""


def peak_mib(code: str, *args: str) -> float:
    from memory_profiler import memory_usage

    proc = subprocess.Popen([sys.executable, "-c", code, *args])
    usage = memory_usage(proc, interval=0.05, include_children=True, max_usage=True)
    proc.wait()
    if proc.returncode:
        raise RuntimeError(f"benchmark process failed ({proc.returncode})")
    return round(float(usage), 1)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cases", type=int, nargs=2, default=[50, 200])
    p.add_argument("--frames", type=int, default=20)
    p.add_argument("--size", type=int, default=192)
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    from mrihpc.workloads.cine.synth import generate

    result = {
        "benchmark": "cine_loader_rss",
        "frames": args.frames,
        "size": args.size,
        "workers": 2,
        "runs": {},
    }
    start = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.cases:
            npz = generate(Path(tmp) / f"src{n}", n, args.frames, args.size, seed=0)
            result["runs"][n] = {
                "npz_mib": round(npz.stat().st_size / 2**20, 1),
                "ours_peak_rss_mib": peak_mib(OURS, str(npz), str(Path(tmp) / f"cache{n}")),
                "seed_np_load_peak_rss_mib": peak_mib(SEED, str(npz)),
            }
    a, b = (result["runs"][n] for n in args.cases)
    result["ours_growth_mib"] = round(b["ours_peak_rss_mib"] - a["ours_peak_rss_mib"], 1)
    result["seed_growth_mib"] = round(
        b["seed_np_load_peak_rss_mib"] - a["seed_np_load_peak_rss_mib"], 1
    )
    result["target_growth_mib"] = 150
    result["seconds"] = round(time.time() - start, 1)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
