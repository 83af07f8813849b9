"""One configurable conv-stack discriminator for the GANs of seeds 000 and 002. It emits LOGITS
(for BCE-with-logits): never a sigmoid inside.

Blocks of conv (kernel k, stride 2, padding 1) -> LeakyReLU 0.2, optional norm; then a head
conv (k4, stride 1, no padding) giving a patch map, reduced to one logit per image by a
global max or mean (a PatchGAN averaged), so the whole image counts. (Seed 002's cGAN head,
a 1x1 conv at stride 4 on a 4 x 4 map, saw only the top-left 16 x 16 pixels.)

Every block has its activation (seed 000 left the third conv without one, an evident slip).
Shapes: ``(N, in_channels, H, W)`` -> ``(N, 1)``. Seed 000's (widths 16, 32, 64, k4, no bias,
max pool) has 42,240 parameters; seed 002's CycleGAN one (64..512, k3, bias) 1,558,017.
"""

from __future__ import annotations

import torch
from torch import nn

from mrihpc.models.unet import _norm


class ConvDiscriminator(nn.Module):
    def __init__(
        self,
        in_channels: int = 1,
        widths: tuple[int, ...] = (64, 128, 256, 512),
        kernel: int = 3,
        bias: bool = True,
        norm: str = "none",
        pool: str = "avg",
    ):
        super().__init__()
        layers: list[nn.Module] = []
        chans = [in_channels, *widths]
        for i in range(len(widths)):
            layers += [nn.Conv2d(chans[i], chans[i + 1], kernel, stride=2, padding=1, bias=bias)]
            layers += [_norm(norm, chans[i + 1])] if norm != "none" and i > 0 else []
            layers += [nn.LeakyReLU(0.2, inplace=True)]
        self.body = nn.Sequential(*layers)
        self.head = nn.Conv2d(widths[-1], 1, 4, bias=bias)
        self.pool = pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, C, H, W)`` -> logits ``(N, 1)``."""
        patches = self.head(self.body(x))  # (N, 1, h, w): one logit per receptive field
        if patches.shape[-1] < 1 or patches.shape[-2] < 1:
            raise ValueError(
                f"input {tuple(x.shape)} is too small for {len(self.body) // 2} stride-2 "
                "blocks and a 4x4 head"
            )
        flat = patches.flatten(1)
        return (
            flat.amax(dim=1, keepdim=True) if self.pool == "max" else flat.mean(dim=1, keepdim=True)
        )


def build_discriminator(spec, in_channels: int) -> ConvDiscriminator:
    return ConvDiscriminator(
        in_channels, tuple(spec.widths), spec.kernel, spec.bias, spec.norm, spec.pool
    )
