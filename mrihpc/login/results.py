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

from mrihpc import rungs, workloads
from mrihpc.login import accounting
from mrihpc.paths import DamagedFile, RunPaths, read_json, scan_jsonl


class RunError(Exception):
    """A path that is not a run directory, or a point that does not exist."""


class SubmitRefused(RunError):
    """sbatch refused an array; ``queued``: whether arrays before it were queued."""

    def __init__(self, queued: bool, reason: str, message: str):
        super().__init__(message)
        self.queued, self.reason = queued, reason


def open_run(path: Path | str, notes: Optional[list[str]] = None) -> tuple[RunPaths, dict]:
    """The run at ``path`` and its manifest. A damaged manifest is a RunError naming it, unless
    the caller collects ``notes``: then the points are salvaged from ``points/<i>/`` (without
    their names and jobs) and the damage goes into ``notes``."""
    run = RunPaths(Path(path).resolve())
    try:
        manifest = read_json(run.manifest, kind=dict)
        if manifest is None:
            raise RunError(f"{path}: not a run directory (no manifest.json); expected runs/<name>/<sweep-id>")
        _check_manifest(run.manifest, manifest)
    except DamagedFile as e:
        if notes is None:
            raise RunError(f"{e}; status still lists the points it finds") from None
        indices = sorted(int(p.name) for p in (run.root / "points").glob("*") if p.name.isdigit())
        notes.append(f"{e}; listing the {len(indices)} point(s) found under points/, without names or jobs")
        manifest = {"points": [{"index": i, "name": "?"} for i in indices], "submissions": []}
    return run, manifest


def _check_manifest(path: Path, manifest: dict) -> None:
    """DamagedFile unless ``manifest`` has the points and submissions every verb reads."""
    points, submissions = manifest.get("points"), manifest.get("submissions")
    if not (isinstance(points, list) and all(isinstance(p, dict) and isinstance(p.get("index"), int)
                                            and isinstance(p.get("name"), str) for p in points)):
        raise DamagedFile(f"{path}: damaged: 'points' is not a list of {{index, name, ...}} objects")
    if not (isinstance(submissions, list) and all(isinstance(s, dict) and isinstance(s.get("jobs"), dict)
                                                 and isinstance(s.get("executor"), str) for s in submissions)):
        raise DamagedFile(f"{path}: damaged: 'submissions' is not a list of {{executor, jobs, ...}} objects")


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
    params: dict = field(default_factory=dict)
    """{network: parameter count}, as the node built them."""
    gpu_hours: Optional[float] = None
    """Allocated GPUs x elapsed, summed over requeued incarnations (sacct's AllocTRES); None
    without accounting."""
    cpu_hours: Optional[float] = None
    energy_kwh: Optional[float] = None
    """Where the site accounts energy (sacct's ConsumedEnergyRaw), summed like the hours."""
    nodes: str = ""
    """Where its last attempt ran (sacct's NodeList)."""
    mem_gb: Optional[float] = None
    """The memory its last attempt was allocated (sacct's AllocTRES)."""


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


def point_views(run: RunPaths, manifest: dict, notes: Optional[list[str]] = None) -> tuple[list[PointView], str]:
    """One view per point, and which source answered for Slurm (sacct / squeue / none). A damaged
    status.json leaves the point's state to Slurm ("unknown" without it) and goes into ``notes``."""
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
        elif unseen := [j for j in slurm_ids if j not in slurm]:
            # slurmdbd records a job a moment after sbatch returns: ask the controller, not "lost"
            queued = accounting.squeue(unseen) or {}
            slurm |= {j: queued[j] for j in unseen if j in queued}
    views = []
    for point in manifest["points"]:
        i = point["index"]
        try:
            status, damaged = read_json(run.point(i).status, {}, dict) or {}, ""
        except DamagedFile as e:
            status, damaged = {}, str(e)
            if notes is not None:
                notes.append(str(e))
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
        if damaged:
            state = row["state"] if row else "unknown"
        reason = status.get("error") or row.get("reason", "") or ("status.json damaged" if damaged else "")
        if row.get("slurm_state") and row["state"] != state:
            reason = reason or row["slurm_state"]
        elapsed = row.get("elapsed_s") or _seconds(status.get("started"), status.get("updated"))
        views.append(PointView(i, point["name"], state, job.get("job_id", ""), str(reason)[:120], elapsed,
                               status.get("epoch"), status.get("epochs"), status.get("latest") or {},
                               int(status.get("attempts", 0)),
                               status.get("params") if isinstance(status.get("params"), dict) else {},
                               row.get("gpu_hours"), row.get("cpu_hours"), row.get("energy_kwh"),
                               row.get("nodes") or "", row.get("mem_gb")))
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


def status_report(run: RunPaths, manifest: dict, metric: str, notes: Optional[list[str]] = None) -> str:
    views, source = point_views(run, manifest, notes)
    rows = [{"point": v.index, "name": v.name, "state": v.state, "job": v.job_id,
             "elapsed": f"{v.elapsed_s:.0f}s" if v.elapsed_s is not None else None,
             "epoch": f"{v.epoch}/{v.epochs}" if v.epoch is not None else None,
             f"val_{metric}": v.latest.get(f"val_{metric}"), "mem_peak_mib": v.latest.get("mem_host_peak_mib"),
             "params": _millions(v.params), "reason": v.reason} for v in views]
    if manifest.get("adaptive"):  # successive halving: each point's last rung, and where it stopped
        last = len(manifest["adaptive"]["rungs"]) - 1
        for r, v in zip(rows, views):
            k = rungs.rung_of(manifest, v.index)
            stopped = k < last and v.state == "done"
            r |= {"rung": k, "reason": f"stopped at rung {k}" if stopped else r.pop("reason")}
    if any(v.gpu_hours is not None for v in views):  # a Slurm run with accounting: GPU-hours so far
        for r, v in zip(rows, views):
            reason = r.pop("reason")
            r |= {"gpu_h": None if v.gpu_hours is None else round(v.gpu_hours, 4), "reason": reason}
    counts: dict[str, int] = {}
    for v in views:
        counts[v.state] = counts.get(v.state, 0) + 1
    summary = f"{len(views)} points: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    adapted = [f"point {i}: {a['cause']} -> " + (", ".join(f"cluster.{k}={v}" for k, v in a["changes"].items())
                                                 or "unchanged" if a["resubmitted"] else f"not resubmitted: {a['why']}")
               for i, history in sorted((manifest.get("adaptations") or {}).items(), key=lambda kv: int(kv[0]))
               for a in history]
    adapted_text = "".join(f"\nresubmit --adapt: {line}" for line in adapted)
    rung_text = f"\n{rungs.summary(manifest)}" if manifest.get("adaptive") else ""
    return (f"{table(rows, list(rows[0]))}\n{summary} (Slurm state from {source})"
            f"{adapted_text}{rung_text}")


def _millions(params: dict) -> Optional[str]:
    """Every network's parameters together, 7.76M (the point's log has them per network)."""
    total = sum(n for n in params.values() if isinstance(n, int))
    return None if not total else f"{total / 1e6:.2f}M" if total >= 10**5 else f"{total:,}"


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
        raw = yaml.safe_load(run.spec.read_text()) if run.spec.is_file() else None
        if isinstance(raw, dict) and raw.get("task") in workloads.WORKLOADS:  # as written: the metric a point may override
            metric = (raw.get("train") or {}).get("metric") or workloads.get(raw["task"]).default_metric
            return metric, raw["task"]
        from mrihpc.specfile import load_point_spec

        spec = load_point_spec(run.point(0))
        return spec.train.metric, spec.task
    except (OSError, ValueError, KeyError, TypeError, yaml.YAMLError) as e:
        # no guess: another task's metric would rank the points by a column they may not have
        raise RunError(f"{run.root}: neither {run.point(0).config.name} of point 0, nor the manifest, nor the "
                       f"point's spec says the task and its metric ({type(e).__name__}: {e})") from None


def metric_directions(run: RunPaths, manifest: dict) -> dict[str, str]:
    """The run's task's ``{metric: "max" | "min"}``: from the manifest (no spec models imported),
    or, for runs made before it held them, from the task's registration."""
    return manifest.get("metric_directions") or workloads.get(run_metric(run)[1]).metrics


def results_rows(run: RunPaths, manifest: dict, metric: str, directions: Optional[dict[str, str]] = None,
                 notes: Optional[list[str]] = None) -> list[dict]:
    """Per point: coordinates, state, final validation metrics and the best value of ``metric``
    (``directions``: the task's ``{metric: "max" | "min"}``, else read from the run). Lines of a
    metrics.jsonl that cannot be read are skipped and counted in ``notes``."""
    views = {v.index: v for v in point_views(run, manifest, notes)[0]}
    higher = workloads.metric_direction(directions or metric_directions(run, manifest), metric) == "max"
    rows = []
    for point in manifest["points"]:
        i = point["index"]
        records, skipped = scan_jsonl(run.point(i).metrics, dict)
        epochs = [r for r in records if r.get("kind") == "epoch" and f"val_{metric}" in r]
        good = [r for r in epochs if isinstance(r.get("epoch"), int) and _number(r[f"val_{metric}"])]
        skipped, epochs = skipped + len(epochs) - len(good), good  # an edited line with text for numbers
        if skipped and notes is not None:
            notes.append(f"{run.point(i).metrics}: damaged: {skipped} line(s) not JSON objects, skipped; "
                         f"{len(records)} read")
        final = epochs[-1] if epochs else {}
        test = next((r for r in reversed(records) if r.get("kind") == "test"), {})
        values = [r[f"val_{metric}"] for r in epochs if math.isfinite(r[f"val_{metric}"])]
        best = (max(values) if higher else min(values)) if values else None
        row = {"point": i, "name": point["name"], "state": views[i].state, "epochs": final.get("epoch", -1) + 1 if final else 0,
               f"best_{metric}": best}
        if manifest.get("adaptive"):  # successive halving: ranked by the last rung first
            row = {**row, "rung": rungs.rung_of(manifest, i)}
        if views[i].gpu_hours is not None:  # from sacct: a Slurm run
            row |= {"gpu_hours": round(views[i].gpu_hours, 6), "cpu_hours": round(views[i].cpu_hours or 0.0, 6)}
            if views[i].energy_kwh:
                row["energy_kwh"] = round(views[i].energy_kwh, 6)
        row |= {k: v for k, v in final.items() if k.startswith("val_") and k != "val_volumes"}
        row |= {k: v for k, v in test.items() if k.startswith("test_") and not k.endswith("volumes")}
        rows.append(row)
    return rows


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def sort_rows(rows: list[dict], key: str, higher_is_better: bool) -> list[dict]:
    """Best first; rows without the key last."""
    usable = lambda v: isinstance(v, (int, float)) and math.isfinite(v)  # noqa: E731 - NaN ranks last
    have = [r for r in rows if usable(r.get(key))]
    missing = [r for r in rows if not usable(r.get(key))]
    return sorted(have, key=lambda r: r[key], reverse=higher_is_better) + missing


def results_report(run: RunPaths, manifest: dict, metric: str, sort: Optional[str] = None, as_csv: bool = False,
                   notes: Optional[list[str]] = None, by_seed: bool = False, each: bool = False) -> str:
    """The sweep best first. A sweep over folds (or, ``by_seed``, over seeds) shows one row per
    configuration (mean, std, n; ``aggregate``), and its points after it with ``each``."""
    from mrihpc.login import aggregate

    directions = metric_directions(run, manifest)  # once: an older run derives them from its spec
    rows = results_rows(run, manifest, metric, directions, notes)
    key = sort or f"best_{metric}"
    higher = workloads.metric_direction(directions, key) == "max"
    rows = sort_rows(rows, key, higher)
    if manifest.get("adaptive"):  # the last rung's points first (stable: best first in a rung)
        rows.sort(key=lambda r: -r["rung"])
    if by_seed or aggregate.has_folds(manifest):
        grouped = aggregate.aggregate_rows(rows, manifest, key, higher, by_seed)
        if as_csv and not each:
            return _csv(grouped, list(dict.fromkeys(k for r in grouped for k in r)))
        if not as_csv:
            folds = next((p["overrides"]["data.folds"] for p in manifest["points"] if "data.folds" in p["overrides"]), None)
            text = f"{table(grouped, list(dict.fromkeys(k for r in grouped for k in r)))}\n" \
                   f"{aggregate.summary_line(grouped, key, folds)}"
            if not each:
                return text + _hours_line(rows) + "\n(each point: results --each)"
            return f"{text}\n\n{_points_table(rows, as_csv)}" + _hours_line(rows)
    return _points_table(rows, as_csv) + ("" if as_csv else _hours_line(rows))


def _hours_line(rows: list[dict]) -> str:
    """The sweep's GPU- and CPU-hours, when sacct gave them."""
    counted = [r for r in rows if r.get("gpu_hours") is not None]
    if not counted:
        return ""
    gpu, cpu = sum(r["gpu_hours"] for r in counted), sum(r["cpu_hours"] for r in counted)
    energy = sum(r.get("energy_kwh", 0.0) for r in counted)
    kwh = f", energy {energy:.4g} kWh" if energy else ""
    return (f"\nGPU-hours {gpu:.4g}, CPU-hours {cpu:.4g}{kwh} over {len(counted)} point(s) "
            "(sacct: allocated x elapsed, requeues included)")


def _points_table(rows: list[dict], as_csv: bool) -> str:
    columns = list(dict.fromkeys(k for r in rows for k in r))
    # the network's own scores first (validation, then training), then what it is measured
    # against (zero-filled, baseline)
    reference = [c for c in columns if c.startswith(("val_zf_", "val_base_", "val_train_base_", "test_zf_", "test_base_",
                                                     "test_last_zf_", "test_last_base_"))]
    train = [c for c in columns if c.startswith("val_train_") and c not in reference]
    test = [c for c in columns if c.startswith("test_") and c not in reference]  # scored once, at the end
    columns = [c for c in columns if c not in reference + train + test] + test + train + reference
    return _csv(rows, columns) if as_csv else table(rows, columns)


def _csv(rows: list[dict], columns: list[str]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def provenance_report(run, manifest: dict, notes: list[str]) -> str:
    """Per point, what it ran on as seen from inside (points/<i>/provenance.json); then the code."""
    rows = []
    for p in manifest["points"]:
        try:
            seen = read_json(run.point(p["index"]).root / "provenance.json", {}, dict) or {}
        except DamagedFile as e:
            seen = {}
            notes.append(str(e))
        image_id = seen.get("image_id") or ""
        rows.append({"point": p["index"], "image": seen.get("image") or ("host" if seen else "-"),
                     "image_id": image_id.split(":")[-1][:12] or "-", "python": seen.get("python", "-"),
                     "torch": seen.get("torch", "-"), "cuda": seen.get("cuda") or "-",
                     "code": (seen.get("code_sha256") or "-")[:12], "host": seen.get("host", "-")})
    text = table(rows, list(rows[0]))
    code = manifest.get("code") or {}
    checkout = (manifest.get("provenance") or {}).get("mrihpc_checkout") or {}
    text += f"\ncode: {code.get('path', '-')} sha256 {code.get('sha256', '-')[:12]} from {code.get('source', '-')}"
    if checkout:
        text += (f"\ncheckout: {checkout.get('repo')} at {checkout.get('rev')} ({checkout.get('branch')})"
                 + (f", uncommitted changes: {checkout.get('diff') or 'untracked files'}" if checkout.get("dirty") else ""))
    return text
