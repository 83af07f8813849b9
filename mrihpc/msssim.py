"""Multi-scale SSIM (Wang, Simoncelli and Bovik 2003), as pytorch-msssim computes it, with one
change: on images too small for five scales it uses fewer instead of failing.

pytorch-msssim (the maintained implementation, tested against ours to 1e-4 in
``tests/test_sinogram.py``) asserts that the shorter side exceeds (window - 1) x 16, i.e. 129
pixels for window 9, which refuses a 64 x 520 sinogram. Here the number of scales is the largest
k <= 5 whose coarsest image still holds one window, and the first k weights are renormalised to
sum to 1. Per scale: separable Gaussian window (sigma 1.5), valid filtering, K = (0.01, 0.03),
2 x 2 average pooling padded on odd sides; contrast-structure terms are clamped at a tiny positive
value (pytorch-msssim clamps at 0, whose fractional power has an infinite gradient).
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def _window(size: int, sigma: float, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    coords = torch.arange(size, dtype=dtype, device=device) - size // 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    return g / g.sum()


def _filter(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Valid separable Gaussian filtering of ``(N, C, H, W)`` per channel."""
    c = x.shape[1]
    x = F.conv2d(x, g.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)
    return F.conv2d(x, g.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)


def _ssim_cs(
    x: torch.Tensor, y: torch.Tensor, g: torch.Tensor, data_range: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """(SSIM, contrast-structure) per image and channel, ``(N, C)`` each."""
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mx, my = _filter(x, g), _filter(y, g)
    vx = _filter(x * x, g) - mx * mx
    vy = _filter(y * y, g) - my * my
    cxy = _filter(x * y, g) - mx * my
    cs = (2 * cxy + c2) / (vx + vy + c2)
    ssim = (2 * mx * my + c1) / (mx * mx + my * my + c1) * cs
    return ssim.flatten(2).mean(-1), cs.flatten(2).mean(-1)


def scales_for(height: int, width: int, win_size: int, max_scales: int = 5) -> int:
    """Scales whose images (halved, odd sides rounded up) still hold one window."""
    k, h, w = 1, height, width
    while k < max_scales and (h + 1) // 2 >= win_size and (w + 1) // 2 >= win_size:
        k, h, w = k + 1, (h + 1) // 2, (w + 1) // 2
    if min(height, width) < win_size:
        raise ValueError(
            f"image {height} x {width} is smaller than the {win_size}-pixel SSIM window"
        )
    return k


def ms_ssim(
    x: torch.Tensor,
    y: torch.Tensor,
    data_range: float = 1.0,
    win_size: int = 9,
    sigma: float = 1.5,
    scales: int | None = None,
) -> torch.Tensor:
    """MS-SSIM per image, ``(N,)``, of ``(N, C, H, W)`` images (channel mean). ``scales``: default
    the most that fit (at most 5)."""
    k = scales or scales_for(x.shape[-2], x.shape[-1], win_size)
    weights = torch.tensor(WEIGHTS[:k], dtype=x.dtype, device=x.device)
    weights = weights / weights.sum()
    g = _window(win_size, sigma, x.dtype, x.device)
    terms = []
    for i in range(k):
        ssim, cs = _ssim_cs(x, y, g, data_range)
        if i < k - 1:
            terms.append(cs.clamp_min(1e-8))
            pad = [x.shape[-2] % 2, x.shape[-1] % 2]
            x, y = F.avg_pool2d(x, 2, padding=pad), F.avg_pool2d(y, 2, padding=pad)
    terms.append(ssim.clamp_min(1e-8))
    return torch.prod(torch.stack(terms) ** weights.view(-1, 1, 1), dim=0).mean(1)
