"""Successive halving's rungs (``sweep.adaptive``): each rung's epochs, the points it holds,
and which of them the next rung keeps.

Torch-free and shared by both sides: ``submit`` writes rung 0 into the manifest, the promotion
job (``mrihpc.login.promote``) appends each later rung, a point on its node trains to its
latest rung's epochs, and ``status`` / ``results`` / ``predict --best`` read the rungs back.

The manifest's ``adaptive`` entry::

    {"kind": "successive_halving", "metric": "ssim", "higher": true, "eta": 2,
     "budgets": [1, 2, 4, 8],                       # epochs at the end of each rung
     "rungs": [{"epochs": 1, "points": [0, ..., 15]},
               {"epochs": 2, "points": [3, 7, ...], "values": {"3": 0.61, ...}, "time": ...,
                "queued": ["1234"]}, ...],
     "promotions": [{"rung": 0, "job_id": "1240", "time": ...}, ...]}
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Optional

from mrihpc.paths import RunPaths, scan_jsonl
from mrihpc.ranking import configuration_key


def budgets(min_epochs: int, eta: int, max_epochs: int) -> list[int]:
    """Each rung's epochs: min_epochs x eta^k below max_epochs, then max_epochs.
    budgets(1, 2, 8) == [1, 2, 4, 8]; budgets(3, 3, 20) == [3, 9, 20]."""
    out, epochs = [], min_epochs
    while epochs < max_epochs:
        out.append(epochs)
        epochs *= eta
    return out + [max_epochs]


def plan(spec, metric_directions: dict[str, str], indices: list[int]) -> Optional[dict]:
    """The manifest's ``adaptive`` entry at submit (rung 0 holds every point); None without
    ``sweep.adaptive``."""
    a = spec.sweep.adaptive
    if a is None:
        return None
    metric, epochs = a.metric or spec.train.metric, budgets(a.min_epochs, a.eta, spec.train.epochs)
    return {
        "kind": a.kind,
        "metric": metric,
        "higher": metric_directions.get(metric, "max") == "max",
        "eta": a.eta,
        "budgets": epochs,
        "rungs": [{"epochs": epochs[0], "points": list(indices)}],
        "promotions": [],
        "partition": a.partition,  # the promotion jobs'; None: the points'
    }


def last_rungs(manifest: dict) -> dict[int, int]:
    """Point index -> the last rung that holds it (every point is in rung 0), in one pass: what
    status and results read for 10,000 points."""
    out: dict[int, int] = {}
    for k, rung in enumerate(manifest["adaptive"]["rungs"]):
        out |= dict.fromkeys(rung["points"], k)
    return out


def rung_of(manifest: dict, index: int) -> Optional[int]:
    """The last rung that holds point ``index``; None for a sweep that is not adaptive."""
    adaptive = manifest.get("adaptive")
    if not adaptive:
        return None
    return max(
        (k for k, rung in enumerate(adaptive["rungs"]) if index in rung["points"]), default=0
    )


def epochs_for(manifest: dict, index: int) -> Optional[int]:
    """The epochs point ``index`` trains to now: its last rung's; None when not adaptive."""
    k = rung_of(manifest, index)
    return None if k is None else manifest["adaptive"]["rungs"][k]["epochs"]


def is_last(manifest: dict, rung: int) -> bool:
    return rung + 1 >= len(manifest["adaptive"]["budgets"])


def rung_value(metrics: Path, metric: str, higher: bool, epochs: int) -> Optional[float]:
    """A point's score at a rung of ``epochs``: the best finite ``val_<metric>`` of its epochs
    before ``epochs``, provided it validated epoch ``epochs - 1`` (it finished the rung);
    otherwise None (failed, interrupted, or still running)."""
    records, _ = scan_jsonl(metrics, dict)
    scored = [
        r
        for r in records
        if r.get("kind") == "epoch"
        and isinstance(r.get("epoch"), int)
        and r["epoch"] < epochs
        and isinstance(r.get(f"val_{metric}"), (int, float))
    ]
    if not any(r["epoch"] == epochs - 1 for r in scored):
        return None
    values = [float(r[f"val_{metric}"]) for r in scored if math.isfinite(r[f"val_{metric}"])]
    return (max(values) if higher else min(values)) if values else None


def choose(run: RunPaths, manifest: dict, rung: int) -> tuple[list[int], dict[int, float], str]:
    """The points of rung ``rung + 1``: of rung ``rung``'s configurations (a configuration is
    its folds, ranked by their mean) the best ``max(1, n // eta)`` that finished the rung.
    Returns (point indices, each finished point's score, a line that says what was chosen)."""
    a = manifest["adaptive"]
    this = a["rungs"][rung]
    by_index = {p["index"]: p for p in manifest["points"]}
    values = {
        i: v
        for i in this["points"]
        if (v := rung_value(run.point(i).metrics, a["metric"], a["higher"], this["epochs"]))
        is not None
    }
    groups: dict[str, list[int]] = {}
    for i in this["points"]:
        groups.setdefault(configuration_key(by_index[i]), []).append(i)
    finished = {
        key: statistics.fmean(values[i] for i in members)
        for key, members in groups.items()
        if all(i in values for i in members)
    }
    keep = max(1, len(groups) // a["eta"])
    sign = -1 if a["higher"] else 1
    ranked = sorted(finished, key=lambda key: (sign * finished[key], min(groups[key])))[:keep]
    chosen = sorted(i for key in ranked for i in groups[key])
    line = (
        f"rung {rung} ({this['epochs']} epochs): {len(finished)} of {len(groups)} configuration(s) "
        f"finished; keeping {len(ranked)} (1/{a['eta']}) -> rung {rung + 1} "
        f"({a['budgets'][rung + 1]} epochs): point(s) {' '.join(map(str, chosen)) or 'none'}"
    )
    return chosen, values, line


def epochs_spent(manifest: dict) -> tuple[int, int]:
    """(epochs the rungs so far train, summed over points, the full grid's epochs: every point
    to the last rung's). A promoted point resumes, so rung k costs its new epochs only."""
    a = manifest["adaptive"]
    spent, before = 0, 0
    for rung in a["rungs"]:
        spent += len(rung["points"]) * (rung["epochs"] - before)
        before = rung["epochs"]
    return spent, len(manifest["points"]) * a["budgets"][-1]


def summary(manifest: dict, promotion_state: Optional[str] = None) -> str:
    """One line per rung for ``status``: its epochs, its points and how it was reached;
    ``promotion_state``: Slurm's state of the pending promotion job, where known."""
    a = manifest["adaptive"]
    lines = []
    for k, rung in enumerate(a["rungs"]):
        lines.append(f"rung {k}: {len(rung['points'])} point(s) to {rung['epochs']} epochs")
    promotions = {p["rung"]: p for p in a.get("promotions", [])}
    k = len(a["rungs"]) - 1
    if not a["rungs"][k]["points"]:
        lines.append(f"stopped: no point finished rung {k - 1}")
    elif not is_last(manifest, k):
        job = promotions.get(k)
        if job and promotion_state in ("pending", "running", "requeued", None):
            step = f"promotion job {job['job_id']} chooses its points once rung {k} ends"
        elif job:
            step = (
                f"promotion job {job['job_id']} ended {promotion_state} without promoting; "
                "`mrihpc resubmit RUN` queues another"
            )
        else:
            step = f"waits for rung {k}'s promotion"
        lines.append(f"rung {k + 1} ({a['budgets'][k + 1]} epochs): {step}")
    spent, full = epochs_spent(manifest)
    lines.append(
        f"epochs: {spent} so far of the full grid's {full} ({spent / full:.0%}); "
        f"successive halving, eta {a['eta']}, by val_{a['metric']}"
    )
    return "\n".join(lines)


def outline(budgets_: list[int], configurations: int, folds: int, eta: int) -> str:
    """What the rungs will be when every configuration finishes each rung (``submit --dry-run``):
    each rung's points and epochs, and the epochs against the full grid's."""
    rungs_, n, before, spent = [], configurations, 0, 0
    for k, epochs in enumerate(budgets_):
        rungs_.append(f"rung {k}: {n * folds} point(s) to {epochs} epochs")
        spent, before, n = spent + n * folds * (epochs - before), epochs, max(1, n // eta)
    full = configurations * folds * budgets_[-1]
    return "; ".join(rungs_) + f"; {spent} of the full grid's {full} epochs ({spent / full:.0%})"
