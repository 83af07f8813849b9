"""The sweep's life on the cluster: ``validate``, ``submit``, ``cancel``, ``resubmit``."""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import sys
from pathlib import Path

from mrihpc.login import sbatch_flags
from mrihpc.login.views import RunError, SubmitRefused, open_run
from mrihpc.login.verbs import OVERRIDE, RUNS_DIR
from mrihpc.errors import SpecError
from mrihpc.paths import update_json


def add_verbs(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("validate", help="check specs; print every problem")
    s.add_argument("spec", nargs="+")
    s.add_argument("-o", "--override", **OVERRIDE)
    s.add_argument(
        "--check-paths",
        action="store_true",
        help="also check that data folders exist (submit always does)",
    )
    s.add_argument(
        "--params",
        action="store_true",
        help="also each network's parameter count (builds the networks on the meta device: "
        "imports torch)",
    )
    s.set_defaults(fn=cmd_validate)

    s = sub.add_parser("submit", help="validate, expand the sweep and submit it as one array")
    s.add_argument("spec")
    s.add_argument("-o", "--override", **OVERRIDE)
    s.add_argument(
        "--dry-run",
        action="store_true",
        help="print the points and the sbatch script; queue nothing",
    )
    s.add_argument("--executor", choices=["slurm", "local", "debug", "auto"])
    s.add_argument(
        "--runs",
        default=RUNS_DIR,
        help="folder of run directories (default: $MRIHPC_RUNS or ./runs)",
    )
    s.add_argument(
        "--then",
        choices=["predict"],
        help="predict: once every point has succeeded, the best point on validation predicts "
        "its test "
        "split (Slurm: a job queued now with --dependency=afterok on the sweep's arrays)",
    )
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
    s.add_argument(
        "--force",
        action="store_true",
        help="cancel named points that are pending or running, then resubmit",
    )
    s.add_argument(
        "--adapt",
        action="store_true",
        help="act on each point's cause: OUT_OF_MEMORY more memory, TIMEOUT without progress "
        "more time, "
        "NODE_FAIL exclude the node, NonFiniteLoss / DataError not resubmitted",
    )
    s.add_argument(
        "--dry-run",
        action="store_true",
        help="say what would be resubmitted, and how; submit nothing",
    )
    sbatch_flags.add_arguments(s)
    s.set_defaults(fn=cmd_resubmit)


def cmd_validate(args) -> int:
    from mrihpc.login.checks import prepare

    failed = 0
    for source in args.spec:
        try:
            _, _, points, executor = prepare(source, args.override, check_paths=args.check_paths)
            print(
                f"{source}: ok ({len(points)} point{'s' * (len(points) != 1)}, executor {executor})"
            )
            if args.params:
                _print_parameters(points)
        except SpecError as e:
            failed += 1
            print("\n".join(e.problems), file=sys.stderr)
    return 2 if failed else 0


def _print_parameters(points) -> None:
    """Each distinct model section's parameter counts (imports torch: only with --params)."""
    import json

    from mrihpc.node import parameters

    seen: dict[str, str] = {}
    for point, spec in points:
        key = json.dumps(spec.model.model_dump(mode="json"), sort_keys=True)
        if key not in seen:
            try:
                seen[key] = parameters.describe(parameters.of_spec(spec))
            except Exception as e:  # noqa: BLE001 - a network sized by its data (cine's frames) needs the data
                seen[key] = f"not known here ({type(e).__name__}: {e})"
            print(f"  parameters, point {point.index} ({point.name or 'base'}): {seen[key]}")


def cmd_submit(args) -> int:
    from mrihpc.login import checks, launch
    from mrihpc.login.results import results_report, status_report
    from mrihpc.progress import SweepProgress

    overrides = args.override + sbatch_flags.as_overrides(args)
    spec, raw, points, executor = checks.prepare(
        args.spec, overrides, args.executor, check_paths=not args.dry_run
    )
    print(checks.points_table(points))
    if args.dry_run:
        for problem in checks.check_data(spec, args.spec):
            print(f"warning: {problem} (checked again at a real submit)")
        if (a := spec.sweep.adaptive) is not None:
            from mrihpc import rungs

            folds = spec.sweep.folds or 1
            epochs = rungs.budgets(a.min_epochs, a.eta, spec.train.epochs)
            print(
                f"successive halving, eta {a.eta}: "
                f"{rungs.outline(epochs, len(points) // folds, folds, a.eta)}"
            )
        logs = Path(args.runs).resolve() / spec.name / "<sweep-id>" / "logs"
        print(f"\n# sbatch script submitit would submit ({len(points)} array tasks):")
        print(launch.dry_run_text(spec, logs, len(points)))
        return 0
    if args.then == "predict" and spec.sweep.adaptive is not None and executor == "slurm":
        print(
            "note: --then predict with sweep.adaptive: the prediction job is queued with the "
            "last rung, after its array",
            file=sys.stderr,
        )
    checks.prepare_data([point_spec for _, point_spec in points])
    run = launch.write_run_directory(Path(args.runs), spec, raw, args.spec, points, executor)
    print(f"run directory: {run.root}")
    progress = SweepProgress(
        [run.point(p.index).metrics for p, _ in points], spec.train.epochs, sys.stdout
    )

    def started(index, job):
        progress.close()  # clears the bar's line, if any
        print(f"point {index} started (job {job.job_id})", flush=True)

    try:
        jobs = launch.submit_points(
            run,
            spec,
            [p.index for p, _ in points],
            executor,
            on_start=started,
            on_tick=progress.update if executor == "local" else None,
        )
    except SubmitRefused as e:
        if e.queued:
            raise
        # nothing queued: a refused submit leaves no run folder behind (nor an empty runs/<name>)
        shutil.rmtree(run.root)
        with contextlib.suppress(OSError):
            run.root.parent.rmdir()
        raise RunError(
            f"sbatch refused the job ({e.reason}); nothing was queued "
            f"and {run.root} was removed: fix the cause and submit again"
        ) from None
    if spec.sweep.adaptive is not None and executor != "slurm":  # the rungs in turn, here
        from mrihpc.login import promote

        progress.close()
        promote.advance_locally(run, executor)
    progress.close()
    if executor == "slurm":
        arrays = list(
            dict.fromkeys(j.job_id.split("_")[0] for j in jobs)
        )  # one per MaxArraySize chunk
        print(f"submitted array job {', '.join(arrays)} with {len(jobs)} tasks")
        if spec.sweep.adaptive is not None:
            from mrihpc.login import promote

            if args.then == "predict":  # queued by the promotion that queues the last rung
                update_json(
                    run.manifest, lambda m: {**m, "adaptive": {**m["adaptive"], "then": "predict"}}
                )
            job = promote.submit_promotion(run, 0, arrays)
            print(
                f"submitted promotion job {job}: once rung 0 ends it keeps the best "
                f"1/{spec.sweep.adaptive.eta} and queues rung 1"
            )
        elif args.then == "predict":
            job = launch.submit_prediction(run, spec, None, "test", after=arrays)
            print(
                f"submitted prediction job {job.job_id}: the best point's test predictions, after "
                f"array(s) {', '.join(arrays)} succeed"
            )
        print(
            f"next:\n  mrihpc status {run.root}\n  mrihpc logs {run.root} 0\n  mrihpc "
            f"results {run.root}"
        )
        return 0
    _, manifest = open_run(run.root)
    print(status_report(run, manifest, spec.train.metric))
    print()
    print(results_report(run, manifest, spec.train.metric))
    if (
        args.then == "predict"
    ):  # the sweep has ended here: the best point predicts now, in this process
        from mrihpc.login.views import point_views
        from mrihpc.node.entry import PredictTask

        # adaptive: the last rung's points
        last = manifest.get("adaptive", {}).get("rungs", [{}])[-1].get("points")
        last = None if last is None else set(last)
        views = point_views(run, manifest)[0]
        if all(v.state == "done" for v in views if last is None or v.index in last):
            written = PredictTask(str(run.root), None, "test")()
            print(f"predictions: {len(written)} file(s)")
        else:
            print(
                "not predicting: not every point succeeded (--then predict waits for "
                "all, as afterok does)"
            )
    return 0


def cmd_cancel(args) -> int:
    run, manifest = open_run(args.run)
    points = args.points or sorted(p["index"] for p in manifest["points"])
    _known(run, manifest, points)
    cancel_points(run, manifest, points)
    print(f"cancelled point(s) {', '.join(map(str, points))}")
    promotions = [p["job_id"] for p in manifest.get("adaptive", {}).get("promotions", [])]
    if not args.points and promotions:
        from mrihpc.login import accounting

        accounting.cancel(promotions)  # the whole run: no later rung either
        print(f"cancelled promotion job(s) {', '.join(promotions)}")
    return 0


def _known(run, manifest: dict, points: list[int]) -> None:
    """RunError naming the points the run does not have (before anything is written)."""
    from mrihpc.login.views import RunError

    have = sorted(p["index"] for p in manifest["points"])
    unknown = [i for i in points if i not in have]
    if unknown:
        raise RunError(
            f"{run.root}: no point(s) {', '.join(map(str, unknown))}; "
            f"its points are {have[0]}-{have[-1]}"
            if have
            else f"{run.root}: the run has no points"
        )


def cancel_points(run, manifest: dict, points: list[int], wait_s: float = 0.0) -> None:
    """scancel the points' Slurm jobs / interrupt their local controllers; ``wait_s``: wait that
    long for them to be gone (a resubmission must not overlap the job it replaces)."""
    import time

    from mrihpc.login import accounting
    from mrihpc.login.views import _alive, latest_jobs
    from mrihpc.paths import update_json

    jobs = latest_jobs(manifest)
    slurm_ids = [jobs[i]["job_id"] for i in points if i in jobs and jobs[i]["executor"] == "slurm"]
    if slurm_ids:
        accounting.cancel(slurm_ids)
    pids = []
    for i in points:
        job = jobs.get(i)
        if job and job["executor"] == "local":
            try:
                os.kill(
                    int(job["job_id"]), signal.SIGINT
                )  # the submitit controller stops its tasks
            except (ProcessLookupError, ValueError):
                continue
            pids.append(job["job_id"])
            update_json(
                run.point(i).status,
                lambda s: {**(s or {}), "state": "cancelled", "error": "cancelled by user"},
                replace_damaged=True,
            )
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline and (
        any(_alive(p) for p in pids) or (slurm_ids and (accounting.squeue(slurm_ids) or {}))
    ):
        time.sleep(0.5)


def _partition(spec):
    """The spec's partition as Slurm describes it (its nodes, MaxTime); None when Slurm cannot
    say."""
    import subprocess

    from mrihpc.login import cluster_check

    try:
        parts, _ = cluster_check.read_cluster()
    except (OSError, subprocess.TimeoutExpired, ValueError):
        return None
    name = spec.cluster.partition or next((p.name for p in parts.values() if p.default), None)
    return parts.get(name)


def _status_or_none(path):
    """A point's status.json, None when damaged (its next write replaces it)."""
    from mrihpc.paths import DamagedFile, read_json

    try:
        return read_json(path, {})
    except DamagedFile:
        return None


#: states of a point whose job may still run: resubmitting it would start a second copy
BUSY = ("pending", "running", "requeued")


def cmd_resubmit(args) -> int:
    """Transactional: unknown points and busy ones (without --force) are refused before anything
    is written; a refused sbatch leaves every point's state and reason as they were."""
    from mrihpc.login.accounting import FAILED_STATES
    from mrihpc.login.views import RunError, point_views
    from mrihpc.paths import refuse_links_within, update_json

    run, manifest = open_run(args.run)
    notes: list[str] = []
    views, _ = point_views(run, manifest, notes)
    for note in dict.fromkeys(
        notes
    ):  # a damaged status.json: the point reads "unknown", never "failed"
        print(f"warning: {note}; resubmit that point by its index to rerun it", file=sys.stderr)
    state = {v.index: v.state for v in views}
    # under Slurm, "not submitted" is a point whose array sbatch refused (a limit) or whose submit
    # was interrupted; a local sweep's points are "not submitted" until their turn comes, so not
    # those
    left_out = ("not submitted",) if manifest.get("executor") == "slurm" else ()
    if args.failed:
        todo = [
            v.index for v in views if v.state in FAILED_STATES + ("interrupted", "lost") + left_out
        ]
    else:
        todo = list(dict.fromkeys(args.points))
        _known(run, manifest, todo)
    for i in todo:  # the node refuses them too, but only after the job was queued
        refuse_links_within(run.point(i).root)
    busy = [i for i in todo if state[i] in BUSY]
    if busy and not args.force:
        raise RunError(
            f"{run.root}: point(s) {', '.join(f'{i} ({state[i]})' for i in busy)} may still run; "
            "wait for them, `mrihpc cancel` them, or resubmit --force to cancel and resubmit"
        )
    if busy:
        print(f"cancelling point(s) {', '.join(map(str, busy))} first (--force)")
        cancel_points(run, manifest, busy, wait_s=60)
    if not todo:
        executor = args.executor or manifest["executor"]
        if manifest.get("adaptive") and _continue_rungs(run, executor, []):
            return 1 if notes else 0
        print("nothing to resubmit: no failed, cancelled, timed-out or unsubmitted points")
        return 1 if notes else 0
    # the spec models and submitit: only when there is something to submit
    from mrihpc.login import adapt, launch
    from mrihpc.specfile import load_point_spec

    spec = sbatch_flags.apply(load_point_spec(run.point(todo[0])), args)
    executor = launch.resolve_executor(args.executor or manifest["executor"])
    steps = [adapt.Step(i, state[i], True) for i in todo]
    if args.adapt:
        by_index = {v.index: v for v in views}
        batches = {i: load_point_spec(run.point(i)).train.batch_size for i in todo}
        steps = adapt.plan(
            manifest, [by_index[i] for i in todo], spec.cluster, _partition(spec), batches
        )
        for step in steps:
            print(step.line())
    if args.dry_run:
        print(
            "dry run: would resubmit point(s) "
            f"{', '.join(str(s.index) for s in steps if s.resubmit) or 'none'}"
        )
        return 0
    if args.adapt:
        adapt.record(run, steps)
        manifest = open_run(run.root)[1]
    todo = [s.index for s in steps if s.resubmit]
    if not todo:
        print("nothing to resubmit: every chosen point needs a change only you can make (above)")
        return 1
    before = {i: _status_or_none(run.point(i).status) for i in todo}
    print(f"resubmitting point(s) {', '.join(map(str, todo))} ({executor})")
    jobs = []
    for changes, indices in adapt.by_cluster(manifest, todo).items():  # one array per resource set
        adapted = sbatch_flags.with_cluster(spec, dict(changes), "resubmit --adapt")
        jobs += launch.submit_points(run, adapted, indices, executor)  # a refusal raises
    if executor == "slurm":
        for i in todo:  # queued: pending, unless the new job has already written its own state
            update_json(
                run.point(i).status,
                lambda s, old=before[i]: (
                    {**(s or {}), "state": "pending", "error": None} if s == old else s
                ),
                replace_damaged=True,
            )
        arrays = list(
            dict.fromkeys(j.job_id.split("_")[0] for j in jobs)
        )  # one per MaxArraySize chunk
        print(f"submitted array job {', '.join(arrays)} with {len(jobs)} tasks")
        if manifest.get("adaptive"):
            _continue_rungs(run, executor, arrays)
    else:
        from mrihpc.login.results import status_report

        if manifest.get("adaptive"):
            _continue_rungs(run, executor, [])

        print(status_report(run, *open_run(run.root)[1:], spec.train.metric))
    return 1 if notes else 0


def _continue_rungs(run, executor: str, after: list[str]) -> bool:
    """An adaptive run whose promotion has not happened and has no promotion job alive (it was
    killed, or failed): queue one (after ``after``, the arrays just resubmitted), or with the
    local executor run the remaining rungs here. True when something was done."""
    from mrihpc.login import launch, promote

    manifest = open_run(run.root)[1]
    rung = promote.pending_promotion(manifest)
    if rung is None:
        return False
    executor = launch.resolve_executor(executor)
    if executor != "slurm":
        print(f"promoting rung {rung} here ({executor})")
        promote.advance_locally(run, executor)
        return True
    job = next((p for p in reversed(manifest["adaptive"]["promotions"]) if p["rung"] == rung), None)
    if job and _job_alive(job["job_id"]) and not after:
        print(f"rung {rung}'s promotion job {job['job_id']} is queued or running: nothing to add")
        return False
    if job and _job_alive(job["job_id"]):  # it waits for the rung's first arrays
        return False
    new = promote.submit_promotion(run, rung, after)
    gone = f" (job {job['job_id']} ended without promoting)" if job else ""
    waits = f", after array(s) {', '.join(after)}" if after else ""
    print(f"submitted promotion job {new} for rung {rung}{gone}{waits}")
    return True


def _job_alive(job_id: str) -> bool:
    """Queued or running; True when Slurm cannot say, so that a second promotion is never queued
    beside a live one."""
    from mrihpc.login import accounting

    state = accounting.job_state(job_id)
    return state is None or state in BUSY
