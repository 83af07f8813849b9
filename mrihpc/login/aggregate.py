"""Points that differ only by their cross-validation fold (and, when asked, by their seed)
grouped into configurations: n, mean and sample standard deviation of each score, ranked by
the mean of the sort column. Seed 000 compared its optimisers by "Fold k SSIM Ave"; this is that
table for any sweep.

A configuration is a point's overrides without ``data.fold`` / ``data.folds`` (and
``train.seed`` with ``by_seed``); its label is the point's name without those coordinates.
Points that did not finish a scored epoch count in ``n_points`` but not in the mean.
"""

from __future__ import annotations

import math
import statistics
from typing import Optional

from mrihpc.ranking import FOLD_KEYS, configuration_key

SEED_KEY = "train.seed"


def has_folds(manifest: dict) -> bool:
    return any("data.fold" in p.get("overrides", {}) for p in manifest["points"])


def configuration(point: dict, by_seed: bool) -> tuple[str, str]:
    """(grouping key, readable label) of a manifest point."""
    dropped = FOLD_KEYS + ((SEED_KEY,) if by_seed else ())
    parts = [
        p
        for p in point["name"].split(",")
        if not p.startswith(("fold=",) + (("seed=",) if by_seed else ()))
    ]
    return configuration_key(point, dropped), ",".join(parts) or "(base)"


def _numbers(rows: list[dict], column: str) -> list[float]:
    values = [r.get(column) for r in rows]
    return [
        float(v)
        for v in values
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    ]


def aggregate_rows(
    rows: list[dict], manifest: dict, key: str, higher_is_better: bool, by_seed: bool = False
) -> list[dict]:
    """One row per configuration from ``results_rows``' rows: ``config``, ``n`` (points with a
    score), ``points`` (their indices), then ``<column>_mean`` / ``<column>_std`` for the sort
    ``key`` first and every other score column; best mean first."""
    points = {p["index"]: p for p in manifest["points"]}
    groups: dict[str, tuple[str, list[dict]]] = {}
    for row in rows:
        group, label = configuration(points[row["point"]], by_seed)
        groups.setdefault(group, (label, []))[1].append(row)
    scores = [
        c
        for c in dict.fromkeys(k for r in rows for k in r)
        if c.startswith(("best_", "val_", "test_")) and c != key
    ]
    out = []
    for label, members in groups.values():
        scored = _numbers(members, key)
        agg = {
            "config": label,
            "n": len(scored),
            "points": " ".join(str(r["point"]) for r in members),
        }
        for column in [key] + scores:
            values = _numbers(members, column)
            agg[f"{column}_mean"] = statistics.fmean(values) if values else None
            agg[f"{column}_std"] = statistics.stdev(values) if len(values) > 1 else None
        if len(scored) < len(members):
            agg["unscored"] = len(members) - len(scored)
        out.append(agg)
    ranked = [r for r in out if r[f"{key}_mean"] is not None]
    ranked.sort(key=lambda r: r[f"{key}_mean"], reverse=higher_is_better)
    return ranked + [r for r in out if r[f"{key}_mean"] is None]


def summary_line(aggregated: list[dict], key: str, folds: Optional[int]) -> str:
    what = f"{folds} folds" if folds else "points"
    return (
        f"{len(aggregated)} configuration(s), ranked by the mean of {key} over {what} (std: "
        "sample, n - 1)"
    )
