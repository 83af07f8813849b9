"""Knee k-space reconstruction (seed 000): zero-filled magnitude -> U-Net -> image.

Input and target are one slice each, ``(N, 1, h, w)``, normalised by the zero-filled
image (seed) or its instance statistics (fastMRI). Validation scores whole volumes in the
original scale with fastMRI's metrics, and scores the zero-filled input the same way
(``zf_*``) so every table shows what the network adds.
"""
from __future__ import annotations

import torch
from torch import nn

from mrihpc import registry
from mrihpc.data import DataError
from mrihpc.data.masks import build_mask
from mrihpc.data.slices import KSpaceSlices, finish_batch, numbers_on
from mrihpc.losses import WeightedLoss
from mrihpc.metrics import seed_slice_ssim, volume_metrics
from mrihpc.spec import JobSpec
from mrihpc.node.task import StepContext, Task, to_device
from mrihpc.data.fastmri import list_files
from mrihpc.workloads.knee.files import data_root, split_files, volumes_of
from mrihpc.workloads.knee.spec import WORKLOAD, DataSpec

def crop_of(data: DataSpec):
    """data.crop, else the synthetic recon size, else None (each file's header / 320 x 320)."""
    if data.crop:
        return tuple(data.crop)
    return tuple(data.synthetic.recon_shape) if data.synthetic else None


class ReconstructionTask(Task):
    workload = WORKLOAD

    def __init__(self, spec: JobSpec, world):
        super().__init__(spec, world)
        self.loss = WeightedLoss(spec.loss, self.workload.losses)
        self.eval_loss = self.loss  # what val_loss reports
        self.shown: dict[str, torch.Tensor] | None = None

    def _slices(self, volumes, train: bool) -> KSpaceSlices:
        d = self.spec.data
        mask = build_mask(d.mask.kind, d.mask.accelerations, d.mask.center_fractions)
        return KSpaceSlices(volumes, mask, crop_of(d), d.normalize, d.skip_slices, train, self.spec.train.seed,
                            raw=d.transform_on == "device")

    def datasets(self):
        d = self.spec.data
        train_files, val_files = split_files(d)
        train, val = self._slices(volumes_of(train_files, d), True), self._slices(volumes_of(val_files, d), False)
        for name, ds in (("train", train), ("validation", val)):
            missing = [v.name for v in ds.volumes if "kspace" not in v.kspace_keys]
            if missing:
                raise DataError(f"{name} files without fully sampled 'kspace' (test files?): {', '.join(missing)}")
        return train, val

    def test_dataset(self):
        """test/ when every file there is fully sampled with a reference (fastMRI's challenge test
        files are neither: nothing to score, and None)."""
        folder = data_root(self.spec.data) / "test"
        if not folder.is_dir():
            return None
        volumes = volumes_of(list_files(folder), self.spec.data)
        if any("kspace" not in v.kspace_keys or v.target_key is None for v in volumes):
            return None
        return self._slices(volumes, False)

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
            scores["seed_ssim"] = seed_slice_ssim(gt, torch.stack(v["pred"]))  # seed 000's: data range max(pred)
            scores |= {f"zf_{k}": s for k, s in volume_metrics(gt, torch.stack(v["zf"])).items()}
            scores["loss"] = sum(v["loss"]) / len(v["loss"])
            out.append(scores)
        return out

    def preview(self) -> dict[str, torch.Tensor] | None:
        return self.shown
