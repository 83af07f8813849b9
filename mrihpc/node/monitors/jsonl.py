"""metrics.jsonl: one JSON object per logged step, epoch or test scoring, flushed at once (always
on)."""

from __future__ import annotations

import json
import time
from pathlib import Path

from mrihpc.paths import open_no_follow


class MetricsFile:
    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.file = open_no_follow(path, "a", buffering=1)

    def log(self, metrics: dict, step: int) -> None:
        if metrics.get("kind") not in ("step", "epoch", "test"):  # images go to live plots only
            return
        self.file.write(json.dumps({"step": step, "time": round(time.time(), 3), **metrics}) + "\n")

    def close(self) -> None:
        self.file.close()
