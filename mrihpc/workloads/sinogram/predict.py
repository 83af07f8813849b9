"""Sinogram predictions in the input's own layout, for the user's reconstruction chain.

``predictions/<split>/<case>_pred.raw``: headerless, ``[TOF, Slice, W, L]`` exactly as the input
(cropped back from the padding, multiplied by the case's scale), in the input's dtype (uint16,
rounded and clipped to 0..65535) or float32 (``data.output_dtype``). ``predictions.json`` lists
the files, their shape, dtype and scale, and each file's PSNR / SSIM / NMSE over its slices
against the clean file, with the input's scores as the baseline; when inpainting, also inside the
bad blocks alone (``*_hole``). A noisy file of the test folder without a clean partner (a new
acquisition) is predicted and listed without scores, and so is a file to inpaint whose own values
inside the bad blocks are all zero (acquired with the dead blocks): there is no truth to score
the filled-in blocks against, and scoring them against zeros would punish the filling.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from mrihpc.metrics import image_scores
from mrihpc.node.trained import Trained
from mrihpc.workloads.sinogram.data import wrap_pad


def _mean(rows: list[dict]) -> dict[str, float]:
    return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]} if rows else {}


@torch.no_grad()
def predict(trained: Trained, split: str = "test") -> list[Path]:
    """Each file's slices through the network, as many a pass as ``Trained.batch_for`` says,
    on the prediction device."""
    spec, task, model = trained.spec, trained.task, trained.nets["model"]
    data = task.split(split)
    tof, slices = task.layout.shape[:2]
    dtype = task.layout.dtype if spec.data.output_dtype == "input" else "float32"
    centre, inpaint = spec.data.channels // 2, spec.data.mode == "inpaint"
    out_dir = trained.output_dir(split)

    def pad(item: dict) -> np.ndarray:  # (C, W', L'): the input wrapped to the U-Net's multiple
        return np.ascontiguousarray(wrap_pad(item["input"], spec.data.pad_multiple))

    batch = trained.batch_for(pad(data.sample(0, 0, 0)).shape) if data.cases else 1
    written, summary = [], {"shape": list(task.layout.shape), "dtype": dtype, "files": []}
    for index, case in enumerate(data.cases):
        target = out_dir / f"{case.stem}_pred.raw"
        mine, base, holes, truth_in_holes = [], [], 0.0, 0.0
        with open(target, "wb") as f:  # slices in file order: [TOF, Slice] row-major
            where = [(t, s) for t in range(tof) for s in range(slices)]
            for start in range(0, len(where), batch):
                items = [data.sample(index, t, s) for t, s in where[start : start + batch]]
                x = torch.from_numpy(np.stack([pad(i) for i in items]))
                out = model(*trained.on_device(x)).float().cpu()
                pred = task.cropped(out)[:, 0]  # (B, W, L), scaled
                if case.clean is not None:
                    gt = torch.from_numpy(np.stack([i["target"][0] for i in items]))
                    given = torch.from_numpy(np.stack([i["input"][centre] for i in items]))
                    hole = (
                        torch.from_numpy(np.stack([i["hole"] for i in items])) if inpaint else None
                    )  # (B, 1, W, L)
                    mine += image_scores(gt[:, None], pred[:, None], hole)
                    base += image_scores(gt[:, None], given[:, None], hole)
                    if inpaint:
                        holes, truth_in_holes = (
                            holes + float(hole.sum()),
                            truth_in_holes + float((gt[:, None] * hole).abs().sum()),
                        )
                counts = pred.numpy() * data.scales[index]
                if dtype == "uint16":
                    counts = np.clip(np.rint(counts), 0, 65535)
                f.write(counts.astype(dtype).tobytes())
        written.append(target)
        entry = {
            "input": str(case.noisy or case.clean),
            "prediction": target.name,
            "scale": data.scales[index],
        }
        if holes > 0 and truth_in_holes == 0:
            mine, base = [], []
            entry["unscored"] = (
                "the file's values inside the bad blocks are all zero: nothing to score "
                "the filling against"
            )
        summary["files"].append(entry | {"scores": _mean(mine), "input_scores": _mean(base)})
    (out_dir / "predictions.json").write_text(json.dumps(summary, indent=1))
    return written + [out_dir / "predictions.json"]
