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
from mrihpc.workloads.knee.kspace.masks import build_mask
from mrihpc.workloads.knee.kspace.slices import KSpaceSlices, finish_batch, numbers_on
from mrihpc.losses import WeightedLoss
from mrihpc.metrics import seed_slice_ssim, volume_metrics
from mrihpc.spec import JobSpec
from mrihpc.node.task import Evaluated, StepContext, Task
from mrihpc.workloads.knee.kspace.fastmri import list_files
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

    def _slices(self, volumes, train: bool) -> KSpaceSlices:
        d = self.spec.data
        mask = build_mask(d.mask.kind, d.mask.accelerations, d.mask.center_fractions)
        return KSpaceSlices(
            volumes,
            mask,
            crop_of(d),
            d.normalize,
            d.skip_slices,
            train,
            self.spec.train.seed,
            raw=d.transform_on == "device",
        )

    def datasets(self):
        d = self.spec.data
        train_files, val_files = split_files(d)
        train, val = (
            self._slices(volumes_of(train_files, d), True),
            self._slices(volumes_of(val_files, d), False),
        )
        for name, ds in (("train", train), ("validation", val)):
            missing = [v.name for v in ds.volumes if "kspace" not in v.kspace_keys]
            if missing:
                raise DataError(
                    f"{name} files without fully sampled 'kspace' (test files?): "
                    f"{', '.join(missing)}"
                )
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
        """data.transform_on: device: the zero-filled inputs are made here, batched, from raw
        k-space."""
        if "kspace" in batch:
            return finish_batch(batch, self.spec.data.normalize)
        return numbers_on(batch, batch["input"].device)

    def train_step(
        self, batch: dict, nets: dict[str, nn.Module], ctx: StepContext
    ) -> dict[str, float]:
        with ctx.autocast():
            pred = nets["model"](batch["input"])
        loss, parts = self.loss({"pred": pred.float()}, batch)
        ctx.step(loss)
        return {"loss": float(loss.detach()), **parts}

    def eval_step(self, batch: dict, nets: dict[str, nn.Module], preview: bool) -> Evaluated:
        """Per slice, keyed by its volume's file: prediction, target and zero-filled input
        ``(h, w)`` back in the original scale, and the batch's loss."""
        x, target = batch["input"], batch["target"]
        pred = nets["model"](x).float()
        mean, std = batch["mean"].view(-1, 1, 1, 1), batch["std"].view(-1, 1, 1, 1)
        loss = float(self.eval_loss({"pred": pred}, {"target": target})[0])
        original = lambda t: (t.float() * std + mean)[:, 0]  # noqa: E731 - (B, 1, h, w) -> (B, h, w)
        pred, target, zf = original(pred), original(target), original(x)
        parts = [
            (name, {"pred": pred[i], "target": target[i], "zf": zf[i], "loss": loss})
            for i, name in enumerate(batch["fname"])
        ]
        shown = None
        if preview:
            shown = {
                "input": zf[0].cpu(),
                "prediction": pred[0].cpu(),
                "target": target[0].cpu(),
                "error": (pred[0] - target[0]).abs().cpu(),
            }
        return Evaluated(parts, preview=shown)

    def score(self, key, parts: list[dict]) -> dict[str, float]:
        """One volume from its slices: fastMRI metrics of the prediction and of the zero-filled
        input (``zf_*``), seed 000's SSIM, and the mean loss of its batches."""
        gt, pred = (
            torch.stack([p["target"] for p in parts]),
            torch.stack([p["pred"] for p in parts]),
        )
        scores = volume_metrics(gt, pred)
        scores["seed_ssim"] = seed_slice_ssim(gt, pred)  # seed 000's: data range max(pred)
        scores |= {
            f"zf_{k}": s
            for k, s in volume_metrics(gt, torch.stack([p["zf"] for p in parts])).items()
        }
        scores["loss"] = sum(p["loss"] for p in parts) / len(parts)
        return scores
