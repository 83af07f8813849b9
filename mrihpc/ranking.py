"""The best point of a run by its own records, torch-free and shared by both sides: the login
node's ``predict --best`` and the prediction job that ``submit --then predict`` queues, which
decides on the node once the sweep has ended."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

from mrihpc.paths import RunPaths, read_json, scan_jsonl


def best_value(metrics_file: Path, metric: str, higher: bool) -> Optional[float]:
    """The best finite ``val_<metric>`` of a point's epochs, None without one."""
    records, _ = scan_jsonl(metrics_file, dict)
    values = [r.get(f"val_{metric}") for r in records if r.get("kind") == "epoch"]
    values = [float(v) for v in values if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)]
    return (max(values) if higher else min(values)) if values else None


def best_point(run: RunPaths) -> int:
    """The index of the point whose validation ``train.metric`` was best (the manifest's metric
    and direction); ValueError when no point has a validated epoch."""
    manifest = read_json(run.manifest, {}, dict) or {}
    metric = manifest.get("metric", "ssim")
    higher = (manifest.get("metric_directions") or {}).get(metric, "max") == "max"
    scored = [(v, p["index"]) for p in manifest.get("points", [])
              if (v := best_value(run.point(p["index"]).metrics, metric, higher)) is not None]
    if not scored:
        raise ValueError(f"{run.root}: no point has a validated epoch of val_{metric} yet")
    return (max(scored) if higher else min(scored, key=lambda s: (s[0], -s[1])))[1]
