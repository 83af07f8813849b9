"""Sinogram denoising / inpainting (seed 003): neighbouring slices -> denoising U-Net -> clean
slice.

Batches hold wrap-padded ``(N, C, Wp, Lp)`` inputs; the loss and every metric see the output
cropped back to ``(N, 1, W, L)``, so the padding never counts. Validation scores each fixed
slice: PSNR, SSIM and NMSE against the clean target, the same for the input's centre slice
(``base_*``), and when inpainting the same inside the bad-block mask alone (``*_hole``).
"""

from __future__ import annotations

import json

import torch
from torch import nn

from mrihpc.losses import WeightedLoss
from mrihpc.metrics import image_scores
from mrihpc.models.denoise_unet import build_denoise_unet
from mrihpc.node.task import Evaluated, StepContext, Task
from mrihpc.spec import JobSpec
from mrihpc.workloads.sinogram.data import (
    SinogramSlices,
    crop,
    file_max,
    list_cases,
    resolve_layout,
)
from mrihpc.workloads.sinogram.spec import WORKLOAD


def case_scales(cases, data, layout, train_cases) -> list[float]:
    """The one divisor per case shared by its input and target (see ``data.scale``). The input's
    maximum is the noisy file's when denoising and the clean file's when inpainting (masking only
    removes values)."""
    source = lambda c: c.noisy if data.mode == "denoise" else c.clean  # noqa: E731
    if isinstance(data.scale, float):
        return [data.scale] * len(cases)
    if data.scale == "dataset_max":
        top = max(file_max(source(c), layout.dtype) for c in train_cases)
        return [max(top, 1e-12)] * len(cases)
    return [max(file_max(source(c), layout.dtype), 1e-12) for c in cases]


class SinogramTask(Task):
    workload = WORKLOAD

    def __init__(self, spec: JobSpec, world):
        super().__init__(spec, world)
        self.loss = WeightedLoss(spec.loss, WORKLOAD.losses)
        self.layout = resolve_layout(spec.data)
        self.size = self.layout.shape[2:]

    def split(self, name: str) -> SinogramSlices:
        d = self.spec.data
        train_cases = list_cases(self.layout.dirs["train"], d)
        cases = (
            train_cases
            if name == "train"
            else list_cases(self.layout.dirs[name], d, unpaired=name == "test")
        )
        scales = case_scales(cases, d, self.layout, train_cases)
        if name == "train":
            self.ctx.write(
                "scales.json",
                json.dumps(
                    {"scale": d.scale, "files": {str(c.clean): s for c, s in zip(cases, scales)}},
                    indent=1,
                ),
            )
        return SinogramSlices(cases, self.layout, d, name == "train", self.spec.train.seed, scales)

    def datasets(self):
        return self.split("train"), self.split("val")

    def test_dataset(self):
        """The test folder's cases with a clean file (new acquisitions have none: predicted, not
        scored); None when the test folder is the validation one (no data.test_dir)."""
        d = self.spec.data
        if d.synthetic is None and not d.test_dir:
            return None
        train_cases = list_cases(self.layout.dirs["train"], d)
        cases = [c for c in list_cases(self.layout.dirs["test"], d) if c.clean is not None]
        if not cases:
            return None
        return SinogramSlices(
            cases,
            self.layout,
            d,
            False,
            self.spec.train.seed,
            case_scales(cases, d, self.layout, train_cases),
        )

    def networks(self) -> dict[str, nn.Module]:
        return {"model": build_denoise_unet(self.spec.model, self.spec.data.channels)}

    def cropped(self, t: torch.Tensor) -> torch.Tensor:
        return crop(t, self.size, self.spec.data.pad_multiple)

    def train_step(
        self, batch: dict, nets: dict[str, nn.Module], ctx: StepContext
    ) -> dict[str, float]:
        with ctx.autocast():
            pred = nets["model"](batch["input"])
        loss, parts = self.loss(
            {"pred": self.cropped(pred.float())}, {"target": self.cropped(batch["target"])}
        )
        ctx.step(loss)
        return {"loss": float(loss.detach()), **parts}

    def eval_step(self, batch: dict, nets: dict[str, nn.Module], preview: bool) -> Evaluated:
        """Per slice (keyed by its index in the set), cropped back to ``(1, W, L)``: its metrics,
        the input's centre slice's as ``base_*`` (and inside the bad blocks when inpainting), the
        batch's loss."""
        inpaint, centre = self.spec.data.mode == "inpaint", self.spec.data.channels // 2
        pred = self.cropped(nets["model"](batch["input"]).float())
        gt, hole = self.cropped(batch["target"]), self.cropped(batch["hole"]) if inpaint else None
        given = self.cropped(batch["input"][:, centre : centre + 1])
        loss = float(self.loss({"pred": pred}, {"target": gt})[0])
        parts = [
            (int(i), mine | {f"base_{k}": v for k, v in base.items()} | {"loss": loss})
            for i, mine, base in zip(
                batch["index"], image_scores(gt, pred, hole), image_scores(gt, given, hole)
            )
        ]
        shown = None
        if preview:
            shown = {
                "input": given[0, 0].cpu(),
                "prediction": pred[0, 0].cpu(),
                "target": gt[0, 0].cpu(),
                "error": (pred[0, 0] - gt[0, 0]).abs().cpu(),
            }
        return Evaluated(parts, preview=shown)
