"""The pix2pix-style generator U-Net of seed 002: one stride-2 conv per level going down, a
transposed conv per level going up, the skip concatenated BEFORE the next up-sampling, and a
nearest-neighbour up-sampling + conv + Tanh head.

Shapes: ``(N, in_channels, H, W)`` -> ``(N, out_channels, H, W)``, H and W multiples of
2**len(widths) (64 x 64 with 5 levels). At widths (64, 128, 256, 512, 512), 1 -> 1 channel,
instance norm: 13,611,073 parameters (the seed's count).
"""

from __future__ import annotations

import torch
from torch import nn

from mrihpc.models.unet import OUT_ACTIVATIONS, _norm


class Down(nn.Sequential):
    """Conv k3 s2 -> norm -> LeakyReLU 0.2: ``(N, cin, H, W) -> (N, cout, H/2, W/2)``."""

    def __init__(self, cin: int, cout: int, norm: str):
        super().__init__(
            nn.Conv2d(cin, cout, 3, stride=2, padding=1),
            _norm(norm, cout),
            nn.LeakyReLU(0.2, inplace=True),
        )


class Up(nn.Sequential):
    """Transposed conv k4 s2 -> norm -> ReLU: ``(N, cin, H, W) -> (N, cout, 2H, 2W)``."""

    def __init__(self, cin: int, cout: int, norm: str):
        super().__init__(
            nn.ConvTranspose2d(cin, cout, 4, stride=2, padding=1),
            _norm(norm, cout),
            nn.ReLU(inplace=True),
        )


class Pix2PixUNet(nn.Module):
    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 1,
        widths: tuple[int, ...] = (64, 128, 256, 512, 512),
        norm: str = "instance",
        out_activation: str = "tanh",
    ):
        super().__init__()
        self.levels = len(widths)
        chans = [in_channels, *widths]
        self.downs = nn.ModuleList(Down(chans[i], chans[i + 1], norm) for i in range(len(widths)))
        outs = list(reversed(widths[:-1]))  # widths the up path returns to: 512, 256, 128, 64
        ups = [Up(widths[-1], outs[0], norm)]
        ups += [Up(outs[k - 1] + widths[-1 - k], outs[k], norm) for k in range(1, len(outs))]
        self.ups = nn.ModuleList(ups)
        self.head = nn.Sequential(
            nn.Upsample(scale_factor=2, mode="nearest"),
            nn.Conv2d(outs[-1] + widths[0], out_channels, 3, padding=1),
            OUT_ACTIVATIONS[out_activation](),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2] % 2**self.levels or x.shape[-1] % 2**self.levels:
            raise ValueError(
                f"input {tuple(x.shape)}: H and W must be multiples of {2**self.levels}"
            )
        skips = []
        for down in self.downs:
            x = down(x)
            skips.append(x)
        x = self.ups[0](skips.pop())
        for up in self.ups[1:]:
            x = up(torch.cat([x, skips.pop()], dim=1))
        return self.head(torch.cat([x, skips.pop()], dim=1))
