"""The image metrics against scikit-image (fastMRI's evaluate.py computes them with it)."""

import statistics

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
    ssim = np.mean(
        [structural_similarity(gt[i], pred[i], data_range=gt.max(), win_size=7) for i in range(4)]
    )
    assert abs(ours["ssim"] - ssim) < 1e-4
    assert abs(ours["psnr"] - peak_signal_noise_ratio(gt, pred, data_range=gt.max())) < 1e-4
    assert abs(ours["nmse"] - np.linalg.norm(gt - pred) ** 2 / np.linalg.norm(gt) ** 2) < 1e-6


def test_ssim_map_is_skimages_interior_pixel_for_pixel():
    """The float64 running-sum box filter gives skimage's full SSIM map inside its 3-pixel
    border."""
    gt, pred = pair((3, 1, 37, 52), seed=1)
    ours = ssim_pixels(
        torch.from_numpy(gt).double(),
        torch.from_numpy(pred).double(),
        torch.tensor([float(g.max()) for g in gt], dtype=torch.float64),
    )
    for i in range(3):
        _, full = structural_similarity(
            gt[i, 0].astype(np.float64),
            pred[i, 0].astype(np.float64),
            data_range=float(gt[i].max()),
            win_size=7,
            full=True,
        )  # float32 in: float32 inside
        np.testing.assert_allclose(ours[i, 0].numpy(), full[3:-3, 3:-3], atol=1e-10)
    scores = image_scores(torch.from_numpy(gt), torch.from_numpy(pred))
    assert [s["ssim"] for s in scores] == pytest.approx(
        ours.mean(dim=(1, 2, 3)).tolist(), abs=1e-12
    )


def test_float32_pooling_path_agrees_with_float64_running_sums():
    """The SSIM loss (float32, pooled) and the metric (float64, running sums) are one definition."""
    gt, pred = pair((2, 1, 64, 64), seed=2)
    x, y = torch.from_numpy(gt), torch.from_numpy(pred)
    r = torch.tensor([3.0, 3.0])
    assert ssim_map(x, y, r).tolist() == pytest.approx(
        ssim_map(x.double(), y.double(), r.double()).tolist(), abs=1e-5
    )


def test_seed_000_ssim_is_skimage_per_slice_with_the_predictions_max_as_data_range():
    from mrihpc.metrics import seed_slice_ssim

    rng = np.random.default_rng(3)
    gt = rng.random((4, 40, 36))
    pred = np.clip(gt + 0.1 * rng.standard_normal(gt.shape), 0, None) * 3  # its max is 3x gt's
    by_hand = np.mean(
        [structural_similarity(p, g, win_size=7, data_range=p.max()) for p, g in zip(pred, gt)]
    )
    got = seed_slice_ssim(torch.from_numpy(gt), torch.from_numpy(pred))
    assert got == pytest.approx(by_hand, abs=1e-9)
    assert (
        abs(got - volume_metrics(torch.from_numpy(gt), torch.from_numpy(pred))["ssim"]) > 1e-3
    )  # not the standard


def test_seed_004_dice_pools_the_batch_and_averages_classes_1_to_3():
    from mrihpc.metrics import seed_pooled_dice

    label = torch.zeros(2, 4, 4, dtype=torch.long)
    pred = torch.zeros(2, 4, 4, dtype=torch.long)
    label[0, :2, :2] = 1  # 4 px of class 1 in image 0
    pred[0, :2, :1] = 1  # 2 of them found
    label[1, :, :] = 2  # all 16 px of image 1 are class 2
    pred[1, :2, :] = 2  # 8 found ...
    pred[1, 2:, :] = 3  # ... and 8 called class 3
    # class 1: 2*2 / (2 + 4); class 2: 2*8 / (8 + 16); class 3: 2*0 / (8 + 0); pooled over both
    # images
    assert seed_pooled_dice(pred, label, 4) == pytest.approx((4 / 6 + 16 / 24 + 0) / 3)
    assert np.isnan(
        seed_pooled_dice(
            torch.zeros(1, 2, 2, dtype=torch.long), torch.zeros(1, 2, 2, dtype=torch.long), 4
        )
    )


def test_batch_rows_are_averaged_per_batch_and_not_counted_as_volumes():
    """The Trainer's validation loop: a key's parts are collected over batches and scored once
    (a volume split across batches is one volume), a seed's per-batch figure is the mean over
    batches, the standard ones over volumes; the preview comes from the first batch only."""
    from types import SimpleNamespace

    import torch

    from mrihpc.node.distributed import World
    from mrihpc.node.task import Evaluated, Task
    from mrihpc.node.train import Trainer

    class Scored(Task):
        def eval_step(self, batch, nets, preview):
            parts = [(str(k), {"dice": float(d)}) for k, d in zip(batch["volume"], batch["dice"])]
            return Evaluated(
                parts,
                [{"seed_dice": float(batch["dice"].mean())}],
                {"input": batch["dice"].view(1, -1)} if preview else None,
            )

        def score(self, key, parts):
            return {"dice": sum(p["dice"] for p in parts) / len(parts), "slices": len(parts)}

    batches = [
        {"volume": ["a", "a"], "dice": torch.tensor([0.2, 0.4])},
        {"volume": ["a", "b"], "dice": torch.tensor([0.6, 1.0])},
        {"volume": ["c"], "dice": torch.tensor([0.0])},
    ]
    trainer = Trainer.__new__(Trainer)
    trainer.task, trainer.nets, trainer.world = Scored(None, World()), {}, World()
    trainer.spec = SimpleNamespace(train=SimpleNamespace(channels_last=False))
    # the spread over volumes; batch rows never enter it, so seed_dice has none
    trainer.workload = SimpleNamespace(report_std=("dice", "seed_dice"))
    out, images = trainer._scores(batches, "val_", preview=True)
    # volumes a (0.2, 0.4, 0.6 over two batches), b, c; batches 0.3, 0.8, 0.0
    assert out == {
        "val_dice": pytest.approx((0.4 + 1.0 + 0.0) / 3),
        "val_slices": pytest.approx(5 / 3),
        "val_seed_dice": pytest.approx((0.3 + 0.8 + 0.0) / 3),
        "val_volumes": 3,
        "val_dice_std": pytest.approx(statistics.stdev([0.4, 1.0, 0.0])),
    }
    assert torch.equal(images["input"], torch.tensor([[0.2, 0.4]]))
