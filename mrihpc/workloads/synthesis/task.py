"""IXI T1 -> T2 synthesis (seed 002) in three modes: the generator alone, a conditional GAN and a
CycleGAN (see spec.py). Images are ``(N, 1, H, W)`` in [-1, 1]; metrics are computed back in
the files' units.

Validation (and the test split, once at the end) scores each held-out image: MAE, PSNR with
peak = the target's data range, and SSIM (7 x 7 window, that data range); the identity baseline (T1
taken as the T2 prediction) as
``base_*``; seed 002's own definitions as ``seed_*`` (per batch of 5 held-out images: PSNR with peak
1, and a global SSIM over the batch with C1 = 0.01, C2 = 0.03 unsquared, sigma from torch.std),
so its table (test SSIM 0.968 / 0.970 / 0.887) can be compared; and the same on the training
subjects as ``train_*`` (the seed's batches of 40), so train and test sit side by side.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mrihpc.gan import discriminator_step_loss, unsynced
from mrihpc.losses import WeightedLoss
from mrihpc.metrics import ssim_map
from mrihpc.models.discriminator import build_discriminator
from mrihpc.models.pix2pix import Pix2PixUNet
from mrihpc.node.task import Evaluated, StepContext, Task
from mrihpc.paths import atomic_write_bytes
from mrihpc.workloads.synthesis.data import (
    PairedImages,
    from_unit,
    measured_range,
    pair_files,
    split_subjects,
    split_json,
)
from mrihpc.workloads.synthesis.spec import WORKLOAD

SEED_BATCH = {
    "test": 5,
    "train": 40,
}  # the seed's loader batch sizes, over which its metrics were averaged


def synthesis_scores(
    gt: torch.Tensor, pred: torch.Tensor, data_range: float
) -> list[dict[str, float]]:
    """Per image of ``(N, 1, H, W)`` in the files' units: mae, psnr (peak = data_range), ssim."""
    gt, pred = gt.double(), pred.double()
    mae = (gt - pred).abs().mean(dim=(1, 2, 3))
    psnr = 10 * torch.log10(data_range**2 / (gt - pred).pow(2).mean(dim=(1, 2, 3)).clamp_min(1e-20))
    ssim = ssim_map(gt, pred, torch.full((gt.shape[0],), data_range, dtype=gt.dtype))
    return [
        {"mae": float(a), "psnr": float(b), "ssim": float(c)} for a, b, c in zip(mae, psnr, ssim)
    ]


def seed_scores(gt: torch.Tensor, pred: torch.Tensor) -> dict[str, float]:
    """Seed 002's metrics of one batch: MAE, PSNR with peak 1, and its global SSIM."""
    gt, pred = gt.double(), pred.double()
    mu_t, mu_g = gt.mean(), pred.mean()
    cov = ((gt - mu_t) * (pred - mu_g)).mean()  # biased, as the seed
    c1, c2 = 0.01, 0.03  # the seed's constants, not squared
    ssim = (
        (2 * mu_t * mu_g + c1)
        * (2 * cov + c2)
        / ((mu_t**2 + mu_g**2 + c1) * (gt.std() ** 2 + pred.std() ** 2 + c2))
    )
    mse = float((gt - pred).pow(2).mean())
    return {
        "seed_mae": float((gt - pred).abs().mean()),
        "seed_psnr": -10 * math.log10(max(mse, 1e-20)),
        "seed_ssim": float(ssim),
    }


def sample_grid(G: nn.Module, data: PairedImages, n: int) -> torch.Tensor:
    """``(3 H, n W)`` in [0, 1]: rows T1 | synthesised T2 | real T2, a column per subject (the
    first ``n`` of ``data``, the same every epoch)."""
    items = [data[i] for i in range(min(n, len(data)))]
    device = next(iter(G.parameters())).device
    a = torch.stack([it["source"] for it in items])
    fake = G(a.to(device)).float().cpu()
    b = torch.stack([it["target"] for it in items])
    rows = [torch.cat(list(t[:, 0]), dim=1) for t in (a, fake, b)]
    return ((torch.cat(rows, dim=0) + 1) / 2).clamp(0, 1)


def png_bytes(image: torch.Tensor) -> bytes:
    """An ``(H, W)`` image in [0, 1] as the bytes of an 8-bit PNG."""
    import imageio.v3 as iio  # scikit-image's own image I/O

    return iio.imwrite(
        "<bytes>",
        np.ascontiguousarray((image * 255).round().to(torch.uint8).numpy()),
        extension=".png",
    )


def save_png(image: torch.Tensor, path: Path) -> None:
    """An ``(H, W)`` image in [0, 1] as an 8-bit PNG file."""
    atomic_write_bytes(path, png_bytes(image))


class SynthesisTask(Task):
    workload = WORKLOAD

    def __init__(self, spec, world):
        super().__init__(spec, world)
        self.mode = spec.model.mode
        self.loss = WeightedLoss(spec.loss, WORKLOAD.losses)
        content = {k: w for k, w in spec.loss.items() if k in ("l1", "mse", "ssim")} or {"l1": 1.0}
        self.eval_loss = WeightedLoss(content, WORKLOAD.losses)

    # ----------------------------------------------------------------- data
    def sets(self) -> tuple[PairedImages, PairedImages, PairedImages]:
        """(train, val, test) subjects; split.json (ids, incomplete subjects, ranges) in the point
        folder."""
        d = self.spec.data
        pairs, incomplete = pair_files(d)
        split = split_subjects(list(pairs), d.test_fraction, d.split_seed, d.val_fraction)
        if incomplete:
            self.ctx.log(
                f"{len(incomplete)} subject(s) without both {d.source} and {d.target}, skipped: "
                f"{', '.join(incomplete[:10])}{' ...' if len(incomplete) > 10 else ''}"
            )
        train, val, test = (PairedImages(split[k], pairs, {}) for k in ("train", "val", "test"))
        ranges = (
            {"source": tuple(d.value_range), "target": tuple(d.value_range)}
            if d.value_range
            else {"source": measured_range(train.source), "target": measured_range(train.target)}
        )
        for part in (train, val, test):
            part.ranges = ranges
            outside = any(
                float(t.min()) < ranges[k][0] or float(t.max()) > ranges[k][1]
                for k, t in (("source", part.source), ("target", part.target))
            )
            if outside:
                self.ctx.log(f"note: some values lie outside the range {ranges} mapped to [-1, 1]")
        self.ctx.write("split.json", split_json(split, incomplete, ranges))
        return train, val, test

    def datasets(self):
        self.train_set, self.val_set, self.test_set = self.sets()
        return self.train_set, self.val_set

    def test_dataset(self):
        return self.test_set

    # ----------------------------------------------------------------- networks
    def _generator(self) -> nn.Module:
        g = self.spec.model.G
        return Pix2PixUNet(1, 1, tuple(g.widths), g.norm, "tanh")

    def networks(self) -> dict[str, nn.Module]:
        d = self.spec.model.D
        nets = {"G": self._generator()}
        if self.mode == "cgan":
            nets["D"] = build_discriminator(d, 2)  # sees (image, T1)
        elif self.mode == "cyclegan":
            nets |= {
                "G_back": self._generator(),
                "D": build_discriminator(d, 1),
                "D_back": build_discriminator(d, 1),
            }
        return nets

    # ----------------------------------------------------------------- training
    def train_step(
        self, batch: dict, nets: dict[str, nn.Module], ctx: StepContext
    ) -> dict[str, float]:
        a, b = batch["source"], batch["target"]
        if self.mode == "generator":
            with ctx.autocast():
                fake = nets["G"](a)
            loss, parts = self.loss({"pred": fake.float()}, {"target": b})
            ctx.step(loss, "G")
            return {"loss": float(loss.detach()), **parts}
        if self.mode == "cgan":
            return self._cgan_step(a, b, nets, ctx)
        return self._cycle_step(a, b, nets, ctx)

    def _cgan_step(self, a, b, nets, ctx) -> dict[str, float]:
        """G first (adv + pixel terms), then D on 0.5 (real + the same fake, detached)."""
        G, D = nets["G"], nets["D"]
        with ctx.autocast():
            fake = G(a)
            with unsynced(D):  # D's gradients from G's step are discarded
                d_fake = D(torch.cat([fake, a], dim=1))
        loss, parts = self.loss({"pred": fake.float(), "d_fake": d_fake}, {"target": b})
        ctx.step(loss, "G")
        with ctx.autocast():
            d_loss = discriminator_step_loss(
                D, torch.cat([b, a], dim=1), torch.cat([fake, a], dim=1)
            )
        ctx.step(d_loss, "D")
        return {"loss": float(loss.detach()), "loss_D": float(d_loss.detach()), **parts}

    def _cycle_step(self, a, b, nets, ctx) -> dict[str, float]:
        """Both generators on one loss (adv + cycle (+ identity) per direction), then both
        discriminators."""
        G, F, DB, DA = nets["G"], nets["G_back"], nets["D"], nets["D_back"]
        identity = bool(self.spec.loss.get("identity"))
        with ctx.autocast():
            fake_b, fake_a = G(a), F(b)
            with unsynced(DB, DA):
                d_b, d_a = DB(fake_b), DA(fake_a)
            out_ab = {
                "pred": fake_b.float(),
                "d_fake": d_b,
                "cycle": F(fake_b).float(),
                "cycle_target": a,
            }
            out_ba = {
                "pred": fake_a.float(),
                "d_fake": d_a,
                "cycle": G(fake_a).float(),
                "cycle_target": b,
            }
            if identity:
                out_ab |= {"identity": G(b).float(), "identity_target": b}
                out_ba |= {"identity": F(a).float(), "identity_target": a}
        loss_ab, parts = self.loss(out_ab, {"target": b})
        loss_ba, _ = self.loss(out_ba, {"target": a})
        loss = loss_ab + loss_ba
        ctx.step(loss, ("G", "G_back"))
        with ctx.autocast():
            d_loss = discriminator_step_loss(DB, b, fake_b) + discriminator_step_loss(DA, a, fake_a)
        ctx.step(d_loss, ("D", "D_back"))
        return {"loss": float(loss.detach()), "loss_D": float(d_loss.detach()), **parts}

    # ----------------------------------------------------------------- evaluation
    def eval_batch_size(self, split: str) -> int:
        """The seed's batches (5 held-out, 40 training subjects): its seed_* metrics are per
        batch."""
        return SEED_BATCH["train" if split == "train" else "test"]

    def also_scored(self) -> dict[str, PairedImages]:
        """The first ``data.train_scored`` training subjects (all by default), as
        ``val_train_*``."""
        n = min(len(self.train_set), self.spec.data.train_scored or len(self.train_set))
        return {"train": self.train_set.head(n)}

    def eval_step(self, batch: dict, nets: dict[str, nn.Module], preview: bool) -> Evaluated:
        """Per subject (mae, psnr, ssim, the identity baseline as base_*, the batch's loss) in the
        files' units; the seed's per-batch metrics as a batch row; the sample grid as the
        preview."""
        G, ranges = nets["G"], self.train_set.ranges  # one mapping to [-1, 1] for every split
        a, b = batch["source"], batch["target"]
        fake = G(a).float()
        loss = float(self.eval_loss({"pred": fake}, {"target": b})[0])
        gt, pred = from_unit(b, ranges["target"]).cpu(), from_unit(fake, ranges["target"]).cpu()
        base = from_unit(a, ranges["source"]).cpu()
        span = ranges["target"][1] - ranges["target"][0]
        parts = [
            (int(subject), mine | {f"base_{k}": v for k, v in ident.items()} | {"loss": loss})
            for subject, mine, ident in zip(
                batch["subject"], synthesis_scores(gt, pred, span), synthesis_scores(gt, base, span)
            )
        ]
        seed = seed_scores(gt, pred) | {f"base_{k}": v for k, v in seed_scores(gt, base).items()}
        return Evaluated(parts, [seed], self._grid(G) if preview else None)

    def _grid(self, G: nn.Module) -> dict[str, torch.Tensor]:
        """The sample grid, saved as samples/epoch-<E>.png in the point folder, and live panels."""
        grid = sample_grid(G, self.val_set, self.spec.data.samples)
        self.ctx.write(f"samples/epoch-{self.ctx.epoch:03d}.png", png_bytes(grid))
        h = grid.shape[0] // 3
        t1, fake, t2 = grid[:h, :h], grid[h : 2 * h, :h], grid[2 * h :, :h]
        return {
            "samples": grid,
            "input": t1,
            "prediction": fake,
            "target": t2,
            "error": (fake - t2).abs(),
        }
