"""The sweep's life on the cluster: ``validate``, ``submit``, ``cancel``, ``resubmit``."""
from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

from mrihpc.login import sbatch_flags
from mrihpc.login.results import open_run
from mrihpc.login.verbs import OVERRIDE, RUNS_DIR
from mrihpc.errors import SpecError


def add_verbs(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("validate", help="check specs; print every problem")
    s.add_argument("spec", nargs="+")
    s.add_argument("-o", "--override", **OVERRIDE)
    s.add_argument("--check-paths", action="store_true", help="also check that data folders exist (submit always does)")
    s.set_defaults(fn=cmd_validate)

    s = sub.add_parser("submit", help="validate, expand the sweep and submit it as one array")
    s.add_argument("spec")
    s.add_argument("-o", "--override", **OVERRIDE)
    s.add_argument("--dry-run", action="store_true", help="print the points and the sbatch script; queue nothing")
    s.add_argument("--executor", choices=["slurm", "local", "debug", "auto"])
    s.add_argument("--runs", default=RUNS_DIR, help="folder of run directories (default: $MRIHPC_RUNS or ./runs)")
    sbatch_flags.add_arguments(s)
    s.set_defaults(fn=cmd_submit)

    s = sub.add_parser("cancel", help="cancel points (all when none given)")
    s.add_argument("run")
    s.add_argument("points", nargs="*", type=int)
    s.set_defaults(fn=cmd_cancel)

    s = sub.add_parser("resubmit", help="a new array of the failed / cancelled / timed-out points")
    s.add_argument("run")
    s.add_argument("--failed", action="store_true", help="pick the points that did not finish")
    s.add_argument("points", nargs="*", type=int)
    s.add_argument("--executor", choices=["slurm", "local", "debug", "auto"])
    sbatch_flags.add_arguments(s)
    s.set_defaults(fn=cmd_resubmit)


def cmd_validate(args) -> int:
    from mrihpc.login.launch import prepare

    failed = 0
    for source in args.spec:
        try:
            _, _, points, executor = prepare(source, args.override, check_paths=args.check_paths)
            print(f"{source}: ok ({len(points)} point{'s' * (len(points) != 1)}, executor {executor})")
        except SpecError as e:
            failed += 1
            print("\n".join(e.problems), file=sys.stderr)
    return 2 if failed else 0


def cmd_submit(args) -> int:
    from mrihpc.login import launch
    from mrihpc.login.results import results_report, status_report
    from mrihpc.progress import SweepProgress

    overrides = args.override + sbatch_flags.as_overrides(args)
    spec, raw, points, executor = launch.prepare(args.spec, overrides, args.executor, check_paths=not args.dry_run)
    print(launch.points_table(points))
    if args.dry_run:
        for problem in launch.check_data(spec, args.spec):
            print(f"warning: {problem} (checked again at a real submit)")
        logs = Path(args.runs).resolve() / spec.name / "<sweep-id>" / "logs"
        print(f"\n# sbatch script submitit would submit ({len(points)} array tasks):")
        print(launch.dry_run_text(spec, logs, len(points)))
        return 0
    launch.prepare_data(spec)
    run = launch.write_run_directory(Path(args.runs), spec, raw, args.spec, points, executor)
    print(f"run directory: {run.root}")
    progress = SweepProgress([run.point(p.index).metrics for p, _ in points], spec.train.epochs, sys.stdout)

    def started(index, job):
        progress.close()  # clears the bar's line, if any
        print(f"point {index} started (job {job.job_id})", flush=True)

    jobs = launch.submit_points(run, spec, [p.index for p, _ in points], executor, on_start=started,
                                on_tick=progress.update if executor == "local" else None)
    progress.close()
    if executor == "slurm":
        arrays = list(dict.fromkeys(j.job_id.split("_")[0] for j in jobs))  # one per MaxArraySize chunk
        print(f"submitted array job {', '.join(arrays)} with {len(jobs)} tasks")
        print(f"next:\n  mrihpc status {run.root}\n  mrihpc logs {run.root} 0\n  mrihpc results {run.root}")
        return 0
    _, manifest = open_run(run.root)
    print(status_report(run, manifest, spec.train.metric))
    print()
    print(results_report(run, manifest, spec.train.metric))
    return 0


def cmd_cancel(args) -> int:
    from mrihpc.login import accounting
    from mrihpc.login.results import latest_jobs
    from mrihpc.paths import update_json

    run, manifest = open_run(args.run)
    jobs = latest_jobs(manifest)
    points = args.points or sorted(jobs)
    slurm_ids = [jobs[i]["job_id"] for i in points if i in jobs and jobs[i]["executor"] == "slurm"]
    if slurm_ids:
        accounting.cancel(slurm_ids)
    for i in points:
        job = jobs.get(i)
        if job and job["executor"] == "local":
            try:
                os.kill(int(job["job_id"]), signal.SIGINT)  # the submitit controller stops its tasks
            except (ProcessLookupError, ValueError):
                continue
            status = run.point(i).status
            update_json(status, lambda s: {**(s or {}), "state": "cancelled", "error": "cancelled by user"})
    print(f"cancelled point(s) {', '.join(map(str, points))}")
    return 0


def cmd_resubmit(args) -> int:
    from mrihpc.login.accounting import FAILED_STATES
    from mrihpc.login.results import point_views
    from mrihpc.paths import update_json

    run, manifest = open_run(args.run)
    views, _ = point_views(run, manifest)
    # under Slurm, "not submitted" is a point whose array sbatch refused (a limit) or whose submit was
    # interrupted; a local sweep's points are "not submitted" until their turn comes, so not those
    left_out = ("not submitted",) if manifest.get("executor") == "slurm" else ()
    todo = ([v.index for v in views if v.state in FAILED_STATES + ("interrupted",) + left_out] if args.failed
            else args.points)
    if not todo:
        print("nothing to resubmit: no failed, cancelled, timed-out or unsubmitted points")
        return 0
    from mrihpc.login import launch  # the spec models and submitit: only when there is something to submit
    from mrihpc.specfile import load_point_spec

    for i in todo:  # the point resumes from its last.pt, if it has one
        status = run.point(i).status
        update_json(status, lambda s: {**(s or {}), "state": "pending", "error": None})
    spec = sbatch_flags.apply(load_point_spec(run.point(todo[0])), args)
    executor = launch.resolve_executor(args.executor or manifest["executor"])
    print(f"resubmitting point(s) {', '.join(map(str, todo))} ({executor})")
    jobs = launch.submit_points(run, spec, todo, executor)
    if executor == "slurm":
        arrays = list(dict.fromkeys(j.job_id.split("_")[0] for j in jobs))  # one per MaxArraySize chunk
        print(f"submitted array job {', '.join(arrays)} with {len(jobs)} tasks")
    else:
        from mrihpc.login.results import status_report

        print(status_report(run, *open_run(run.root)[1:], spec.train.metric))
    return 0
