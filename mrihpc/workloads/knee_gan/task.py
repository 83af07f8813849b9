"""Knee GAN (seed 000): per batch a discriminator step on detached fakes, then a generator step
on adversarial + content loss; validation as the knee U-Net's (fastMRI metrics per volume, the
zero-filled input as ``zf_*``) on the generator's magnitude."""

from __future__ import annotations

import torch
from torch import nn

from mrihpc.losses import WeightedLoss
from mrihpc.gan import discriminator_step_loss, magnitude, unsynced
from mrihpc.models.discriminator import build_discriminator
from mrihpc.models.unet import build_unet
from mrihpc.node.task import Evaluated, StepContext
from mrihpc.workloads.knee.task import ReconstructionTask
from mrihpc.workloads.knee_gan.spec import WORKLOAD


class MagnitudeOf(nn.Module):
    """The generator seen as an image model: ``(N, 1, H, W)`` -> magnitude ``(N, 1, H, W)``."""

    def __init__(self, generator: nn.Module):
        super().__init__()
        self.generator = generator

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return magnitude(self.generator(x))


class KneeGanTask(ReconstructionTask):
    workload = WORKLOAD

    def __init__(self, spec, world):
        super().__init__(spec, world)
        content = {k: w for k, w in spec.loss.items() if k != "adv"} or {"l1": 1.0}
        self.eval_loss = WeightedLoss(
            content, WORKLOAD.losses
        )  # val_loss: the content terms (no D at validation)

    def networks(self) -> dict[str, nn.Module]:
        return {"G": build_unet(self.spec.model.G), "D": build_discriminator(self.spec.model.D, 1)}

    def train_step(
        self, batch: dict, nets: dict[str, nn.Module], ctx: StepContext
    ) -> dict[str, float]:
        G, D = nets["G"], nets["D"]
        with ctx.autocast():
            fake = magnitude(G(batch["input"]))
            d_loss = discriminator_step_loss(D, batch["target"], fake)
        ctx.step(d_loss, "D")
        with ctx.autocast(), unsynced(D):  # D's gradients from this step are discarded
            d_fake = D(fake)
        loss, parts = self.loss({"pred": fake.float(), "d_fake": d_fake}, batch)
        ctx.step(loss, "G")
        return {"loss": float(loss.detach()), "loss_D": float(d_loss.detach()), **parts}

    def eval_step(self, batch: dict, nets: dict[str, nn.Module], preview: bool) -> Evaluated:
        return super().eval_step(batch, {"model": MagnitudeOf(nets["G"])}, preview)
