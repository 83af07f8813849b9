"""A residual refiner: 2-D ResNet basic blocks over a stack of frames as channels.

``(N, C, H, W) -> (N, C, H, W)``: a 3x3 conv to ``width`` features, ``blocks`` basic blocks
(conv-BN-ReLU-conv-BN plus the identity), a 3x3 conv back to ``C`` (zero-initialised), added to the
input, so an untrained refiner is the identity. Seed 001's refiner could not be rebuilt (its
(2+1)-D ResNet ran a temporal conv over a depth of 1); this is the configurable 2-D form.
"""

from __future__ import annotations

import torch
from torch import nn


class BasicBlock(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(width, width, 3, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 3, padding=1, bias=False),
            nn.BatchNorm2d(width),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x + self.body(x))


class ResidualRefiner(nn.Module):
    def __init__(self, channels: int, width: int = 64, blocks: int = 2):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(channels, width, 3, padding=1),
            nn.ReLU(inplace=True),
            *[BasicBlock(width) for _ in range(blocks)],
            nn.Conv2d(width, channels, 3, padding=1),
        )
        nn.init.zeros_(self.net[-1].weight)  # start as the identity: training only adds corrections
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x ``(N, C, H, W)`` -> ``(N, C, H, W)``."""
        return x + self.net(x)
