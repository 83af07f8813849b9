"""Synthesis predictions: one synthesised T2 per test subject, in the input's own layout.

``predictions/<split>/<id> - <target>.pt``: a float32 ``(H, W)`` tensor in the files' units (the
same naming and shape as the IXI set), ``samples.png`` (T1 | synthesised | real, a column per
subject, for the first ``data.samples``) and ``scores.json`` (per subject MAE / PSNR / SSIM, the
identity baseline, and their means).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from mrihpc.node.trained import Trained
from mrihpc.workloads.synthesis.data import from_unit
from mrihpc.workloads.synthesis.task import synthesis_scores, sample_grid, save_png


@torch.no_grad()
def predict(trained: Trained, split: str = "test") -> list[Path]:
    """``split``: train, val or test subjects (split.json's), ``Trained.batches`` at a time through
    the generator on the prediction device."""
    spec, G = trained.spec, trained.nets["G"]
    data = dict(zip(("train", "val", "test"), trained.task.sets()))[split]
    out_dir = trained.output_dir(split)
    rng_t, rng_s = data.ranges["target"], data.ranges["source"]
    written, rows = [], {}
    for part in trained.batches(len(data), lambda: data[0]["source"]):
        start, items = part[0], [data[i] for i in part]
        (source,) = trained.on_device(torch.stack([it["source"] for it in items]))
        fake = from_unit(G(source).float().cpu(), rng_t)
        gt = from_unit(torch.stack([it["target"] for it in items]), rng_t)
        base = from_unit(torch.stack([it["source"] for it in items]), rng_s)
        span = rng_t[1] - rng_t[0]
        for k, (mine, ident) in enumerate(
            zip(synthesis_scores(gt, fake, span), synthesis_scores(gt, base, span))
        ):
            subject = data.ids[start + k]
            target = out_dir / f"{subject} - {spec.data.target}.pt"
            torch.save(fake[k, 0].contiguous().clone(), target)
            written.append(target)
            rows[subject] = mine | {f"base_{n}": v for n, v in ident.items()}
    save_png(sample_grid(G, data, spec.data.samples), out_dir / "samples.png")
    means = {k: float(np.mean([r[k] for r in rows.values()])) for k in next(iter(rows.values()))}
    (out_dir / "scores.json").write_text(json.dumps({"mean": means, "subjects": rows}, indent=1))
    return written + [out_dir / "samples.png", out_dir / "scores.json"]
