"""One configurable U-Net covering the seeds' variants.

``preset: fastmri`` is fastMRI's baseline (instance norm, leaky ReLU, average pooling,
transposed-conv up, no conv bias; 7,756,097 parameters at channels 32, depth 4);
``preset: nc2019`` is seed 000's (64 base channels, BatchNorm, ReLU, max-pool, bilinear up,
whose last down block keeps its width so the bilinear path halves channels in the convs);
``preset: acdc`` is seed 004's (mateuszbuda topology: transposed-conv up with bias and no
norm, ``up_norm_act: false, up_bias: true``; 69,822,340 parameters at 96 features, 4 logits).

Shapes: input ``(N, in_channels, H, W)`` -> output ``(N, out_channels, H, W)``; H and W need
not be multiples of 2**depth (the up path pads to the skip's size).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def _norm(kind: str, channels: int) -> nn.Module:
    return {
        "batch": lambda: nn.BatchNorm2d(channels),
        "instance": lambda: nn.InstanceNorm2d(channels),
        "none": nn.Identity,
    }[kind]()


def _act(kind: str) -> nn.Module:
    return nn.LeakyReLU(0.2, inplace=True) if kind == "leaky_relu" else nn.ReLU(inplace=True)


#: model.out_activation -> the module applied to the head's output (softplus: beta 5, seed 003)
OUT_ACTIVATIONS = {
    "none": nn.Identity,
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    "softplus": lambda: nn.Softplus(beta=5),
}


class ConvBlock(nn.Sequential):
    """Two (3x3 conv -> norm -> activation -> dropout) layers.
    ``(N, cin, H, W) -> (N, cout, H, W)``."""

    def __init__(self, cin: int, cout: int, norm: str, act: str, dropout: float, bias: bool):
        layers: list[nn.Module] = []
        for c in (cin, cout):
            layers += [nn.Conv2d(c, cout, 3, padding=1, bias=bias), _norm(norm, cout), _act(act)]
            if dropout:
                layers.append(nn.Dropout2d(dropout))
        super().__init__(*layers)


class UpSample(nn.Sequential):
    """Doubles H and W. transpose: ``(N, cin) -> (N, cin // 2)``; bilinear keeps the channels."""

    def __init__(
        self, cin: int, mode: str, norm: str, act: str, norm_act: bool = True, bias: bool = False
    ):
        if mode == "transpose":
            up = nn.ConvTranspose2d(cin, cin // 2, 2, stride=2, bias=bias)
            super().__init__(
                up, _norm(norm, cin // 2), _act(act)
            ) if norm_act else super().__init__(up)
        else:
            super().__init__(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True))


class UNet(nn.Module):
    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 1,
        channels: int = 32,
        depth: int = 4,
        norm: str = "instance",
        activation: str = "leaky_relu",
        pool: str = "avg",
        upsample: str = "transpose",
        conv_bias: bool = False,
        dropout: float = 0.0,
        residual: bool = False,
        up_norm_act: bool = True,
        up_bias: bool = False,
        skip_order: str = "up_skip",
        out_activation: str = "none",
    ):
        super().__init__()
        self.skip_first = skip_order == "skip_up"
        self.out_activation = OUT_ACTIVATIONS[out_activation]()
        block = lambda cin, cout: ConvBlock(cin, cout, norm, activation, dropout, conv_bias)  # noqa: E731
        self.residual = residual
        self.pool = F.max_pool2d if pool == "max" else F.avg_pool2d
        widths = [channels * 2**i for i in range(depth)]  # skip widths, top to bottom
        self.down = nn.ModuleList([block(in_channels, widths[0])])
        self.down.extend(block(a, b) for a, b in zip(widths, widths[1:]))
        # bilinear up keeps channels, so the bottom block keeps the width (seed 000's "factor")
        bottom = widths[-1] * (2 if upsample == "transpose" else 1)
        self.bottom = block(widths[-1], bottom)
        self.up, self.up_conv = nn.ModuleList(), nn.ModuleList()
        ch = bottom
        for i, skip in reversed(list(enumerate(widths))):
            self.up.append(UpSample(ch, upsample, norm, activation, up_norm_act, up_bias))
            came = ch // 2 if upsample == "transpose" else ch
            out = skip if upsample == "transpose" or i == 0 else widths[i - 1]
            self.up_conv.append(block(came + skip, out))
            ch = out
        self.head = nn.Conv2d(ch, out_channels, 1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """image ``(N, in_channels, H, W)`` -> ``(N, out_channels, H, W)``."""
        skips, x = [], image
        for layer in self.down:
            x = layer(x)
            skips.append(x)
            x = self.pool(x, 2)
        x = self.bottom(x)
        for up, conv in zip(self.up, self.up_conv):
            skip = skips.pop()
            x = up(x)
            dh, dw = skip.shape[-2] - x.shape[-2], skip.shape[-1] - x.shape[-1]
            if dh or dw:  # odd sizes: pad the up-sampled map to the skip's size
                x = F.pad(
                    x,
                    [dw // 2, dw - dw // 2, dh // 2, dh - dh // 2],
                    mode="reflect" if min(x.shape[-2:]) > 1 else "constant",
                )
            x = conv(torch.cat([skip, x] if self.skip_first else [x, skip], dim=1))
        out = self.head(x)
        return self.out_activation(out + image if self.residual else out)


def build_unet(spec) -> UNet:
    """A UNet from a ModelSpec."""
    return UNet(
        spec.in_channels,
        spec.out_channels,
        spec.channels,
        spec.depth,
        spec.norm,
        spec.activation,
        spec.pool,
        spec.upsample,
        spec.conv_bias,
        spec.dropout,
        spec.residual,
        spec.up_norm_act,
        spec.up_bias,
        spec.skip_order,
        spec.out_activation,
    )
