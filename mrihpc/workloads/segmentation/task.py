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
from mrihpc.node.task import Evaluated, StepContext, Task
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

    def datasets(self):
        d, root = self.spec.data, root_of(self.spec.data)
        train = PngSegmentation(
            scan(root, "train", True)[: d.max_images], d, train=True, seed=self.spec.train.seed
        )
        val = PngSegmentation(scan(root, "val", True)[: d.max_images], d, train=False)
        counts = np.bincount(
            np.concatenate([lab.ravel() for lab in train.labels]), minlength=len(self.classes)
        )
        self.majority = int(counts.argmax())
        for note in train.notes + val.notes:
            self.ctx.log(note)
        return train, val

    def networks(self) -> dict[str, nn.Module]:
        return {"model": registry.resolve(registry.MODELS, self.spec.model.name)(self.spec.model)}

    def train_step(
        self, batch: dict, nets: dict[str, nn.Module], ctx: StepContext
    ) -> dict[str, float]:
        with ctx.autocast():
            logits = nets["model"](batch["input"])
        loss, parts = self.loss({"logits": logits.float()}, batch)
        ctx.step(loss)
        return {"loss": float(loss.detach()), **parts}

    def eval_step(self, batch: dict, nets: dict[str, nn.Module], preview: bool) -> Evaluated:
        """Per image (keyed by its file's stem): Dice and HD95 per class and their means, the same
        for the majority-class baseline (``base_*``), the batch's loss; and seed 004's Dice, the
        batch pooled as one volume, as a batch row (the mean over batches is the seed's)."""
        x, label = batch["input"], batch["label"]
        logits = nets["model"](x).float()
        pred = logits.argmax(dim=1)
        loss = float(self.loss({"logits": logits}, {"label": label})[0])
        base = torch.full_like(label, self.majority)
        parts = [
            (name, scores | {f"base_{k}": v for k, v in baseline.items()} | {"loss": loss})
            for name, scores, baseline in zip(
                batch["name"],
                segmentation_scores(pred, label, self.classes),
                segmentation_scores(base, label, self.classes),
            )
        ]
        seed = seed_pooled_dice(pred, label, len(self.classes))
        rows = (
            [{"seed_dice": seed}] if seed == seed else []
        )  # NaN: no foreground in the batch; the seed could not score it
        shown = None
        if preview:
            scale = max(len(self.classes) - 1, 1)
            image, truth, guess = x[0, 0].float().cpu(), label[0].cpu(), pred[0].cpu()
            shown = {
                "input": image,
                "target": truth.float() / scale,
                "prediction": guess.float() / scale,
                "error": (guess != truth).float(),
            }
        return Evaluated(parts, rows, shown)
