"""Reading a run directory: ``status``, ``results`` (table, CSV, curves) and ``logs``."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from mrihpc.login.results import RunError, open_run


def add_verbs(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("status", help="state of every point")
    s.add_argument("run")
    s.add_argument("--provenance", action="store_true", help="also what each point ran on: image, versions, code")
    s.set_defaults(fn=cmd_status)

    s = sub.add_parser("results", help="the sweep as a table, best first")
    s.add_argument("run")
    s.add_argument("--sort", help="column to sort by (default best_<train.metric>)")
    s.add_argument("--csv", action="store_true")
    s.add_argument("--plot", type=Path, metavar="OUT.png", help="also draw every point's curves into a PNG")
    s.add_argument("--provenance", action="store_true", help="also what each point ran on: image, versions, code")
    s.set_defaults(fn=cmd_results)

    s = sub.add_parser("logs", help="a point's stdout (or --err)")
    s.add_argument("run")
    s.add_argument("point", type=int)
    s.add_argument("--err", action="store_true")
    s.add_argument("--follow", "-f", action="store_true")
    s.set_defaults(fn=cmd_logs)


def cmd_status(args) -> int:
    from mrihpc.login.results import status_report

    run, manifest = open_run(args.run)
    print(status_report(run, manifest, _metric(run)))
    if args.provenance:
        print("\n" + provenance_report(run, manifest))
    return 0


def cmd_results(args) -> int:
    from mrihpc.login.results import results_report

    run, manifest = open_run(args.run)
    print(results_report(run, manifest, _metric(run), args.sort, args.csv), end="" if args.csv else "\n")
    if args.plot:
        from mrihpc.login.plots import plot_curves

        plot_curves(run, manifest, _metric(run), args.plot)
        print(f"curves of {len(manifest['points'])} points: {args.plot}", file=sys.stderr if args.csv else sys.stdout)
    if args.provenance and not args.csv:
        print("\n" + provenance_report(run, manifest))
    return 0


def provenance_report(run, manifest: dict) -> str:
    """Per point, what it ran on as seen from inside (points/<i>/provenance.json); then the code."""
    from mrihpc.login.results import table
    from mrihpc.paths import read_json

    rows = []
    for p in manifest["points"]:
        seen = read_json(run.point(p["index"]).root / "provenance.json", {}) or {}
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


def cmd_logs(args) -> int:
    from mrihpc.login.results import latest_jobs

    run, manifest = open_run(args.run)
    job = latest_jobs(manifest).get(args.point)
    if job is None:
        raise RunError(f"{run.root}: point {args.point} has not been submitted")
    path = Path(job["stderr" if args.err else "stdout"])
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


def _metric(run) -> str:
    from mrihpc.login.results import run_metric

    return run_metric(run)[0]
