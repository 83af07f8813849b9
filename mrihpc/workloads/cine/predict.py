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

from mrihpc.node import checkpoint
from mrihpc.paths import PointPaths, read_jsonl
from mrihpc.specfile import load_point_spec
from mrihpc.workloads.cine.data import CineCases
from mrihpc.workloads.cine.task import CineNet, CineTask, case_scores


def frames_panel(zf: np.ndarray, pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """uint8 ``(3 X, T Y)``: one row each for zero-filled, reconstruction, fully sampled."""
    rows = [np.concatenate(list(v), axis=1) for v in (zf, pred, target)]
    return (np.clip(np.concatenate(rows, axis=0) / max(float(target.max()), 1e-12), 0, 1) * 255).astype(np.uint8)


def _stats(values: list[float]) -> tuple[float, float]:
    t = torch.tensor(values, dtype=torch.float64)
    return float(t.mean()), float(t.std()) if len(values) > 1 else 0.0


@torch.no_grad()
def predict(paths: PointPaths, split: str = "test", which: str = "best") -> list[Path]:
    spec = load_point_spec(paths)
    task = CineTask(spec, world=None)
    folder, cases = task.splits()
    nets = checkpoint.trained_nets(paths.best_checkpoint, paths.last_checkpoint, which)
    data = CineCases(folder, cases[split], spec.data.mask, train=False, seed=spec.train.seed)
    model = CineNet(spec.model, np.load(folder / "data.npy", mmap_mode="r").shape[1])
    model.load_state_dict(nets["model"])
    model.eval()
    out_dir = paths.prediction_dir(split, which)
    preds, scores = [], []
    for i in range(len(data)):
        item = {k: torch.as_tensor(v)[None] if not isinstance(v, int) else v for k, v in data[i].items()}
        pred = model(item["input"], item["kspace"], item["mask"]).float()
        zf = torch.sqrt(item["input"][:, 0] ** 2 + item["input"][:, 1] ** 2)
        mse = float((pred - item["target"]).pow(2).mean())
        scores.append(case_scores(item["target"], pred)[0] | {"loss": mse})
        preds.append(pred[0].numpy())
        imsave(out_dir / f"case{item['case']:04d}.png", frames_panel(zf[0].numpy(), pred[0].numpy(), item["target"][0].numpy()),
               check_contrast=False)
    np.save(out_dir / "reconstruction.npy", np.stack(preds).astype(np.float32))
    (out_dir / "cases.json").write_text(json.dumps({"cases": cases[split], "scores": scores}, indent=1))
    epochs = [r for r in read_jsonl(paths.metrics, dict) if r.get("kind") == "epoch"]
    lines = [f"Epoch [{r['epoch'] + 1}/{spec.train.epochs}], Train Loss: {r['train_loss']:.6f}, "
             f"Val Loss: {r.get('val_loss', float('nan')):.6f}" for r in epochs]
    for name, key in (("loss", "loss"), ("PSNR", "psnr1"), ("SSIM", "ssim")):
        mean, std = _stats([s[key] for s in scores])
        lines.append(f"{name}: mean = {mean:.6g}, std = {std:.6g}")
    (out_dir / "output.txt").write_text("\n".join(lines) + "\n")
    return [out_dir / "reconstruction.npy", out_dir / "output.txt"]
