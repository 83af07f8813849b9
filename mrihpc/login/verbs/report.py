"""Reading a run directory: ``status``, ``results`` (table, CSV, curves) and ``logs``."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from mrihpc.login.views import RunError, open_run


def add_verbs(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("status", help="state of every point")
    s.add_argument("run")
    s.add_argument(
        "--provenance",
        action="store_true",
        help="also what each point ran on: image, versions, code",
    )
    s.set_defaults(fn=cmd_status)

    s = sub.add_parser("results", help="the sweep as a table, best first")
    s.add_argument("run")
    s.add_argument("--sort", help="column to sort by (default best_<train.metric>)")
    s.add_argument("--csv", action="store_true")
    s.add_argument(
        "--by-seed",
        action="store_true",
        help="group points that differ only by train.seed (and fold): mean, std and n per "
        "configuration",
    )
    s.add_argument(
        "--each",
        action="store_true",
        help="with folds or --by-seed: every point's row too (with --csv: only those)",
    )
    s.add_argument(
        "--plot", type=Path, metavar="OUT.png", help="also draw every point's curves into a PNG"
    )
    s.add_argument(
        "--provenance",
        action="store_true",
        help="also what each point ran on: image, versions, code",
    )
    s.set_defaults(fn=cmd_results)

    s = sub.add_parser(
        "report",
        help="one self-contained HTML page of the run: tables, curves, samples, spec, provenance",
    )
    s.add_argument("run")
    s.add_argument("-o", "--out", type=Path, help="where to write it (default RUN/report.html)")
    s.set_defaults(fn=cmd_report)

    s = sub.add_parser("logs", help="a point's stdout (or --err), or a promotion job's")
    s.add_argument("run")
    s.add_argument("point", type=int, nargs="?")
    s.add_argument(
        "--promotion",
        type=int,
        metavar="RUNG",
        help="instead: the latest job that promoted rung RUNG of an adaptive sweep (what it kept)",
    )
    s.add_argument("--err", action="store_true")
    s.add_argument(
        "--rank",
        type=int,
        default=0,
        metavar="N",
        help="the log of rank N of a point trained on several tasks (default 0)",
    )
    s.add_argument("--follow", "-f", action="store_true")
    s.set_defaults(fn=cmd_logs)


def cmd_status(args) -> int:
    from mrihpc.login.results import provenance_report, status_report

    notes: list[str] = []  # damaged files: said once each, after what could still be read
    run, manifest = open_run(args.run, notes)
    print(status_report(run, manifest, _metric(run), notes))
    if args.provenance:
        print("\n" + provenance_report(run, manifest, notes))
    return _said(notes)


def cmd_results(args) -> int:
    from mrihpc.login.results import provenance_report, results_report

    notes: list[str] = []
    run, manifest = open_run(args.run, notes)
    print(
        results_report(
            run, manifest, _metric(run), args.sort, args.csv, notes, args.by_seed, args.each
        ),
        end="" if args.csv else "\n",
    )
    if args.plot:
        from mrihpc.login.plots import plot_curves

        plot_curves(run, manifest, _metric(run), args.plot)
        print(
            f"curves of {len(manifest['points'])} points: {args.plot}",
            file=sys.stderr if args.csv else sys.stdout,
        )
    if args.provenance and not args.csv:
        print("\n" + provenance_report(run, manifest, notes))
    return _said(notes)


def _said(notes: list[str]) -> int:
    """Print the damaged-file notes to stderr; exit status 1 when there were any (the report
    above them is what could still be read)."""
    for note in dict.fromkeys(notes):
        print(f"warning: {note}", file=sys.stderr)
    return 1 if notes else 0


def cmd_logs(args) -> int:
    from mrihpc.login.views import latest_jobs

    run, manifest = open_run(args.run)
    if args.promotion is not None:
        adaptive = manifest.get("adaptive")
        jobs = [p for p in (adaptive or {}).get("promotions", []) if p["rung"] == args.promotion]
        if not jobs:
            why = "" if adaptive else " (the sweep is not adaptive)"
            raise RunError(f"{run.root}: no promotion job for rung {args.promotion}{why}")
        job = jobs[-1]
    elif args.point is None:
        raise RunError("mrihpc logs: give a point, or --promotion RUNG")
    else:
        job = latest_jobs(manifest).get(args.point)
    if job is None:
        raise RunError(f"{run.root}: point {args.point} has not been submitted")
    path = Path(job["stderr" if args.err else "stdout"])
    if args.rank and args.promotion is None:
        path = _rank_log(run, args.point, path, args.rank)
    if not path.exists() and not args.follow:
        raise RunError(f"{path}: no log yet (the point may still be pending)")
    position = 0
    while True:
        if path.exists():
            with open(path, "rb") as f:
                f.seek(position)
                chunk = f.read()
                position += len(chunk)
            sys.stdout.write(chunk.decode(errors="replace"))
            sys.stdout.flush()
        if not args.follow:
            return 0
        time.sleep(1.0)


def _rank_log(run, point: int, rank0: Path, rank: int) -> Path:
    """Rank ``rank``'s log beside rank 0's (submitit names them ``<job>_<task>_log.out``), for a
    rank the point has: its status.json's world size, or its spec's tasks."""
    from mrihpc.paths import DamagedFile, read_json
    from mrihpc.specfile import load_point_spec

    try:
        ranks = (read_json(run.point(point).status, {}) or {}).get("world_size")
        if ranks is None:
            cluster = load_point_spec(run.point(point)).cluster
            ranks = cluster.nodes * cluster.num_tasks_per_node
    except (DamagedFile, OSError, ValueError, KeyError) as e:  # the log may still be there
        print(f"warning: the number of ranks of point {point} is unknown: {e}", file=sys.stderr)
        ranks = None
    if rank < 0 or (ranks is not None and rank >= ranks):
        raise RunError(f"--rank {rank}: point {point} runs {ranks} rank(s); allowed: 0-{ranks - 1}")
    head, sep, tail = rank0.name.rpartition("_0_log.")
    return rank0.with_name(f"{head}_{rank}_log.{tail}") if sep else rank0


def cmd_report(args) -> int:
    from mrihpc.login import html_report

    notes: list[str] = []
    run, manifest = open_run(args.run, notes)
    out = html_report.write(
        run, manifest, _metric(run), args.out or run.root / "report.html", notes
    )
    print(f"report: {out} (self-contained: open it from here, or copy it anywhere)")
    return _said(notes)


def _metric(run) -> str:
    from mrihpc.login.results import run_metric

    return run_metric(run)[0]
