"""One point in this process: ``run``, ``profile`` and ``predict`` (these import torch, when
called)."""

from __future__ import annotations

import argparse
from pathlib import Path

from mrihpc.login.views import RunError, open_run
from mrihpc.login.verbs import OVERRIDE, RUNS_DIR
from mrihpc.errors import SpecError


def add_verbs(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("run", help="run one point in this process (development)")
    s.add_argument("spec")
    s.add_argument("-o", "--override", **OVERRIDE)
    s.add_argument("--point", type=int, default=0)
    s.add_argument("--runs", default=RUNS_DIR)
    s.set_defaults(fn=cmd_run)

    s = sub.add_parser(
        "profile", help="a few training steps of one point: peak memory and a line-by-line profile"
    )
    s.add_argument("spec")
    s.add_argument("-o", "--override", **OVERRIDE)
    s.add_argument("--point", type=int, default=0)
    s.add_argument("--steps", type=int, default=5)
    s.set_defaults(fn=cmd_profile)

    s = sub.add_parser(
        "predict",
        help="write a point's predictions in its workload's format (HDF5, PNG masks) and "
        "panels: as a Slurm job for a Slurm run, else here",
    )
    s.add_argument("run")
    which = s.add_mutually_exclusive_group(required=True)
    which.add_argument("--point", type=int)
    which.add_argument(
        "--best", action="store_true", help="the point whose validation train.metric was best"
    )
    which.add_argument(
        "--each-fold",
        action="store_true",
        help="every fold of the configuration whose mean over its folds was best (as results "
        "ranks)",
    )
    s.add_argument("--split", choices=["val", "test"], default="val")
    s.add_argument(
        "--checkpoint",
        choices=["best", "last"],
        default="best",
        help="best.pt (best on validation; the default) or last.pt (the end of training), "
        "written under "
        "predictions/<split>/ or predictions/<split>_last/",
    )
    s.add_argument("--here", action="store_true", help="in this process, even for a Slurm run")
    s.add_argument(
        "--wait", action="store_true", help="with a job: wait for it and list the files it wrote"
    )
    s.set_defaults(fn=cmd_predict)


def _one_point(args):
    """The spec of ``args.spec``, its raw dict and points, checked to have ``args.point``;
    synthetic data generated."""
    from mrihpc.login import checks

    spec, raw, points, _ = checks.prepare(args.spec, args.override)
    if not 0 <= args.point < len(points):
        raise SpecError(
            [f"{args.spec}: --point {args.point}: the sweep has points 0-{len(points) - 1}"]
        )
    checks.prepare_data([points[args.point][1]])
    return spec, raw, points


def cmd_run(args) -> int:
    from mrihpc.login import launch
    from mrihpc.node.runner import run_point

    spec, raw, points = _one_point(args)
    run = launch.write_run_directory(Path(args.runs), spec, raw, args.spec, points, "debug")
    print(f"run directory: {run.root}\npoint {args.point}: {points[args.point][0].name}")
    run_point(run.root, args.point)
    return 0


def cmd_profile(args) -> int:
    from mrihpc.node.profile import profile_steps

    _, _, points = _one_point(args)
    point, point_spec = points[args.point]
    out = profile_steps(point_spec, args.steps)
    print(out["profile"])
    cuda = f", CUDA peak {out['cuda_peak_mib']} MiB" if "cuda_peak_mib" in out else ""
    print(
        f"{point.name}: {out['steps']} steps on {out['device']}, median "
        f"{out['step_s_median'] * 1000:.0f} ms/step, "
        f"host RSS peak {out['host_peak_mib']} MiB{cuda}"
    )
    return 0


def cmd_predict(args) -> int:
    """The point's predictions: a job on the cluster (the point's partition and container, one
    GPU) when the run went to Slurm, else (or with --here) in this process."""
    from mrihpc.specfile import load_point_spec

    run, manifest = open_run(args.run)
    index = args.point
    if args.best or args.each_fold:
        from mrihpc.ranking import best_configuration, best_point

        try:
            indices = best_configuration(run) if args.each_fold else [best_point(run)]
        except ValueError as e:
            raise RunError(str(e)) from None
        what = (
            "best configuration on validation (mean over its folds): points"
            if args.each_fold
            else "best point on validation:"
        )
        print(f"{what} {' '.join(map(str, indices))}")
        index = None if args.each_fold else indices[0]
    else:
        indices = [index]
        if index not in [p["index"] for p in manifest["points"]]:
            raise RunError(f"{run.root}: no point {index}")
    if manifest.get("executor") == "slurm" and not args.here:
        from mrihpc.login import launch

        job = launch.submit_prediction(
            run,
            load_point_spec(run.point(indices[0])),
            index,
            args.split,
            which=args.checkpoint,
            each_fold=args.each_fold,
        )
        print(
            f"submitted prediction job {job.job_id} (point(s) {' '.join(map(str, indices))}, "
            f"{args.split}, {args.checkpoint}.pt); log: {run.logs}/{job.job_id}_0_log.out"
        )
        if args.wait:
            for path in job.result():
                print(path)
        return 0
    from mrihpc.node.entry import PredictTask

    for path in PredictTask(str(run.root), index, args.split, args.checkpoint, args.each_fold)():
        print(path)
    return 0
