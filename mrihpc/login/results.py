"""The tables of a run directory: ``status``, ``results`` (best first; folds as one row per
configuration), the hours sacct counted, and the provenance of what ran. The points' states come
from ``views``.
"""

from __future__ import annotations

import csv
import io
import math
from typing import Optional

import yaml

from mrihpc import rungs, workloads
from mrihpc.paths import DamagedFile, RunPaths, read_json, scan_jsonl
from mrihpc.login.views import RunError, point_views, slurm_job_ids, slurm_rows


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


def status_report(
    run: RunPaths, manifest: dict, metric: str, notes: Optional[list[str]] = None
) -> str:
    promotion = _pending_promotion(manifest)  # asked of Slurm with the points: one sacct call
    slurm, source = slurm_rows(slurm_job_ids(manifest) + ([promotion] if promotion else []))
    views, _ = point_views(run, manifest, notes, (slurm, source))
    rows = [
        {
            "point": v.index,
            "name": v.name,
            "state": v.state,
            "job": v.job_id,
            "elapsed": f"{v.elapsed_s:.0f}s" if v.elapsed_s is not None else None,
            "epoch": f"{v.epoch}/{v.epochs}" if v.epoch is not None else None,
            f"val_{metric}": v.latest.get(f"val_{metric}"),
            "mem_peak_mib": v.latest.get("mem_host_peak_mib"),
            "params": _millions(v.params),
            "reason": v.reason,
        }
        for v in views
    ]
    if manifest.get("adaptive"):  # successive halving: each point's last rung, and where it stopped
        last, of = len(manifest["adaptive"]["rungs"]) - 1, rungs.last_rungs(manifest)
        for r, v in zip(rows, views):
            k = of.get(v.index, 0)
            stopped = k < last and v.state == "done"
            reason = r.pop("reason")  # last, after the rung
            r |= {"rung": k, "reason": f"stopped at rung {k}" if stopped else reason}
    if any(v.gpu_hours is not None for v in views):  # a Slurm run with accounting: GPU-hours so far
        for r, v in zip(rows, views):
            reason = r.pop("reason")
            r |= {"gpu_h": None if v.gpu_hours is None else round(v.gpu_hours, 4), "reason": reason}
    counts: dict[str, int] = {}
    for v in views:
        counts[v.state] = counts.get(v.state, 0) + 1
    summary = f"{len(views)} points: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    adapted = [
        f"point {i}: {a['cause']} -> "
        + (
            ", ".join(f"cluster.{k}={v}" for k, v in a["changes"].items()) or "unchanged"
            if a["resubmitted"]
            else f"not resubmitted: {a['why']}"
        )
        for i, history in sorted(
            (manifest.get("adaptations") or {}).items(), key=lambda kv: int(kv[0])
        )
        for a in history
    ]
    adapted_text = "".join(f"\nresubmit --adapt: {line}" for line in adapted)
    rank_text = "".join(
        f"\npoint {v.index}: rank {v.failed_rank} failed too; its traceback: "
        f"mrihpc logs {run.root} {v.index} --rank {v.failed_rank} --err"
        for v in views
        if v.failed_rank is not None
    )
    promotion_state = None  # None: no pending promotion, or Slurm could not be asked
    if promotion and not source.startswith("none"):
        promotion_state = slurm.get(promotion, {}).get("state", "unknown")
    rung_text = f"\n{rungs.summary(manifest, promotion_state)}" if manifest.get("adaptive") else ""
    return (
        f"{table(rows, list(rows[0]))}\n{summary} (Slurm state from {source})"
        f"{adapted_text}{rank_text}{rung_text}"
    )


def _pending_promotion(manifest: dict) -> Optional[str]:
    """The job id of the adaptive sweep's newest promotion while its rung is the last one recorded
    (it has not promoted yet); None otherwise. Its state comes with the points' own query."""
    a = manifest.get("adaptive")
    promotions = (a or {}).get("promotions", [])
    if not promotions or promotions[-1]["rung"] != len(a["rungs"]) - 1:
        return None
    return promotions[-1]["job_id"]


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
            pass  # the node reports the spoiled file when the point runs; the manifest names them
        manifest = read_json(run.manifest) or {}
        if "metric" in manifest:
            return manifest["metric"], manifest["task"]
        raw = yaml.safe_load(run.spec.read_text()) if run.spec.is_file() else None
        if (
            isinstance(raw, dict) and raw.get("task") in workloads.WORKLOADS
        ):  # as written: the metric a point may override
            metric = (raw.get("train") or {}).get("metric") or workloads.get(
                raw["task"]
            ).default_metric
            return metric, raw["task"]
        from mrihpc.specfile import load_point_spec

        spec = load_point_spec(run.point(0))
        return spec.train.metric, spec.task
    except (OSError, ValueError, KeyError, TypeError, yaml.YAMLError) as e:
        # no guess: another task's metric would rank the points by a column they may not have
        raise RunError(
            f"{run.root}: neither {run.point(0).config.name} of point 0, nor the manifest, nor the "
            f"point's spec says the task and its metric ({type(e).__name__}: {e})"
        ) from None


def metric_directions(run: RunPaths, manifest: dict) -> dict[str, str]:
    """The run's task's ``{metric: "max" | "min"}``: from the manifest (no spec models imported),
    or, for runs made before it held them, from the task's registration."""
    return manifest.get("metric_directions") or workloads.get(run_metric(run)[1]).metrics


def results_rows(
    run: RunPaths,
    manifest: dict,
    metric: str,
    directions: Optional[dict[str, str]] = None,
    notes: Optional[list[str]] = None,
) -> list[dict]:
    """Per point: coordinates, state, final validation metrics and the best value of ``metric``
    (``directions``: the task's ``{metric: "max" | "min"}``, else read from the run). Lines of a
    metrics.jsonl that cannot be read are skipped and counted in ``notes``."""
    views = {v.index: v for v in point_views(run, manifest, notes)[0]}
    last_rung = rungs.last_rungs(manifest) if manifest.get("adaptive") else {}
    higher = (
        workloads.metric_direction(directions or metric_directions(run, manifest), metric) == "max"
    )
    rows = []
    for point in manifest["points"]:
        i = point["index"]
        records, skipped = scan_jsonl(run.point(i).metrics, dict)
        epochs = [r for r in records if r.get("kind") == "epoch" and f"val_{metric}" in r]
        good = [
            r for r in epochs if isinstance(r.get("epoch"), int) and _number(r[f"val_{metric}"])
        ]
        skipped, epochs = (
            skipped + len(epochs) - len(good),
            good,
        )  # an edited line with text for numbers
        if skipped and notes is not None:
            notes.append(
                f"{run.point(i).metrics}: damaged: {skipped} line(s) not JSON objects, skipped; "
                f"{len(records)} read"
            )
        final = epochs[-1] if epochs else {}
        test = next((r for r in reversed(records) if r.get("kind") == "test"), {})
        values = [r[f"val_{metric}"] for r in epochs if math.isfinite(r[f"val_{metric}"])]
        best = (max(values) if higher else min(values)) if values else None
        row = {
            "point": i,
            "name": point["name"],
            "state": views[i].state,
            "epochs": final.get("epoch", -1) + 1 if final else 0,
            f"best_{metric}": best,
        }
        if manifest.get("adaptive"):  # successive halving: ranked by the last rung first
            row = {**row, "rung": last_rung.get(i, 0)}
        if views[i].gpu_hours is not None:  # from sacct: a Slurm run
            row |= {
                "gpu_hours": round(views[i].gpu_hours, 6),
                "cpu_hours": round(views[i].cpu_hours or 0.0, 6),
            }
            if views[i].energy_kwh:
                row["energy_kwh"] = round(views[i].energy_kwh, 6)
            if views[i].gpu_util is not None:
                row["gpu_util"] = views[i].gpu_util
        row |= {k: v for k, v in final.items() if k.startswith("val_") and k != "val_volumes"}
        row |= {
            k: v for k, v in test.items() if k.startswith("test_") and not k.endswith("volumes")
        }
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


def results_report(
    run: RunPaths,
    manifest: dict,
    metric: str,
    sort: Optional[str] = None,
    as_csv: bool = False,
    notes: Optional[list[str]] = None,
    by_seed: bool = False,
    each: bool = False,
) -> str:
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
            folds = next(
                (
                    p["overrides"]["data.folds"]
                    for p in manifest["points"]
                    if "data.folds" in p["overrides"]
                ),
                None,
            )
            text = (
                f"{table(grouped, list(dict.fromkeys(k for r in grouped for k in r)))}\n"
                f"{aggregate.summary_line(grouped, key, folds)}"
            )
            if not each:
                return text + _hours_line(rows, manifest) + "\n(each point: results --each)"
            return f"{text}\n\n{_points_table(rows, as_csv)}" + _hours_line(rows, manifest)
    return _points_table(rows, as_csv) + ("" if as_csv else _hours_line(rows, manifest))


def _hours_line(rows: list[dict], manifest: Optional[dict] = None) -> str:
    """The sweep's GPU- and CPU-hours, when sacct gave them; an adaptive sweep's against the full
    grid's estimate (its hours per epoch trained x every point's epochs)."""
    counted = [r for r in rows if r.get("gpu_hours") is not None]
    if not counted:
        return ""
    gpu, cpu = sum(r["gpu_hours"] for r in counted), sum(r["cpu_hours"] for r in counted)
    energy = sum(r.get("energy_kwh", 0.0) for r in counted)
    kwh = f", energy {energy:.4g} kWh" if energy else ""
    line = (
        f"\nGPU-hours {gpu:.4g}, CPU-hours {cpu:.4g}{kwh} over {len(counted)} point(s) "
        "(sacct: allocated x elapsed, requeues included)"
    )
    if manifest and manifest.get("adaptive"):
        spent, full = rungs.epochs_spent(manifest)
        line += (
            f"\nthe full grid would take about GPU-hours {gpu * full / spent:.4g}, CPU-hours "
            f"{cpu * full / spent:.4g} ({full} epochs, {spent} trained: {spent / full:.0%})"
        )
    return line


def _points_table(rows: list[dict], as_csv: bool) -> str:
    columns = list(dict.fromkeys(k for r in rows for k in r))
    # the network's own scores first (validation, then training), then what it is measured
    # against (zero-filled, baseline)
    reference = [
        c
        for c in columns
        if c.startswith(
            (
                "val_zf_",
                "val_base_",
                "val_train_base_",
                "test_zf_",
                "test_base_",
                "test_last_zf_",
                "test_last_base_",
            )
        )
    ]
    train = [c for c in columns if c.startswith("val_train_") and c not in reference]
    test = [
        c for c in columns if c.startswith("test_") and c not in reference
    ]  # scored once, at the end
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
        rows.append(
            {
                "point": p["index"],
                "image": seen.get("image") or ("host" if seen else "-"),
                "image_id": image_id.split(":")[-1][:12] or "-",
                "python": seen.get("python", "-"),
                "torch": seen.get("torch", "-"),
                "cuda": seen.get("cuda") or "-",
                "code": (seen.get("code_sha256") or "-")[:12],
                "host": seen.get("host", "-"),
            }
        )
    text = table(rows, list(rows[0]))
    code = manifest.get("code") or {}
    checkout = (manifest.get("provenance") or {}).get("mrihpc_checkout") or {}
    text += (
        f"\ncode: {code.get('path', '-')} sha256 {code.get('sha256', '-')[:12]} from "
        f"{code.get('source', '-')}"
    )
    if checkout:
        text += (
            f"\ncheckout: {checkout.get('repo')} at {checkout.get('rev')} "
            f"({checkout.get('branch')})"
            + (
                f", uncommitted changes: {checkout.get('diff') or 'untracked files'}"
                if checkout.get("dirty")
                else ""
            )
        )
    return text
