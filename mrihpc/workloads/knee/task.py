"""Knee k-space reconstruction (seed 000): zero-filled magnitude -> U-Net -> image.

Input and target are one slice each, ``(N, 1, h, w)``, normalised by the zero-filled
image (seed) or its instance statistics (fastMRI). Validation scores whole volumes in the
original scale with fastMRI's metrics, and scores the zero-filled input the same way
(``zf_*``) so every table shows what the network adds.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from torch import nn

from mrihpc import registry
from mrihpc.data import DataError
from mrihpc.data.fastmri import index_volumes, list_files, split_folds
from mrihpc.data.masks import build_mask
from mrihpc.data.slices import KSpaceSlices, finish_batch, numbers_on
from mrihpc.data.cache import cache_root
from mrihpc.data.synth import ensure_synthetic
from mrihpc.losses import WeightedLoss
from mrihpc.metrics import volume_metrics
from mrihpc.spec import JobSpec
from mrihpc.node.task import StepContext, Task, to_device
from mrihpc.workloads.knee.spec import WORKLOAD, DataSpec

DEFAULT_HOLDOUT_FOLDS = 5  # no val/ folder and no folds: hold out one fifth of train/ (one volume at least)


def data_root(data: DataSpec) -> Path:
    """The dataset folder, generating the synthetic one into the cache on first use."""
    if data.synthetic is not None:
        return ensure_synthetic(data.synthetic.model_dump(), data.format)
    return Path(data.root)


def split_files(data: DataSpec) -> tuple[list[Path], list[Path]]:
    """(train files, validation files): val/ when present and no folds are asked for, else a fold of train/."""
    root = data_root(data)
    train = list_files(root / "train")
    if data.folds is None and (root / "val").is_dir():
        val = list_files(root / "val")
    else:
        folds = data.folds or min(DEFAULT_HOLDOUT_FOLDS, max(2, len(train)))
        train, val = split_folds(train, folds, data.fold or 0)
    if data.max_volumes:
        train, val = train[: data.max_volumes], val[: data.max_volumes]
    return train, val


def crop_of(data: DataSpec):
    """data.crop, else the synthetic recon size, else None (each file's header / 320 x 320)."""
    if data.crop:
        return tuple(data.crop)
    return tuple(data.synthetic.recon_shape) if data.synthetic else None


def volumes_of(files: list[Path], data: DataSpec):
    key = hashlib.sha1(str(Path(files[0]).parent.resolve()).encode()).hexdigest()[:12]
    return index_volumes(files, data.format, cache_root() / "index" / f"{key}.json")


class ReconstructionTask(Task):
    workload = WORKLOAD

    def __init__(self, spec: JobSpec, world):
        super().__init__(spec, world)
        self.loss = WeightedLoss(spec.loss, self.workload.losses)
        self.eval_loss = self.loss  # what val_loss reports
        self.shown: dict[str, torch.Tensor] | None = None

    def datasets(self):
        d = self.spec.data
        train_files, val_files = split_files(d)
        mask = build_mask(d.mask.kind, d.mask.accelerations, d.mask.center_fractions)
        make = lambda files, train: KSpaceSlices(volumes_of(files, d), mask, crop_of(d), d.normalize,  # noqa: E731
                                                 d.skip_slices, train, self.spec.train.seed,
                                                 raw=d.transform_on == "device")
        train, val = make(train_files, True), make(val_files, False)
        for name, ds in (("train", train), ("validation", val)):
            missing = [v.name for v in ds.volumes if "kspace" not in v.kspace_keys]
            if missing:
                raise DataError(f"{name} files without fully sampled 'kspace' (test files?): {', '.join(missing)}")
        return train, val

    def networks(self) -> dict[str, nn.Module]:
        return {"model": registry.resolve(registry.MODELS, self.spec.model.name)(self.spec.model)}

    def on_device(self, batch: dict) -> dict:
        """data.transform_on: device: the zero-filled inputs are made here, batched, from raw k-space."""
        if "kspace" in batch:
            return finish_batch(batch, self.spec.data.normalize)
        return numbers_on(batch, batch["input"].device)

    def train_step(self, batch: dict, nets: dict[str, nn.Module], ctx: StepContext) -> dict[str, float]:
        with ctx.autocast():
            pred = nets["model"](batch["input"])
        loss, parts = self.loss({"pred": pred.float()}, batch)
        ctx.step(loss)
        return {"loss": float(loss.detach()), **parts}

    def evaluate(self, loader, nets) -> list[dict[str, float]]:
        """Per volume: fastMRI metrics of the prediction and of the zero-filled input, and the loss."""
        volumes: dict[str, dict[str, list]] = {}
        for batch in loader:
            batch = self.on_device({k: to_device(v, self.world.device) for k, v in batch.items()})
            x, target = batch["input"], batch["target"]
            pred = nets["model"](x).float()
            mean, std = batch["mean"].view(-1, 1, 1, 1), batch["std"].view(-1, 1, 1, 1)
            loss, _ = self.eval_loss({"pred": pred}, {"target": target})
            for i, fname in enumerate(batch["fname"]):
                v = volumes.setdefault(fname, {"pred": [], "target": [], "zf": [], "loss": []})
                v["pred"].append((pred[i, 0] * std[i, 0] + mean[i, 0]))
                v["target"].append((target[i, 0] * std[i, 0] + mean[i, 0]))
                v["zf"].append((x[i, 0].float() * std[i, 0] + mean[i, 0]))
                v["loss"].append(float(loss))
        if volumes:  # the middle slice of the first volume, for live plots
            v = next(iter(volumes.values()))
            mid = len(v["target"]) // 2
            zf, pred, gt = v["zf"][mid], v["pred"][mid], v["target"][mid]
            self.shown = {"input": zf, "prediction": pred, "target": gt, "error": (pred - gt).abs()}
        out = []
        for v in volumes.values():
            gt = torch.stack(v["target"])
            scores = volume_metrics(gt, torch.stack(v["pred"]))
            scores |= {f"zf_{k}": s for k, s in volume_metrics(gt, torch.stack(v["zf"])).items()}
            scores["loss"] = sum(v["loss"]) / len(v["loss"])
            out.append(scores)
        return out

    def preview(self) -> dict[str, torch.Tensor] | None:
        return self.shown
