"""Cine reconstruction (seed 001): aliased frames -> two U-Nets -> magnitude -> refiner.

Input ``(N, 2, T, X, Y)``: the real and imaginary parts of the zero-filled frames; the real
part goes through one U-Net and the imaginary part through another (frames as channels, no
shared weights); their magnitude ``(N, T, X, Y)`` optionally gets the measured k-space lines
back (data consistency), then a residual refiner. Validation scores each case over all its
frames: MSE, PSNR with peak 1 (``psnr1``, the course's) and peak max(target) (``psnr``,
fastMRI's), and scikit-image's 3-D Gaussian SSIM; the zero-filled input is scored the same
way (``zf_*``).
"""

from __future__ import annotations

import json

import torch
from torch import nn

from mrihpc.losses import WeightedLoss
from mrihpc.metrics import ssim_gaussian_3d
from mrihpc.models.refiner import ResidualRefiner
from mrihpc.models.unet import build_unet
from mrihpc.node.task import Evaluated, StepContext, Task
from mrihpc.spec import JobSpec
from mrihpc.workloads.cine.data import CineCases, meta, source_array, split_cases
from mrihpc.workloads.cine.spec import WORKLOAD


class CineNet(nn.Module):
    def __init__(self, model, frames: int):
        super().__init__()
        unet = model.unet.model_copy(update={"in_channels": frames, "out_channels": frames})
        self.real, self.imag = build_unet(unet), build_unet(unet)
        if unet.residual:  # zero heads: the untrained pair returns the aliased frames unchanged
            for net in (self.real, self.imag):
                nn.init.zeros_(net.head.weight)
                nn.init.zeros_(net.head.bias)
        self.refiner = (
            ResidualRefiner(frames, model.refiner.width, model.refiner.blocks)
            if model.refiner.blocks
            else nn.Identity()
        )
        self.data_consistency, self.sigmoid = (
            model.data_consistency,
            model.out_activation == "sigmoid",
        )

    def forward(
        self, x: torch.Tensor, kspace: torch.Tensor | None = None, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """x ``(N, 2, T, X, Y)``; kspace ``(N, 2, T, X, Y)`` and mask ``(N, T, X, 1)`` for data
        consistency -> magnitude ``(N, T, X, Y)``."""
        re, im = self.real(x[:, 0]), self.imag(x[:, 1])
        if self.data_consistency and kspace is not None:
            k = torch.fft.fftshift(
                torch.fft.fft2(
                    torch.fft.ifftshift(torch.complex(re.float(), im.float()), dim=(-2, -1))
                ),
                dim=(-2, -1),
            )
            k = torch.where(mask > 0, torch.complex(kspace[:, 0], kspace[:, 1]), k)
            z = torch.fft.fftshift(
                torch.fft.ifft2(torch.fft.ifftshift(k, dim=(-2, -1))), dim=(-2, -1)
            )
            re, im = z.real, z.imag
        out = self.refiner(torch.sqrt(re.float() ** 2 + im.float() ** 2 + 1e-12))
        return torch.sigmoid(out) if self.sigmoid else out


def case_scores(gt: torch.Tensor, pred: torch.Tensor) -> list[dict[str, float]]:
    """Per case of ``(N, T, X, Y)``: mse, psnr1 (peak 1), psnr (peak max(gt)), ssim (3-D
    Gaussian)."""
    mse = (gt.double() - pred.double()).pow(2).mean(dim=(1, 2, 3))
    psnr1 = -10 * torch.log10(mse + 1e-8)
    psnr = 10 * torch.log10(gt.double().amax(dim=(1, 2, 3)) ** 2 / mse.clamp_min(1e-20))
    ssim = ssim_gaussian_3d(gt, pred)
    # seed 001's own definitions are psnr1 and this SSIM exactly: seed_* repeats them under the
    # prefix every workload uses for its seed's figures
    return [
        {
            "mse": float(a),
            "psnr1": float(b),
            "psnr": float(c),
            "ssim": float(d),
            "seed_psnr": float(b),
            "seed_ssim": float(d),
        }
        for a, b, c, d in zip(mse, psnr1, psnr, ssim)
    ]


class CineTask(Task):
    workload = WORKLOAD

    def __init__(self, spec: JobSpec, world):
        super().__init__(spec, world)
        self.loss = WeightedLoss(spec.loss, WORKLOAD.losses)

    def splits(self):
        """(folder of the cached array, {train, val, test: case indices}); the split is written
        to the point folder (split.json)."""
        d = self.spec.data
        folder = source_array(d)
        n = meta(folder)["shape"][0]
        split = split_cases(min(n, d.max_cases or n), d.split, self.spec.train.seed)
        self.ctx.write("split.json", json.dumps(split | {"range": meta(folder)}, indent=1))
        return folder, split

    def datasets(self):
        folder, split = self.splits()
        m = meta(folder)
        if not m["in_unit_range"]:
            self.ctx.log(
                f"note: {m['source']} holds magnitudes in [{m['min']:.3g}, {m['max']:.3g}], not "
                "[0, 1]; psnr1 (peak 1) assumes [0, 1]",
                flush=True,
            )
        self.frames = m["shape"][1]
        seed, mask = self.spec.train.seed, self.spec.data.mask
        return CineCases(folder, split["train"], mask, True, seed), CineCases(
            folder, split["val"], mask, False, seed
        )

    def test_dataset(self):
        folder, split = self.splits()
        return (
            CineCases(folder, split["test"], self.spec.data.mask, False, self.spec.train.seed)
            if split["test"]
            else None
        )

    def networks(self) -> dict[str, nn.Module]:
        folder = source_array(self.spec.data)
        return {"model": CineNet(self.spec.model, meta(folder)["shape"][1])}

    def train_step(
        self, batch: dict, nets: dict[str, nn.Module], ctx: StepContext
    ) -> dict[str, float]:
        with ctx.autocast():
            pred = nets["model"](batch["input"], batch["kspace"], batch["mask"])
        loss, parts = self.loss({"pred": pred.float()}, batch)
        ctx.step(loss)
        return {"loss": float(loss.detach()), **parts}

    def eval_step(self, batch: dict, nets: dict[str, nn.Module], preview: bool) -> Evaluated:
        """Per case (``(T, X, Y)`` frames, scored whole): its metrics, the zero-filled input's as
        ``zf_*``, and the batch's loss; the preview is the first case's middle frame."""
        pred = nets["model"](batch["input"], batch["kspace"], batch["mask"]).float()
        zf = torch.sqrt(batch["input"][:, 0] ** 2 + batch["input"][:, 1] ** 2)
        gt = batch["target"]
        loss = float(self.loss({"pred": pred}, {"target": gt})[0])
        parts = [
            (int(case), mine | {f"zf_{k}": v for k, v in base.items()} | {"loss": loss})
            for case, mine, base in zip(batch["case"], case_scores(gt, pred), case_scores(gt, zf))
        ]
        shown = None
        if preview:
            mid = gt.shape[1] // 2
            shown = {
                "input": zf[0, mid].cpu(),
                "prediction": pred[0, mid].cpu(),
                "target": gt[0, mid].cpu(),
                "error": (pred[0, mid] - gt[0, mid]).abs().cpu(),
            }
        return Evaluated(parts, preview=shown)
