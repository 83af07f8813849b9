"""Seed 003's denoising U-Net: learned stride-2 downsampling, three convs per block, a five-conv
bottleneck at the coarsest resolution, a norm-free decoder, a two-conv head and Softplus(beta 5).

Shapes: input ``(N, in_channels, H, W)`` (neighbouring slices as channels) -> ``(N, 1, H, W)``;
H and W must be multiples of 4 (two stride-2 levels); the sinogram reader wrap-pads to that.

Parameters at width 64, 5 input channels, batch norm: 7,328,641. The seed registers 7,330,148:
the extra 1,507 are modules it builds and never calls (block 1's stride-2 conv, 5 x 5 x 3 x 3 = 225,
which runs only when a block downsamples; the decoder's and head's commented-out norms, 1,282).
The block helpers (``_norm``, ``_act``) are the classic U-Net's.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from mrihpc.models.refiner import (
    BasicBlock,
)  # the ResNet basic block (conv-BN-ReLU-conv-BN + identity)
from mrihpc.models.unet import OUT_ACTIVATIONS, _act, _norm


def _convs(cin: int, cout: int, n: int, norm: str) -> list[nn.Module]:
    """``n`` x (3x3 conv without bias -> norm -> LeakyReLU 0.2)."""
    layers: list[nn.Module] = []
    for i in range(n):
        layers += [
            nn.Conv2d(cin if i == 0 else cout, cout, 3, padding=1, bias=False),
            _norm(norm, cout),
            _act("leaky_relu"),
        ]
    return layers


class DownBlock(nn.Sequential):
    """Optional learned stride-2 conv (channel-preserving, no norm), then three conv layers.
    ``(N, cin, H, W) -> (N, cout, H / 2 if down else H, ...)``."""

    def __init__(self, cin: int, cout: int, down: bool, norm: str):
        head = [nn.Conv2d(cin, cin, 3, stride=2, padding=1, bias=False)] if down else []
        super().__init__(*head, *_convs(cin, cout, 3, norm))


class UpBlock(nn.Module):
    """Up-sample (transposed conv k4 s2 with bias, or nearest / area interpolation), concatenate
    (up, skip), then three conv layers with no norm (the seed's decoder)."""

    def __init__(self, skip: int, cin: int, cout: int, mode: str, norm: str):
        super().__init__()
        self.mode = mode
        self.up = (
            nn.ConvTranspose2d(cin, cin, 4, stride=2, padding=1)
            if mode == "transpose"
            else nn.Identity()
        )
        self.convs = nn.Sequential(*_convs(skip + cin, cout, 3, norm))

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        if self.mode == "transpose":
            x = self.up(x)
        else:  # nearest or area: F.interpolate to the skip's size
            x = F.interpolate(x, size=skip.shape[-2:], mode=self.mode)
        return self.convs(torch.cat([x, skip], dim=1))


class DenoiseUNet(nn.Module):
    def __init__(
        self,
        in_channels: int = 5,
        width: int = 64,
        norm: str = "batch",
        upsample: str = "transpose",
        decoder_norm: bool = False,
        res_blocks: int = 0,
        out_activation: str = "softplus",
        residual: bool = False,
    ):
        super().__init__()
        self.residual = residual
        w = width
        dec = norm if decoder_norm else "none"
        self.down1 = DownBlock(in_channels, w, False, norm)
        self.down2 = DownBlock(w, 2 * w, True, norm)
        self.down3 = DownBlock(2 * w, 4 * w, True, norm)
        self.bottom = nn.Sequential(*_convs(4 * w, 4 * w, 5, norm))
        self.up2 = UpBlock(2 * w, 4 * w, 2 * w, upsample, dec)
        self.up3 = UpBlock(w, 2 * w, w, upsample, dec)
        self.res = nn.Sequential(*[BasicBlock(w) for _ in range(res_blocks)])
        self.head = nn.Sequential(
            nn.Conv2d(w, w, 3, padding=1, bias=False),
            nn.ReLU(inplace=True),
            nn.Conv2d(w, 1, 3, padding=1),
        )
        self.out = OUT_ACTIVATIONS[out_activation]()
        if residual:  # start as the identity on the centre channel: the first output is the input
            nn.init.zeros_(self.head[-1].weight)
            nn.init.zeros_(self.head[-1].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, in_channels, H, W)`` with H, W multiples of 4 -> ``(N, 1, H, W)``."""
        if x.shape[-2] % 4 or x.shape[-1] % 4:
            raise ValueError(
                f"input {tuple(x.shape)}: H and W must be multiples of 4 (pad the data)"
            )
        s1 = self.down1(x)
        s2 = self.down2(s1)
        y = self.bottom(self.down3(s2))
        y = self.up3(self.up2(y, s2), s1)
        y = self.head(self.res(y))
        if self.residual:  # a correction of the centre channel, the slice being denoised
            centre = x.shape[1] // 2
            y = y + x[:, centre : centre + 1]
        return self.out(y)


def build_denoise_unet(model, in_channels: int) -> DenoiseUNet:
    """From the sinogram workload's ``model:`` section."""
    return DenoiseUNet(
        in_channels,
        model.width,
        model.norm,
        model.upsample,
        model.decoder_norm,
        model.res_blocks,
        model.out_activation,
        model.residual,
    )
