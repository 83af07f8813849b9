"""The ``blobs`` prediction writer: ``<name>_denoised.npy`` ``(H, W)`` per image of the split."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from mrihpc.node.trained import Trained


@torch.no_grad()
def predict(trained: Trained, split: str = "test") -> list[Path]:
    data = trained.task.images(split)
    out, written = trained.output_dir(split), []
    for part in trained.batches(len(data), lambda: data[0]["input"]):
        items = [data[i] for i in part]
        x = torch.from_numpy(np.stack([it["input"] for it in items]))  # (B, 1, H, W)
        pred = trained.nets["model"](*trained.on_device(x)).float().cpu()
        for item, image in zip(items, pred):
            written.append(out / f"{data.files[item['index']].stem}_denoised.npy")
            np.save(written[-1], image[0].numpy())
    return written
