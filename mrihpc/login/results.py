"""Status and results of a run directory, read after the fact from any shell on the login node.

Sources, in order of trust: a point's own status.json when it says done or failed; Slurm
accounting (sacct, or squeue when accounting is down) for everything the job itself could
not write (pending, cancelled, timeout, node failure, out of memory); the process table for
local runs.
"""
from __future__ import annotations

import csv
import datetime as dt
import io
import math
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import yaml

from mrihpc import workloads
from mrihpc.login import accounting
from mrihpc.paths import RunPaths, read_json, read_jsonl


class RunError(Exception):
    """A path that is not a run directory, or a point that does not exist."""


def open_run(path: Path | str) -> tuple[RunPaths, dict]:
    run = RunPaths(Path(path).resolve())
    manifest = read_json(run.manifest)
    if manifest is None:
        raise RunError(f"{path}: not a run directory (no manifest.json); expected runs/<name>/<sweep-id>")
    return run, manifest


def latest_jobs(manifest: dict) -> dict[int, dict]:
    """Point index -> its most recent submission record (job id, log paths, executor)."""
    jobs = {}
    for submission in manifest["submissions"]:
        for index, job in submission["jobs"].items():
            jobs[int(index)] = {**job, "executor": submission["executor"]}
    return jobs


@dataclass
class PointView:
    index: int
    name: str
    state: str
    job_id: str = ""
    reason: str = ""
    elapsed_s: Optional[float] = None
    epoch: Optional[int] = None
    epochs: Optional[int] = None
    latest: dict = field(default_factory=dict)
    attempts: int = 0


def _alive(pid: Optional[int]) -> bool:
    if not pid:
        return False
    try:
        os.kill(int(pid), 0)
        return True
    except (ProcessLookupError, PermissionError, ValueError):
        return False


def _seconds(a: Optional[str], b: Optional[str]) -> Optional[float]:
    try:
        return (dt.datetime.fromisoformat(b) - dt.datetime.fromisoformat(a)).total_seconds()
    except (TypeError, ValueError):
        return None


def point_views(run: RunPaths, manifest: dict) -> tuple[list[PointView], str]:
    """One view per point, and which source answered for Slurm (sacct / squeue / none)."""
    jobs = latest_jobs(manifest)
    slurm_ids = [j["job_id"] for j in jobs.values() if j["executor"] == "slurm"]
    slurm, source = {}, "none: local executor"
    if slurm_ids:
        slurm = accounting.sacct(slurm_ids)
        source = "sacct"
        if slurm is None:
            slurm, source = accounting.squeue(slurm_ids), "squeue"
            source = source if slurm is not None else "none (Slurm unreachable)"
            slurm = slurm or {}
    views = []
    for point in manifest["points"]:
        i = point["index"]
        status = read_json(run.point(i).status, {}) or {}
        job = jobs.get(i, {})
        row = slurm.get(job.get("job_id", ""), {})
        own = status.get("state")
        if own in ("done", "failed"):
            state = own
        elif row:
            state = row["state"]
            if state == "done" and own != "done":  # the job ended without the point saying done
                state = "failed"
        elif job.get("executor") in ("local", "debug"):
            state = own or "pending"
            if state == "running" and status.get("host") == socket.gethostname() and not _alive(status.get("pid")):
                state = "failed"
                status.setdefault("error", "the process ended without recording an outcome")
        elif job.get("executor") == "slurm":
            # squeue has forgotten it and the point never finished: it ended badly
            state = own if own in ("running", "interrupted") and source.startswith("sacct") else "lost"
        elif own in ("running", "interrupted"):  # `mrihpc run` in a shell: no submission record
            dead = status.get("host") == socket.gethostname() and not _alive(status.get("pid"))
            state = "interrupted" if own == "interrupted" or dead else "running"
            if dead and own == "running" and not status.get("error"):
                status["error"] = "the process ended without recording an outcome (killed?)"
        elif own:
            state = own
        else:
            state = "not submitted"
        reason = status.get("error") or row.get("reason", "") or ""
        if row.get("slurm_state") and row["state"] != state:
            reason = reason or row["slurm_state"]
        elapsed = row.get("elapsed_s") or _seconds(status.get("started"), status.get("updated"))
        views.append(PointView(i, point["name"], state, job.get("job_id", ""), str(reason)[:120], elapsed,
                               status.get("epoch"), status.get("epochs"), status.get("latest") or {},
                               int(status.get("attempts", 0))))
    return views, source


def _fmt(v) -> str:
    if v is None or v == "":
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def table(rows: list[dict], columns: list[str]) -> str:
    """Fixed-width text table."""
    cells = [[_fmt(r.get(c)) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[k]) for row in cells]) for k, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths)) for row in cells]
    return "\n".join(lines)


def status_report(run: RunPaths, manifest: dict, metric: str) -> str:
    views, source = point_views(run, manifest)
    rows = [{"point": v.index, "name": v.name, "state": v.state, "job": v.job_id,
             "elapsed": f"{v.elapsed_s:.0f}s" if v.elapsed_s is not None else None,
             "epoch": f"{v.epoch}/{v.epochs}" if v.epoch is not None else None,
             f"val_{metric}": v.latest.get(f"val_{metric}"), "mem_peak_mib": v.latest.get("mem_host_peak_mib"),
             "reason": v.reason} for v in views]
    counts: dict[str, int] = {}
    for v in views:
        counts[v.state] = counts.get(v.state, 0) + 1
    summary = f"{len(views)} points: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    return f"{table(rows, list(rows[0]))}\n{summary} (Slurm state from {source})"


def started_config(run: RunPaths) -> Optional[dict]:
    """Point 0's whole spec, every default filled in, from its config.yaml once it has started (a
    user's edit there counts), as plain YAML: the verbs that read a run must not import pydantic
    and build the spec models (0.13 s) to learn a few names. None before it started; RunError
    naming the file when an edit left it unreadable."""
    config = run.point(0).config
    if not config.is_file():
        return None
    try:
        raw = yaml.safe_load(config.read_text())
    except yaml.YAMLError as e:
        raise RunError(f"{config}: not valid YAML ({e})") from None
    if not isinstance(raw, dict) or "name" not in raw:
        raise RunError(f"{config}: not a point's spec (a mapping with name, task, ...)")
    return raw


def run_metric(run: RunPaths) -> tuple[str, str]:
    """(train.metric, task) of a run: from its first point's config.yaml once that point started,
    else (or when an edit spoiled it) from the manifest. Runs made before the manifest held them
    derive the point's spec."""
    try:
        try:
            raw = started_config(run)
            if raw is not None:
                return raw["train"]["metric"], raw["task"]
        except (RunError, KeyError, TypeError):
            pass  # the node will report the spoiled file when the point runs; the manifest knows the names
        manifest = read_json(run.manifest) or {}
        if "metric" in manifest:
            return manifest["metric"], manifest["task"]
        from mrihpc.specfile import load_point_spec

        spec = load_point_spec(run.point(0))
        return spec.train.metric, spec.task
    except (OSError, ValueError, KeyError, TypeError, yaml.YAMLError):
        return "ssim", "reconstruction"


def metric_directions(run: RunPaths, manifest: dict) -> dict[str, str]:
    """The run's task's ``{metric: "max" | "min"}``: from the manifest (no spec models imported),
    or, for runs made before it held them, from the task's registration."""
    return manifest.get("metric_directions") or workloads.get(run_metric(run)[1]).metrics


def results_rows(run: RunPaths, manifest: dict, metric: str, directions: Optional[dict[str, str]] = None) -> list[dict]:
    """Per point: coordinates, state, final validation metrics and the best value of ``metric``
    (``directions``: the task's ``{metric: "max" | "min"}``, else read from the run)."""
    views = {v.index: v for v in point_views(run, manifest)[0]}
    higher = workloads.metric_direction(directions or metric_directions(run, manifest), metric) == "max"
    rows = []
    for point in manifest["points"]:
        i = point["index"]
        epochs = [r for r in read_jsonl(run.point(i).metrics) if r.get("kind") == "epoch" and f"val_{metric}" in r]
        final = epochs[-1] if epochs else {}
        values = [r[f"val_{metric}"] for r in epochs if math.isfinite(r[f"val_{metric}"])]
        best = (max(values) if higher else min(values)) if values else None
        row = {"point": i, "name": point["name"], "state": views[i].state, "epochs": final.get("epoch", -1) + 1 if final else 0,
               f"best_{metric}": best}
        row |= {k: v for k, v in final.items() if k.startswith("val_") and k != "val_volumes"}
        rows.append(row)
    return rows


def sort_rows(rows: list[dict], key: str, higher_is_better: bool) -> list[dict]:
    """Best first; rows without the key last."""
    usable = lambda v: isinstance(v, (int, float)) and math.isfinite(v)  # noqa: E731 - NaN ranks last
    have = [r for r in rows if usable(r.get(key))]
    missing = [r for r in rows if not usable(r.get(key))]
    return sorted(have, key=lambda r: r[key], reverse=higher_is_better) + missing


def results_report(run: RunPaths, manifest: dict, metric: str, sort: Optional[str] = None, as_csv: bool = False) -> str:
    directions = metric_directions(run, manifest)  # once: an older run derives them from its spec
    rows = results_rows(run, manifest, metric, directions)
    key = sort or f"best_{metric}"
    higher = workloads.metric_direction(directions, key) == "max"
    rows = sort_rows(rows, key, higher)
    columns = list(dict.fromkeys(k for r in rows for k in r))
    # the network's own scores first (validation, then training), then what it is measured
    # against (zero-filled, baseline)
    reference = [c for c in columns if c.startswith(("val_zf_", "val_base_", "val_train_base_"))]
    train = [c for c in columns if c.startswith("val_train_") and c not in reference]
    columns = [c for c in columns if c not in reference and c not in train] + train + reference
    if as_csv:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
        return buf.getvalue()
    return table(rows, columns)
