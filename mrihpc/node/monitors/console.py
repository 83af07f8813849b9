"""Training progress on the console: one clean line per epoch (no carriage returns, so Slurm
logs stay readable), and on a terminal also a progress bar with ETA redrawn at each logged step."""

from __future__ import annotations

import sys
import time

from mrihpc.progress import bar, duration, eta, point_fraction


class Console:
    def __init__(self, name: str, epochs: int, metric: str, stream=None):
        self.name, self.epochs, self.metric = name, epochs, metric
        self.stream = stream or sys.stdout
        self.bar = self.stream.isatty()
        self.start = time.time()
        self.first = None  # progress when this process started (a resumed point starts midway)

    def _progress(self, metrics: dict) -> tuple[float, str]:
        done = point_fraction(metrics, self.epochs)
        if self.first is None:
            self.first = done if metrics.get("kind") == "step" else 0.0
        elapsed = time.time() - self.start
        return elapsed, eta(elapsed, (done - self.first) / max(1e-9, 1 - self.first))

    def log(self, metrics: dict, step: int) -> None:
        kind = metrics.get("kind")
        if kind == "step" and self.bar:
            elapsed, left = self._progress(metrics)
            done = point_fraction(metrics, self.epochs)
            line = (
                f"[{self.name}] epoch {metrics['epoch'] + 1}/{self.epochs} {bar(done)} {done:4.0%} "
                f"step {step} loss={metrics.get('loss', float('nan')):.4g} eta {left}"
            )
            self.stream.write("\r" + line.ljust(100))
            self.stream.flush()
        if kind != "epoch":
            return
        elapsed, left = self._progress(metrics)
        shown = " ".join(
            f"{k}={v:.4g}"
            for k, v in metrics.items()
            if isinstance(v, float) and (k.startswith("val_") or k in ("train_loss", "lr"))
        )
        clear = "\r" + " " * 100 + "\r" if self.bar else ""
        print(
            f"{clear}[{self.name}] epoch {metrics['epoch'] + 1}/{self.epochs} step {step} {shown} "
            f"elapsed {duration(elapsed)} eta {left}",
            file=self.stream,
            flush=True,
        )

    def close(self) -> None:
        pass
