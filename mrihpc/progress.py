"""Progress bars with an ETA, for terminals only: Slurm logs and pipes get one line per epoch.

A point's progress is read from the last record of its metrics.jsonl (every logged step
carries ``epoch``, ``batch`` and ``batches``), so the waiting ``submit`` of a local sweep
can draw one bar for all its points without talking to them.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Sequence, TextIO


def bar(fraction: float, width: int = 24) -> str:
    filled = int(round(max(0.0, min(1.0, fraction)) * width))
    return "|" + "#" * filled + "-" * (width - filled) + "|"


def duration(seconds: float) -> str:
    seconds = int(max(0, seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s" if m else f"{s}s"


def eta(elapsed: float, done: float) -> str:
    """Remaining time at the rate so far (``done`` in [0, 1] of the work since ``elapsed``
    began)."""
    return duration(elapsed / done * (1 - done)) if done > 0 else "?"


def point_fraction(record: dict | None, epochs: int) -> float:
    """Share of a point's training done, from its last metrics record."""
    if not record:
        return 0.0
    if record.get("kind") == "epoch":
        return min(1.0, (record["epoch"] + 1) / epochs)
    batches = max(1, record.get("batches", 1))
    return min(1.0, (record["epoch"] + record.get("batch", 0) / batches) / epochs)


def last_record(path: Path, tail_bytes: int = 4096) -> dict | None:
    """The last complete JSON line of a metrics file (reads only its end)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            f.seek(max(0, f.tell() - tail_bytes))
            lines = f.read().splitlines()
    except FileNotFoundError:
        return None
    for line in reversed(lines):
        try:
            return json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue
    return None


class SweepProgress:
    """``update()`` redraws one line for a local sweep: points done / running, overall bar, ETA."""

    def __init__(self, metrics_files: Sequence[Path], epochs: int, stream: TextIO):
        self.files, self.epochs, self.stream = list(metrics_files), epochs, stream
        self.start = time.time()
        self.enabled = stream.isatty()
        self.drawn = False

    def update(self, finished: int) -> None:
        if not self.enabled:
            return
        fractions = [point_fraction(last_record(f), self.epochs) for f in self.files]
        done = sum(fractions) / max(1, len(fractions))
        line = (
            f"{finished}/{len(self.files)} points finished {bar(done)} {done:4.0%} elapsed "
            f"{duration(time.time() - self.start)} eta {eta(time.time() - self.start, done)}"
        )
        self.stream.write("\r" + line.ljust(100))
        self.stream.flush()
        self.drawn = True

    def close(self) -> None:
        if self.drawn:
            self.stream.write("\r" + " " * 100 + "\r")
            self.stream.flush()
            self.drawn = False
