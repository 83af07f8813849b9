"""Cardiac segmentation (seed 004): image ``(N, 1, H, W)`` -> U-Net -> logits ``(N, K, H, W)``.

Losses read the logits (softmax or sigmoid live inside them); validation scores each image's
argmax with per-class Dice and HD95, next to the majority-class baseline (``base_*``: every
pixel given the most frequent training label), as the knee task shows zero-filled.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from mrihpc import registry
from mrihpc.losses import WeightedLoss
from mrihpc.metrics import seed_pooled_dice, segmentation_scores
from mrihpc.node.task import BATCH_ROW, StepContext, Task
from mrihpc.spec import JobSpec
from mrihpc.workloads.segmentation.data import PngSegmentation, root_of, scan
from mrihpc.workloads.segmentation.spec import WORKLOAD


class SegmentationTask(Task):
    workload = WORKLOAD

    def __init__(self, spec: JobSpec, world):
        super().__init__(spec, world)
        self.classes = list(spec.data.classes)
        self.loss = WeightedLoss(spec.loss, WORKLOAD.losses)
        self.majority = 0
        self.shown: dict[str, torch.Tensor] | None = None

    def datasets(self):
        d, root = self.spec.data, root_of(self.spec.data)
        train = PngSegmentation(scan(root, "train", True)[: d.max_images], d, train=True, seed=self.spec.train.seed)
        val = PngSegmentation(scan(root, "val", True)[: d.max_images], d, train=False)
        counts = np.bincount(np.concatenate([lab.ravel() for lab in train.labels]), minlength=len(self.classes))
        self.majority = int(counts.argmax())
        for note in train.notes + val.notes:
            print(f"[mrihpc] {note}", flush=True)
        return train, val

    def networks(self) -> dict[str, nn.Module]:
        return {"model": registry.resolve(registry.MODELS, self.spec.model.name)(self.spec.model)}

    def train_step(self, batch: dict, nets: dict[str, nn.Module], ctx: StepContext) -> dict[str, float]:
        with ctx.autocast():
            logits = nets["model"](batch["input"])
        loss, parts = self.loss({"logits": logits.float()}, batch)
        ctx.step(loss)
        return {"loss": float(loss.detach()), **parts}

    def evaluate(self, loader, nets) -> list[dict[str, float]]:
        """Per image: Dice and HD95 per class and their means, the same for the baseline, the loss."""
        out, first = [], None
        for batch in loader:
            x, label = batch["input"].to(self.world.device), batch["label"].to(self.world.device)
            logits = nets["model"](x).float()
            pred = logits.argmax(dim=1)
            loss, _ = self.loss({"logits": logits}, {"label": label})
            base = torch.full_like(label, self.majority)
            for scores, baseline in zip(segmentation_scores(pred, label, self.classes),
                                        segmentation_scores(base, label, self.classes)):
                out.append(scores | {f"base_{k}": v for k, v in baseline.items()} | {"loss": float(loss)})
            # seed 004's Dice: the batch pooled as one volume; a row of its own per batch (BATCH_ROW),
            # so the mean over batches is the seed's, and the images are still counted once
            seed = seed_pooled_dice(pred, label, len(self.classes))
            if seed == seed:  # NaN: no foreground class in this batch, as the seed could not score it
                out.append({"seed_dice": seed, BATCH_ROW: True})
            if first is None:
                first = (x[0, 0].float().cpu(), label[0].cpu(), pred[0].cpu())
        if first is not None:
            image, label, pred = first
            scale = max(len(self.classes) - 1, 1)
            self.shown = {"input": image, "target": label.float() / scale, "prediction": pred.float() / scale,
                          "error": (pred != label).float()}
        return out

    def preview(self) -> dict[str, torch.Tensor] | None:
        return self.shown
