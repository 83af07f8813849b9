"""fastMRI's evaluation metrics in torch, on the training device.

Per volume (gt, pred of shape ``(slices, H, W)``):
  NMSE = ||gt - pred||^2 / ||gt||^2
  PSNR = 10 log10(max(gt)^2 / mean((gt - pred)^2))
  SSIM = mean over slices of the 2-D SSIM with data_range = max(gt) (7x7 uniform window,
         k1 0.01, k2 0.03, sample covariance), equal to skimage's
         ``structural_similarity(win_size=7)``: its interior crop is exactly a valid convolution.
Computed in float64 so the values match skimage to well under 1e-4.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F


def ssim_map(
    x: torch.Tensor,
    y: torch.Tensor,
    data_range: torch.Tensor,
    win_size: int = 7,
    k1: float = 0.01,
    k2: float = 0.03,
) -> torch.Tensor:
    """SSIM per image. x, y ``(N, 1, H, W)``; data_range ``(N,)`` -> ``(N,)``."""
    return torch.cat(
        [
            ssim_pixels(x[i], y[i], data_range[i], win_size, k1, k2).mean(dim=(1, 2, 3))
            for i in _chunks(x)
        ]
    )


def _chunks(t: torch.Tensor) -> list[slice]:
    """Slices of the first axis to compute on at once: on the CPU one image, so that its dozen
    intermediate maps stay in cache (2.5x faster than the whole stack); elsewhere all of them."""
    step = 1 if t.device.type == "cpu" else max(t.shape[0], 1)
    return [slice(i, i + step) for i in range(0, t.shape[0], step)]


def ssim_pixels(
    x: torch.Tensor,
    y: torch.Tensor,
    data_range: torch.Tensor,
    win_size: int = 7,
    k1: float = 0.01,
    k2: float = 0.03,
) -> torch.Tensor:
    """The SSIM map: ``(N, 1, H - win + 1, W - win + 1)`` (valid windows, as skimage's interior).
    The five local means come from one box filter over the stacked moments; with the sample
    covariance factor ``n = w^2 / (w^2 - 1)``, ``a = ux uy`` and ``b = ux^2 + uy^2``:
    SSIM = (2a + c1) (2n (uxy - a) + c2) / ((b + c1) (n (uxx + uyy - b) + c2))."""
    ux, uy, uxx, uyy, uxy = _box_mean(
        torch.cat([x, y, x * x, y * y, x * y], dim=1), win_size
    ).split(1, dim=1)
    n = win_size**2 / (win_size**2 - 1)
    r = data_range.view(-1, 1, 1, 1)
    c1, c2 = (k1 * r) ** 2, (k2 * r) ** 2
    a, b = ux * uy, ux * ux + uy * uy
    return (2 * a + c1) * (2 * n * (uxy - a) + c2) / ((b + c1) * (n * (uxx + uyy - b) + c2))


def _box_mean(m: torch.Tensor, w: int) -> torch.Tensor:
    """Mean over every valid ``w x w`` window of ``(..., H, W)`` -> ``(..., H - w + 1, W - w + 1)``.

    In float64 (the metrics) from running sums along each axis, differenced ``w`` apart: two
    passes whatever ``w``, and the sums' rounding (1e-16 of a row's total) stays far below the
    1e-4 we promise; 2.5x faster than pooling on the CPU. Anything else (the float32 SSIM loss)
    pools directly, where a running sum's rounding would grow with the row.
    """
    if m.dtype != torch.float64:
        return F.avg_pool2d(m, w, stride=1)
    for axis in (-2, -1):
        c = m.cumsum(axis)
        m = torch.cat(
            [
                c.narrow(axis, w - 1, 1),
                c.narrow(axis, w, c.shape[axis] - w) - c.narrow(axis, 0, c.shape[axis] - w),
            ],
            dim=axis,
        )
    return m / (w * w)


def volume_metrics(gt: torch.Tensor, pred: torch.Tensor) -> dict[str, float]:
    """NMSE, PSNR and SSIM of one volume. gt, pred ``(slices, H, W)`` in the same (original) scale.
    Computed chunk by chunk (see ``_chunks``), each converted to float64 as it comes."""
    maxval = gt.max().double()
    err = energy = ssim = torch.zeros((), dtype=torch.float64, device=gt.device)
    for part in _chunks(gt):
        g, p = gt[part].double().unsqueeze(1), pred[part].double().unsqueeze(1)
        err = err + (g - p).pow(2).sum()
        energy = energy + g.pow(2).sum()
        ssim = ssim + ssim_pixels(g, p, maxval.expand(g.shape[0])).mean(dim=(1, 2, 3)).sum()
    nmse = err / energy.clamp_min(1e-20)
    psnr = 10 * torch.log10(maxval**2 / (err / gt.numel()).clamp_min(1e-20))
    return {"nmse": float(nmse), "psnr": float(psnr), "ssim": float(ssim / gt.shape[0])}


def image_scores(
    gt: torch.Tensor, pred: torch.Tensor, region: torch.Tensor | None = None
) -> list[dict[str, float]]:
    """Per image of ``(N, 1, H, W)``: PSNR (peak = max(gt), the data range), SSIM (7x7, data range
    max(gt)) and NMSE; with ``region`` ``(N, 1, H, W)`` (1 inside) also the same inside it alone
    (``*_hole``: MSE, energy and the SSIM map restricted to the region's pixels)."""
    gt, pred = gt.double(), pred.double()
    peak = gt.amax(dim=(1, 2, 3)).clamp_min(1e-12)
    err = (gt - pred) ** 2
    smap = ssim_pixels(gt, pred, peak)
    out = {
        "psnr": 10 * torch.log10(peak**2 / err.mean(dim=(1, 2, 3)).clamp_min(1e-20)),
        "ssim": smap.mean(dim=(1, 2, 3)),
        "nmse": err.sum(dim=(1, 2, 3)) / (gt**2).sum(dim=(1, 2, 3)).clamp_min(1e-20),
    }
    if region is not None:
        r = region.double()
        n = r.sum(dim=(1, 2, 3)).clamp_min(1)
        out["psnr_hole"] = 10 * torch.log10(
            peak**2 / ((err * r).sum(dim=(1, 2, 3)) / n).clamp_min(1e-20)
        )
        out["nmse_hole"] = (err * r).sum(dim=(1, 2, 3)) / (gt**2 * r).sum(dim=(1, 2, 3)).clamp_min(
            1e-20
        )
        h = (gt.shape[-2] - smap.shape[-2]) // 2  # the map's pixels are the windows' centres
        inner = r[..., h : h + smap.shape[-2], h : h + smap.shape[-1]]
        out["ssim_hole"] = (smap * inner).sum(dim=(1, 2, 3)) / inner.sum(dim=(1, 2, 3)).clamp_min(1)
    return [{k: float(v[i]) for k, v in out.items()} for i in range(gt.shape[0])]


def segmentation_scores(
    pred: torch.Tensor, label: torch.Tensor, classes: list[str]
) -> list[dict[str, float]]:
    """Per image: Dice and the 95th-percentile Hausdorff distance of every foreground class, and
    their means over the foreground classes (``dice``, ``hd95``). pred, label ``(N, H, W)`` integer
    class maps; ``classes`` names the labels (``classes[0]`` is the background).

    Dice = 2 |P n G| / (|P| + |G|) (MONAI ``compute_dice``). A class absent from both prediction
    and label scores Dice 1 and HD95 0: agreeing that a structure is not there is correct.
    HD95 is in pixels (PNGs carry no spacing), from MONAI's ``compute_hausdorff_distance``; a
    class present in only one of the two scores the image diagonal, the largest possible
    distance, so a missed structure is never averaged away as NaN.
    """
    import warnings

    from monai.metrics import compute_dice, compute_hausdorff_distance

    k = len(classes)
    onehot = lambda t: F.one_hot(t.long(), k).permute(0, 3, 1, 2).float()  # noqa: E731 - (N, K, H, W)
    p, g = (
        onehot(pred.cpu()),
        onehot(label.cpu()),
    )  # surface distances run on the CPU (scipy) anyway
    dice = compute_dice(p, g, include_background=True, ignore_empty=False)
    with warnings.catch_warnings():  # MONAI warns about every empty class; handled below
        warnings.simplefilter("ignore")
        hd = compute_hausdorff_distance(p, g, include_background=True, percentile=95)
    present_p, present_g = p.sum(dim=(2, 3)) > 0, g.sum(dim=(2, 3)) > 0
    diagonal = float(
        torch.hypot(torch.tensor(float(pred.shape[-2])), torch.tensor(float(pred.shape[-1])))
    )
    hd = torch.where(~present_p & ~present_g, 0.0, torch.where(present_p & present_g, hd, diagonal))
    out = []
    for i in range(pred.shape[0]):
        scores = {f"dice_{classes[c]}": float(dice[i, c]) for c in range(1, k)}
        scores |= {f"hd95_{classes[c]}": float(hd[i, c]) for c in range(1, k)}
        scores["dice"] = float(dice[i, 1:].mean())
        scores["hd95"] = float(hd[i, 1:].mean())
        out.append(scores)
    return out


def _gaussian_taps(sigma: float, truncate: float, dtype, device) -> torch.Tensor:
    radius = int(truncate * sigma + 0.5)  # as scipy.ndimage
    x = torch.arange(-radius, radius + 1, dtype=dtype, device=device)
    w = torch.exp(-0.5 * (x / sigma) ** 2)
    return w / w.sum()


def _smooth(t: torch.Tensor, taps: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian over the last three axes of ``(N, D, H, W)``, edges mirrored like
    scipy's mode='reflect' (the edge sample repeated: d c b a | a b c d)."""
    r = (taps.numel() - 1) // 2
    for axis in (1, 2, 3):
        n = t.shape[axis]
        left, right = t.narrow(axis, 0, r).flip(axis), t.narrow(axis, n - r, r).flip(axis)
        t = torch.cat([left, t, right], dim=axis)
        t = t.movedim(axis, -1)
        t = F.conv1d(t.reshape(-1, 1, t.shape[-1]), taps.view(1, 1, -1)).reshape(*t.shape[:-1], -1)
        t = t.movedim(-1, axis)
    return t


def ssim_gaussian_3d(
    gt: torch.Tensor, pred: torch.Tensor, sigma: float = 1.5, win_size: int = 7
) -> torch.Tensor:
    """scikit-image's ``structural_similarity(gt, pred, gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False, win_size=7, data_range=gt.max() - gt.min())`` on each volume of
    ``(N, D, H, W)`` (e.g. a cine case, frames as D), in torch on the tensors' device: 11-tap
    Gaussian over all three axes, population covariance, a (win_size - 1) / 2 border cropped on
    every axis. Returns ``(N,)``; float64 inside."""
    if min(gt.shape[1:]) < win_size:  # as scikit-image: no window fits, so no SSIM (not NaN)
        raise ValueError(
            f"SSIM needs every axis of (D, H, W) >= win_size {win_size}, got {tuple(gt.shape[1:])}"
        )
    x, y = gt.double(), pred.double()
    r = (x.amax(dim=(1, 2, 3)) - x.amin(dim=(1, 2, 3))).view(-1, 1, 1, 1)
    taps = _gaussian_taps(sigma, 3.5, x.dtype, x.device)
    ux, uy = _smooth(x, taps), _smooth(y, taps)
    vx = _smooth(x * x, taps) - ux * ux
    vy = _smooth(y * y, taps) - uy * uy
    vxy = _smooth(x * y, taps) - ux * uy
    c1, c2 = (0.01 * r) ** 2, (0.03 * r) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux**2 + uy**2 + c1) * (vx + vy + c2))
    p = (win_size - 1) // 2
    return s[:, p:-p, p:-p, p:-p].mean(dim=(1, 2, 3))


# ------------------------------------------------------------------ the seeds' own definitions
# Reported as seed_* beside the standard metrics, only so a figure can be put next to a seed's
# table; each says what in it differs from the standard one.


def seed_slice_ssim(gt: torch.Tensor, pred: torch.Tensor) -> float:
    """Seed 000's SSIM of a volume ``(slices, H, W)``: per slice, skimage's 7x7 uniform SSIM
    called as ``compare_ssim(fake, real, data_range=fake.max())``, the data range from the
    PREDICTION's slice maximum (the standard takes the target volume's), averaged over slices."""
    p, g = pred.double().unsqueeze(1), gt.double().unsqueeze(1)
    return float(ssim_map(p, g, p.amax(dim=(1, 2, 3)).clamp_min(1e-20)).mean())


def seed_pooled_dice(pred: torch.Tensor, label: torch.Tensor, num_classes: int) -> float:
    """Seed 004's Dice of a batch ``(N, H, W)`` of class indices, the batch taken as one volume:
    per class c of 1..C-1, ``2 sum[(pred == c)(label == c)] / (sum(pred == c) + sum(label == c))``,
    then the mean over those classes (the standard: per image). A class in neither is left out
    of the mean, where the seed divided by zero; NaN when every class is absent."""
    scores = []
    for c in range(1, num_classes):
        p, t = pred == c, label == c
        total = int(p.sum() + t.sum())
        if total:
            scores.append(2 * float((p & t).sum()) / total)
    return sum(scores) / len(scores) if scores else float("nan")
