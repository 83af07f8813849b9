"""One clean line per epoch (no carriage returns, so Slurm logs stay readable), with an ETA."""
from __future__ import annotations

import sys
import time


class Console:
    def __init__(self, name: str, epochs: int, metric: str, stream=None):
        self.name, self.epochs, self.metric = name, epochs, metric
        self.stream = stream or sys.stdout
        self.start = time.time()
        self.first_epoch = None

    def log(self, metrics: dict, step: int) -> None:
        if metrics.get("kind") != "epoch":
            return
        epoch = metrics["epoch"]
        if self.first_epoch is None:
            self.first_epoch = epoch
        done = epoch - self.first_epoch + 1
        elapsed = time.time() - self.start
        eta = elapsed / done * (self.epochs - epoch - 1)
        shown = " ".join(f"{k}={v:.4g}" for k, v in metrics.items()
                         if isinstance(v, float) and (k.startswith("val_") or k in ("train_loss", "lr")))
        print(f"[{self.name}] epoch {epoch + 1}/{self.epochs} step {step} {shown} "
              f"elapsed {elapsed:.0f}s eta {eta:.0f}s", file=self.stream, flush=True)

    def close(self) -> None:
        pass
