"""k-space and image transforms on complex tensors of shape ``(..., H, W)``.

Centred, orthonormal 2-D FFTs as fastMRI's ``fft2c`` / ``ifft2c``, but on torch's native
complex dtype (no trailing real/imag axis).
"""
from __future__ import annotations

import torch


def fft2c(image: torch.Tensor) -> torch.Tensor:
    """Centred orthonormal 2-D FFT. image: complex ``(..., H, W)`` -> k-space ``(..., H, W)``."""
    x = torch.fft.ifftshift(image, dim=(-2, -1))
    x = torch.fft.fft2(x, dim=(-2, -1), norm="ortho")
    return torch.fft.fftshift(x, dim=(-2, -1))


def ifft2c(kspace: torch.Tensor) -> torch.Tensor:
    """Centred orthonormal 2-D inverse FFT. k-space complex ``(..., H, W)`` -> image ``(..., H, W)``."""
    x = torch.fft.ifftshift(kspace, dim=(-2, -1))
    x = torch.fft.ifft2(x, dim=(-2, -1), norm="ortho")
    return torch.fft.fftshift(x, dim=(-2, -1))


def complex_abs(x: torch.Tensor) -> torch.Tensor:
    """Magnitude of a complex ``(..., H, W)`` tensor -> real ``(..., H, W)``."""
    return x.abs()


def center_crop(x: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """Centre crop the last two axes of ``(..., H, W)`` to ``shape`` (fastMRI's offsets)."""
    h, w = shape
    if not (0 < h <= x.shape[-2] and 0 < w <= x.shape[-1]):
        raise ValueError(f"crop {shape} does not fit an image of {tuple(x.shape[-2:])}")
    top, left = (x.shape[-2] - h) // 2, (x.shape[-1] - w) // 2
    return x[..., top:top + h, left:left + w]


def apply_mask(kspace: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Zero the unsampled columns. kspace ``(..., H, W)``, mask bool ``(W,)``."""
    return kspace * mask.to(kspace.real.dtype)


def zero_filled(masked_kspace: torch.Tensor, crop: tuple[int, int]) -> torch.Tensor:
    """Magnitude of the inverse FFT, centre-cropped: ``(..., H, W)`` -> ``(..., h, w)``."""
    return complex_abs(center_crop(ifft2c(masked_kspace), crop))


def _ifftc(x: torch.Tensor, dim: int) -> torch.Tensor:
    """Centred orthonormal inverse FFT along one axis."""
    return torch.fft.fftshift(torch.fft.ifft(torch.fft.ifftshift(x, dim=dim), dim=dim, norm="ortho"), dim=dim)


def zero_filled_columns(kspace: torch.Tensor, mask: torch.Tensor, crop: tuple[int, int]) -> torch.Tensor:
    """``zero_filled(apply_mask(kspace, mask), crop)`` for k-space ``(..., H, W)`` and a column
    mask bool ``(W,)``, with a fraction of the FFT work: the 2-D transform is separable, so the
    inverse FFT along H runs on the sampled columns only (the others are zero) and its result is
    cropped to h rows before the inverse FFT along W. At 4x on 640 x 368 k-space with a 320 x 320
    crop that is a third of the FFT work of the full transform; the result is the same."""
    h, w = crop
    H, W = kspace.shape[-2:]
    if not (0 < h <= H and 0 < w <= W):
        raise ValueError(f"crop {crop} does not fit an image of {(H, W)}")
    cols = mask.nonzero().squeeze(1)
    top, left = (H - h) // 2, (W - w) // 2
    sampled = _ifftc(kspace[..., cols], dim=-2)[..., top:top + h, :]
    rows = kspace.new_zeros((*kspace.shape[:-2], h, W))
    rows[..., cols] = sampled
    return _ifftc(rows, dim=-1)[..., left:left + w].abs()


def normalize_max(image: torch.Tensor, eps: float = 1e-6) -> tuple[torch.Tensor, float, float]:
    """Seed 000's scaling: divide by the zero-filled image's max. Returns (image, mean=0, std=max)."""
    scale = max(float(image.max()), eps)
    return image / scale, 0.0, scale


def normalize_instance(image: torch.Tensor, eps: float = 1e-11) -> tuple[torch.Tensor, float, float]:
    """fastMRI's instance norm: (x - mean) / std. Returns (image, mean, std)."""
    mean, std = float(image.mean()), float(image.std())
    return (image - mean) / (std + eps), mean, std + eps
