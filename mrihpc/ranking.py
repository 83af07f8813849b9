"""The best point (or configuration) of a run by its own records, torch-free and shared by
both sides: the login node's ``predict --best`` / ``--each-fold`` and the prediction job that
``submit --then predict`` queues, which decides on the node once the sweep has ended."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from typing import Optional

from mrihpc.paths import RunPaths, read_json, scan_jsonl


def best_value(metrics_file: Path, metric: str, higher: bool) -> Optional[float]:
    """The best finite ``val_<metric>`` of a point's epochs, None without one."""
    records, _ = scan_jsonl(metrics_file, dict)
    values = [r.get(f"val_{metric}") for r in records if r.get("kind") == "epoch"]
    values = [
        float(v)
        for v in values
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    ]
    return (max(values) if higher else min(values)) if values else None


#: the overrides that make one configuration's cross-validation points (``sweep.folds``)
FOLD_KEYS = ("data.fold", "data.folds")


def configuration_key(point: dict, dropped: tuple[str, ...] = FOLD_KEYS) -> str:
    """A manifest point's overrides without ``dropped``: equal for the folds of one
    configuration."""
    kept = {k: v for k, v in point.get("overrides", {}).items() if k not in dropped}
    return json.dumps(kept, sort_keys=True, default=str)


def _scored(run: RunPaths) -> tuple[str, bool, list[tuple[float, dict]]]:
    """(metric, higher is better, [(best val_<metric>, manifest point)] of the points that have
    one)."""
    manifest = read_json(run.manifest, {}, dict) or {}
    metric = manifest.get("metric", "ssim")
    higher = (manifest.get("metric_directions") or {}).get(metric, "max") == "max"
    scored = [
        (v, p)
        for p in manifest.get("points", [])
        if (v := best_value(run.point(p["index"]).metrics, metric, higher)) is not None
    ]
    # adaptive: the points of the last rung with a score rank
    for rung in reversed((manifest.get("adaptive") or {}).get("rungs", [])):
        held = set(rung["points"])
        if top := [(v, p) for v, p in scored if p["index"] in held]:
            scored = top
            break
    if not scored:
        raise ValueError(f"{run.root}: no point has a validated epoch of val_{metric} yet")
    return metric, higher, scored


def best_point(run: RunPaths) -> int:
    """The index of the point whose validation ``train.metric`` was best (the manifest's metric
    and direction; the higher index on a tie; of an adaptive sweep, among the points of its last
    rung); ValueError when no point has a validated epoch."""
    _, higher, scored = _scored(run)
    sign = -1 if higher else 1
    return min(scored, key=lambda s: (sign * s[0], -s[1]["index"]))[1]["index"]


def best_configuration(run: RunPaths) -> list[int]:
    """The points (its folds) of the configuration whose mean over its folds of the best
    validation ``train.metric`` is best, as ``results`` ranks them; every fold point of that
    configuration, scored or not, in index order. Without folds: the best point alone."""
    _, higher, scored = _scored(run)
    groups: dict[str, list[float]] = {}
    for value, point in scored:
        groups.setdefault(configuration_key(point), []).append(value)
    sign = -1 if higher else 1
    best = min(
        groups,
        key=lambda g: (
            sign * statistics.fmean(groups[g]),
            min(p["index"] for _, p in scored if configuration_key(p) == g),
        ),
    )
    manifest = read_json(run.manifest, {}, dict) or {}
    return sorted(p["index"] for p in manifest.get("points", []) if configuration_key(p) == best)
