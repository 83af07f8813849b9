"""Cine predictions: the test (or validation) cases reconstructed, scored and written.

Under ``predictions/<split>/``: ``reconstruction.npy`` ``[N, T, X, Y]`` float32 (cases in the
order of ``cases.json``), one PNG per case (rows: zero-filled | reconstruction | fully
sampled; columns: frames), and ``output.txt`` in the seed's format: the training epochs
(``Epoch [E/N], Train Loss: x, Val Loss: y``), then ``loss``, ``PSNR`` and ``SSIM`` as mean
and std (unbiased, as torch.std) over the cases.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from skimage.io import imsave

from mrihpc.node.trained import Trained
from mrihpc.paths import read_jsonl
from mrihpc.workloads.cine.data import CineCases
from mrihpc.workloads.cine.task import case_scores


def frames_panel(zf: np.ndarray, pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """uint8 ``(3 X, T Y)``: one row each for zero-filled, reconstruction, fully sampled."""
    rows = [np.concatenate(list(v), axis=1) for v in (zf, pred, target)]
    return (
        np.clip(np.concatenate(rows, axis=0) / max(float(target.max()), 1e-12), 0, 1) * 255
    ).astype(np.uint8)


def _stats(values: list[float]) -> tuple[float, float]:
    t = torch.tensor(values, dtype=torch.float64)
    return float(t.mean()), float(t.std()) if len(values) > 1 else 0.0


@torch.no_grad()
def predict(trained: Trained, split: str = "test") -> list[Path]:
    """Cases go through the network ``Trained.batches`` at a time, on the prediction device."""
    spec, task, model = trained.spec, trained.task, trained.nets["model"]
    folder, cases = task.splits()
    data = CineCases(folder, cases[split], spec.data.mask, train=False, seed=spec.train.seed)
    out_dir = trained.output_dir(split)
    preds, scores = [], []
    for part in trained.batches(len(data), lambda: data[0]["input"]):
        items = [data[i] for i in part]
        x, k, m = (
            torch.from_numpy(np.stack([it[key] for it in items]))
            for key in ("input", "kspace", "mask")
        )
        pred = model(*trained.on_device(x, k, m)).float().cpu()  # (B, T, X, Y)
        target = torch.from_numpy(np.stack([it["target"] for it in items]))
        zf = torch.sqrt(x[:, 0] ** 2 + x[:, 1] ** 2)
        mse = (pred - target).pow(2).mean(dim=(1, 2, 3))
        scores += [row | {"loss": float(e)} for row, e in zip(case_scores(target, pred), mse)]
        for b, item in enumerate(items):
            preds.append(pred[b].numpy())
            imsave(
                out_dir / f"case{item['case']:04d}.png",
                frames_panel(zf[b].numpy(), pred[b].numpy(), item["target"]),
                check_contrast=False,
            )
    np.save(out_dir / "reconstruction.npy", np.stack(preds).astype(np.float32))
    (out_dir / "cases.json").write_text(
        json.dumps({"cases": cases[split], "scores": scores}, indent=1)
    )
    epochs = [r for r in read_jsonl(trained.paths.metrics, dict) if r.get("kind") == "epoch"]
    lines = [
        f"Epoch [{r['epoch'] + 1}/{spec.train.epochs}], Train Loss: {r['train_loss']:.6f}, "
        f"Val Loss: {r.get('val_loss', float('nan')):.6f}"
        for r in epochs
    ]
    for name, key in (("loss", "loss"), ("PSNR", "psnr1"), ("SSIM", "ssim")):
        mean, std = _stats([s[key] for s in scores])
        lines.append(f"{name}: mean = {mean:.6g}, std = {std:.6g}")
    (out_dir / "output.txt").write_text("\n".join(lines) + "\n")
    return [out_dir / "reconstruction.npy", out_dir / "output.txt"]
