"""Benchmark: the knee training pipeline's slices/s against a fastMRI-style reference, on the same
files, with 0 and N DataLoader workers; and the loader's host RSS over 10 and 100 volumes.

Reference (fastMRI's SliceDataset + UnetDataTransform, written out in NumPy): every item opens
the HDF5 file, parses its ISMRMRD header (XML) for the encoding and reconstruction sizes, reads
the slice, draws a random column mask, applies it and inverts with NumPy's centred FFT, crops,
takes the magnitude, normalises by instance statistics and reads the target. Ours: the
``reconstruction`` task's dataset (files and datasets opened once per worker, headers indexed once
and cached, the inverse FFT along H on the sampled columns only, no shift copies), read through the
Trainer's loader (``rank_loader``: its workers stack each batch's images into shared memory
allocated once, ``BatchSlots``, where the reference's DataLoader makes a new shared-memory file per
tensor per batch). Both iterate the same slices in the same order, one epoch after a warm-up epoch;
persistent workers for both when N > 0.

``data.transform_on: device``: the workers only read k-space and draw masks (the targets go through
``BatchSlots``, the sampled columns, whose number varies, the DataLoader's way); the masking,
inverse FFT, crop and normalisation run batched on the training device (a GPU when there is one,
else this CPU). Reported per worker count: the loader alone, and the loader with the batched
transform; next to them the training step's slices/s (the fastMRI U-Net at this size, batch
``--batch``, on the same device: bf16 on a GPU), so "is the loader the bottleneck" is one ratio.

Epoch start (N > 0): seconds from a second epoch's start to its first batch, with persistent
workers (as the Trainer runs them) and with workers re-forked every epoch (as it did before).

RSS: the peak resident memory of the process and its workers (memory_profiler) over one epoch
of our loader at 10 and 100 synthetic volumes (smaller slices); target: difference < 100 MB.

    python benchmarks/knee_loader.py [--volumes 8] [--workers 0 2] > result.json
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import h5py
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, SequentialSampler

from common import machine  # benchmarks/: the script's own folder

NS = {"m": "http://www.ismrm.org/ISMRMRD"}


class FastMRIStyle(Dataset):
    """What fastMRI's scripts do per item, in NumPy (see the module docstring)."""

    def __init__(
        self,
        files: list[Path],
        skip: int,
        acceleration: int = 4,
        center_fraction: float = 0.08,
        seed: int = 0,
    ):
        self.items = []
        for path in files:
            with h5py.File(path, "r") as f:
                self.items += [(path, s) for s in range(skip, f["kspace"].shape[0])]
        self.acceleration, self.center_fraction, self.seed = acceleration, center_fraction, seed

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        path, s = self.items[i]
        with h5py.File(path, "r") as f:
            header = ET.fromstring(f["ismrmrd_header"][()])
            enc = header.find("m:encoding/m:encodedSpace/m:matrixSize", NS)
            rec = header.find("m:encoding/m:reconSpace/m:matrixSize", NS)
            recon = (int(rec.find("m:x", NS).text), int(rec.find("m:y", NS).text))
            _ = (int(enc.find("m:x", NS).text), int(enc.find("m:y", NS).text))
            kspace = f["kspace"][s]
            target = f["reconstruction_esc"][s] if "reconstruction_esc" in f else None
        cols = kspace.shape[-1]
        rng = np.random.default_rng([self.seed, i])
        low = int(round(cols * self.center_fraction))
        prob = (cols / self.acceleration - low) / (cols - low)
        mask = rng.uniform(size=cols) < prob
        pad = (cols - low + 1) // 2
        mask[pad : pad + low] = True
        masked = kspace * mask[None, :]
        image = np.fft.fftshift(
            np.fft.ifft2(np.fft.ifftshift(masked, axes=(-2, -1)), norm="ortho"), axes=(-2, -1)
        )
        h, w = recon[1], recon[0]
        top, left = (image.shape[0] - h) // 2, (image.shape[1] - w) // 2
        image = np.abs(image[top : top + h, left : left + w]).astype(np.float32)
        mean, std = image.mean(), image.std() + 1e-11
        image = (image - mean) / std
        target = (
            np.zeros_like(image) if target is None else ((target - mean) / std).astype(np.float32)
        )
        return {"input": torch.from_numpy(image)[None], "target": torch.from_numpy(target)[None]}


def slices_per_s(
    dataset, workers: int, batch: int, trainers: bool = False, epochs: int = 3
) -> float:
    """The median over ``epochs`` epochs of the slices/s, after a warm-up epoch (one epoch of a
    few hundred slices on a shared 2-core VM varies by +-20 %). ``trainers``: through the Trainer's
    loader (``rank_loader``: persistent workers, fixed-shape batches through ``BatchSlots``), else a
    plain persistent DataLoader with the dataset's collate."""
    if trainers:
        from mrihpc.node.loading import rank_loader

        loader = rank_loader(dataset, SequentialSampler(dataset), batch, False, workers, False, 0)
    else:
        loader = DataLoader(
            dataset,
            batch_size=batch,
            shuffle=False,
            num_workers=workers,
            persistent_workers=workers > 0,
            collate_fn=getattr(dataset, "collate", None),
        )
    for _ in loader:  # warm-up epoch: worker start, page cache, our header index
        pass
    rates = []
    for _ in range(epochs):
        start = time.perf_counter()
        n = sum(len(b["target"]) for b in loader)
        rates.append(n / (time.perf_counter() - start))
    return sorted(rates)[len(rates) // 2]


def second_epoch_first_batch_s(dataset, workers: int, batch: int, persistent: bool) -> float:
    """Seconds from starting the second epoch to its first batch: what re-forking the workers
    (and re-opening their files) costs every epoch without persistent workers."""
    loader = DataLoader(
        dataset,
        batch_size=batch,
        num_workers=workers,
        persistent_workers=persistent,
        collate_fn=getattr(dataset, "collate", None),
    )
    for _ in loader:
        pass
    start = time.perf_counter()
    next(iter(loader))
    return time.perf_counter() - start


def with_transform(dataset, workers: int, batch: int, device) -> float:
    """data.transform_on: device: the Trainer's raw loader, each batch moved to ``device`` and
    finished there."""
    from mrihpc.workloads.knee.kspace.slices import finish_batch
    from mrihpc.node.loading import rank_loader
    from mrihpc.node.task import to_device

    loader = rank_loader(
        dataset, SequentialSampler(dataset), batch, False, workers, device.type == "cuda", 0
    )
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def epoch() -> int:
        n = 0
        for b in loader:
            done = finish_batch({k: to_device(v, device) for k, v in b.items()}, "instance")
            n += done["input"].shape[0]
        sync()
        return n

    epoch()
    start = time.perf_counter()
    n = epoch()
    return n / (time.perf_counter() - start)


def ours(root: Path, skip: int, volumes: int | None = None, transform_on: str = "host"):
    from mrihpc.node.distributed import World
    from mrihpc.specfile import validate_dict
    from mrihpc.workloads.knee.task import ReconstructionTask

    spec = validate_dict(
        {
            "name": "bench",
            "task": "reconstruction",
            "data": {
                "format": "fastmri",
                "root": str(root),
                "skip_slices": skip,
                "mask": {"kind": "random", "accelerations": [4], "center_fractions": [0.08]},
                "normalize": "instance",
                "max_volumes": volumes,
                "transform_on": transform_on,
            },
        },
        "bench",
    )
    return ReconstructionTask(spec, World()).datasets()[0]


def rss_peak_mib(dataset, workers: int) -> float:
    from memory_profiler import memory_usage

    from mrihpc.node.loading import rank_loader

    def epoch():
        for _ in rank_loader(dataset, SequentialSampler(dataset), 1, False, workers, False, 0):
            pass

    return max(
        memory_usage((epoch, (), {}), interval=0.05, include_children=True, multiprocess=False)
    )


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--volumes", type=int, default=8)
    p.add_argument("--slices", type=int, default=16)
    p.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    p.add_argument("--batch", type=int, default=4, help="slices per batch, as training reads them")
    p.add_argument("--rss-volumes", type=int, nargs=2, default=[10, 100])
    p.add_argument(
        "--step-steps", type=int, default=2, help="training steps timed for the step rate (0: skip)"
    )
    p.add_argument(
        "--step-size", type=int, default=320, help="image side of the timed training step"
    )
    args = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mrihpc-bench-loader-"))
    os.environ.setdefault("MRIHPC_CACHE", str(work / "cache"))
    from mrihpc.workloads.knee.kspace.synth import generate

    root = generate(work / "knee", args.volumes, args.slices, (640, 368), (320, 320), "fastmri", 0)
    files = sorted((root / "train").glob("*.h5"))
    skip = 0
    device = torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu")
    speed = {}
    for w in args.workers:
        mine, ref = (
            slices_per_s(ours(root, skip), w, args.batch, trainers=True),
            slices_per_s(FastMRIStyle(files, skip), w, args.batch),
        )
        raw = ours(root, skip, transform_on="device")
        alone = slices_per_s(raw, w, args.batch, trainers=True)
        speed[str(w)] = {
            "ours_slices_per_s": round(mine, 1),
            "fastmri_style_slices_per_s": round(ref, 1),
            "ratio": round(mine / ref, 2),
            "transform_on_device": {
                "loader_alone_slices_per_s": round(alone, 1),
                "with_batched_transform_slices_per_s": round(
                    with_transform(raw, w, args.batch, device), 1
                ),
            },
        }
        if w:  # what the Trainer's persistent workers save at each epoch's start
            speed[str(w)]["epoch_start_s"] = {
                mode: round(
                    second_epoch_first_batch_s(
                        ours(root, skip), w, args.batch, mode == "persistent_workers"
                    ),
                    3,
                )
                for mode in ("persistent_workers", "re_forked")
            }
    step = None
    if args.step_steps:
        from train_step import CONFIGS, measure  # benchmarks/ is the script's folder

        config = "bf16+channels_last+compile" if device.type == "cuda" else "fp32"
        step = {
            "config": config,
            "image": [args.step_size] * 2,
            **measure(CONFIGS[config], args.step_steps, args.batch, args.step_size, 1),
        }
        for w in speed.values():
            w["transform_on_device"]["loader_alone_over_step"] = round(
                w["transform_on_device"]["loader_alone_slices_per_s"] / step["slices_per_s"], 2
            )
    rss = {}
    if args.rss_volumes:
        big = generate(
            work / "rss",
            int(max(args.rss_volumes) * 1.3) + 2,
            8,
            (256, 160),
            (128, 128),
            "fastmri",
            1,
        )
        for n in args.rss_volumes:
            rss[str(n)] = round(rss_peak_mib(ours(big, 0, n), 2), 1)
    print(
        json.dumps(
            {
                "benchmark": "knee_loader",
                "files": len(files),
                "slices_per_file": args.slices,
                "kspace": [640, 368],
                "crop": [320, 320],
                "batch": args.batch,
                "device": str(device),
                "speed": speed,
                "target_ratio": 2.0,
                "train_step": step,
                "rss_peak_mib": rss,
                "rss_growth_mib": round(
                    rss[str(max(args.rss_volumes))] - rss[str(min(args.rss_volumes))], 1
                )
                if rss
                else None,
                "target_rss_growth_mib": 100,
                "machine": machine(),
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
