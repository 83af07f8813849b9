"""The image metrics against scikit-image (fastMRI's evaluate.py computes them with it)."""
import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from mrihpc.metrics import image_scores, ssim_map, ssim_pixels, volume_metrics


def pair(shape, seed=0):
    rng = np.random.default_rng(seed)
    gt = rng.random(shape).astype(np.float32) * 3
    return gt, (gt + 0.2 * rng.standard_normal(gt.shape)).astype(np.float32)


def test_volume_metrics_match_skimage_and_fastmri_definitions():
    gt, pred = pair((4, 48, 40))
    ours = volume_metrics(torch.from_numpy(gt), torch.from_numpy(pred))
    ssim = np.mean([structural_similarity(gt[i], pred[i], data_range=gt.max(), win_size=7) for i in range(4)])
    assert abs(ours["ssim"] - ssim) < 1e-4
    assert abs(ours["psnr"] - peak_signal_noise_ratio(gt, pred, data_range=gt.max())) < 1e-4
    assert abs(ours["nmse"] - np.linalg.norm(gt - pred) ** 2 / np.linalg.norm(gt) ** 2) < 1e-6


def test_ssim_map_is_skimages_interior_pixel_for_pixel():
    """The float64 running-sum box filter gives skimage's full SSIM map inside its 3-pixel border."""
    gt, pred = pair((3, 1, 37, 52), seed=1)
    ours = ssim_pixels(torch.from_numpy(gt).double(), torch.from_numpy(pred).double(),
                       torch.tensor([float(g.max()) for g in gt], dtype=torch.float64))
    for i in range(3):
        _, full = structural_similarity(gt[i, 0].astype(np.float64), pred[i, 0].astype(np.float64),
                                        data_range=float(gt[i].max()), win_size=7, full=True)  # float32 in: float32 inside
        np.testing.assert_allclose(ours[i, 0].numpy(), full[3:-3, 3:-3], atol=1e-10)
    scores = image_scores(torch.from_numpy(gt), torch.from_numpy(pred))
    assert [s["ssim"] for s in scores] == pytest.approx(ours.mean(dim=(1, 2, 3)).tolist(), abs=1e-12)


def test_float32_pooling_path_agrees_with_float64_running_sums():
    """The SSIM loss (float32, pooled) and the metric (float64, running sums) are one definition."""
    gt, pred = pair((2, 1, 64, 64), seed=2)
    x, y = torch.from_numpy(gt), torch.from_numpy(pred)
    r = torch.tensor([3.0, 3.0])
    assert ssim_map(x, y, r).tolist() == pytest.approx(ssim_map(x.double(), y.double(), r.double()).tolist(), abs=1e-5)
