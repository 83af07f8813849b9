"""The ``blobs`` task: a noisy image ``(N, 1, H, W)`` -> U-Net -> the clean image; validation
scores each image (PSNR, SSIM, NMSE) with the shared metrics."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from torch import nn
from torch.utils.data import Dataset

from blobs.spec import WORKLOAD
from mrihpc.losses import WeightedLoss
from mrihpc.metrics import image_scores
from mrihpc.models.unet import build_unet
from mrihpc.node.task import Evaluated, StepContext, Task


class NoisyImages(Dataset):
    """The ``.npy`` images of one folder. Item: ``input`` (noisy) and ``target`` ``(1, H, W)``,
    ``index``. Noise is drawn from (seed, epoch, index) in training, from (seed, index)
    otherwise."""

    def __init__(self, folder: Path, noise: float, train: bool, seed: int):
        self.files = sorted(Path(folder).glob("*.npy"))
        self.noise, self.train, self.seed, self.epoch = noise, train, seed, 0

    def __len__(self) -> int:
        return len(self.files)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def volumes_index(self) -> list[list[int]]:
        return [[i] for i in range(len(self))]  # every image is scored on its own

    def __getitem__(self, i: int) -> dict:
        clean = np.load(self.files[i]).astype(np.float32)[None]
        rng = np.random.default_rng([self.seed, self.epoch, i] if self.train else [self.seed, i])
        return {
            "input": clean + rng.normal(0, self.noise, clean.shape).astype(np.float32),
            "target": clean,
            "index": i,
        }


class BlobsTask(Task):
    workload = WORKLOAD

    def __init__(self, spec, world):
        super().__init__(spec, world)
        self.loss = WeightedLoss(spec.loss, WORKLOAD.losses)

    def images(self, split: str, train: bool = False) -> NoisyImages:
        d = self.spec.data
        return NoisyImages(Path(d.root) / split, d.noise, train, self.spec.train.seed)

    def datasets(self):
        return self.images("train", train=True), self.images("val")

    def test_dataset(self):
        return self.images("test")

    def networks(self) -> dict[str, nn.Module]:
        return {"model": build_unet(self.spec.model)}

    def train_step(
        self, batch: dict, nets: dict[str, nn.Module], ctx: StepContext
    ) -> dict[str, float]:
        with ctx.autocast():
            pred = nets["model"](batch["input"])
        loss, parts = self.loss({"pred": pred.float()}, batch)
        ctx.step(loss)
        return {"loss": float(loss.detach()), **parts}

    def eval_step(self, batch: dict, nets: dict[str, nn.Module], preview: bool) -> Evaluated:
        pred = nets["model"](batch["input"]).float()
        loss = float(self.loss({"pred": pred}, batch)[0])
        parts = [
            (int(i), s | {"loss": loss})
            for i, s in zip(batch["index"], image_scores(batch["target"], pred))
        ]
        shown = None
        if preview:
            x, gt = batch["input"][0, 0].cpu(), batch["target"][0, 0].cpu()
            shown = {
                "input": x,
                "prediction": pred[0, 0].cpu(),
                "target": gt,
                "error": (pred[0, 0].cpu() - gt).abs(),
            }
        return Evaluated(parts, preview=shown)
