"""The ``mrihpc`` command: one function per verb, each a few calls into the package.

User mistakes (a bad spec, a missing run directory, an unreadable data file) print one
line per problem and exit 2; they never print a traceback.
"""
from __future__ import annotations

import argparse
import os
import signal
import socket
import sys
import time
from pathlib import Path

from mrihpc.data import DataError
from mrihpc.login.live import ServerError
from mrihpc.login.results import RunError, open_run
from mrihpc.paths import CheckpointError
from mrihpc.specfile import SpecError

RUNS_DIR = os.environ.get("MRIHPC_RUNS", "runs")


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

    spec, raw, points, executor = launch.prepare(args.spec, args.override, args.executor, check_paths=not args.dry_run)
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


def cmd_status(args) -> int:
    from mrihpc.login.results import status_report

    run, manifest = open_run(args.run)
    print(status_report(run, manifest, _metric(run)))
    return 0


def cmd_results(args) -> int:
    from mrihpc.login.results import results_report

    run, manifest = open_run(args.run)
    print(results_report(run, manifest, _metric(run), args.sort, args.csv), end="" if args.csv else "\n")
    if args.plot:
        from mrihpc.login.plots import plot_curves

        plot_curves(run, manifest, _metric(run), args.plot)
        print(f"curves of {len(manifest['points'])} points: {args.plot}", file=sys.stderr if args.csv else sys.stdout)
    return 0


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
    from mrihpc.login import launch
    from mrihpc.login.accounting import FAILED_STATES
    from mrihpc.login.results import point_views
    from mrihpc.paths import update_json
    from mrihpc.specfile import load_point_spec

    run, manifest = open_run(args.run)
    views, _ = point_views(run, manifest)
    todo = [v.index for v in views if v.state in FAILED_STATES + ("interrupted",)] if args.failed else args.points
    if not todo:
        print("nothing to resubmit: no failed, cancelled or timed-out points")
        return 0
    for i in todo:  # the point resumes from its last.pt, if it has one
        status = run.point(i).status
        update_json(status, lambda s: {**(s or {}), "state": "pending", "error": None})
    spec = load_point_spec(run.point(todo[0]))
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


def _one_point(args):
    """The spec of ``args.spec``, its raw dict and points, checked to have ``args.point``;
    synthetic data generated."""
    from mrihpc.login import launch

    spec, raw, points, _ = launch.prepare(args.spec, args.override)
    if not 0 <= args.point < len(points):
        raise SpecError([f"{args.spec}: --point {args.point}: the sweep has points 0-{len(points) - 1}"])
    launch.prepare_data(spec)
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
    print(f"{point.name}: {out['steps']} steps on {out['device']}, median {out['step_s_median'] * 1000:.0f} ms/step, "
          f"host RSS peak {out['host_peak_mib']} MiB{cuda}")
    return 0


def cmd_predict(args) -> int:
    from mrihpc import workloads
    from mrihpc.specfile import load_point_spec

    run, manifest = open_run(args.run)
    paths = run.point(args.point)
    if args.point not in [p["index"] for p in manifest["points"]]:
        raise RunError(f"{run.root}: no point {args.point}")
    predict = workloads.resolve(workloads.get(load_point_spec(paths).task).predict)
    for path in predict(paths, args.split):
        print(path)
    return 0


def cmd_synth(args) -> int:
    if args.kind == "cine":
        from mrihpc.workloads.cine.synth import generate as generate_cine

        path = generate_cine(Path(args.out), args.cases, args.frames, args.size or 192, args.seed)
        print(f"wrote {args.cases} beating-heart cases of {args.frames} frames ([N, T, X, Y] as 'dataset') to {path}")
        return 0
    if args.kind == "acdc":
        from mrihpc.workloads.segmentation.synth import generate as generate_acdc

        out = generate_acdc(Path(args.out), args.train, args.val, args.test, args.size or 96, args.seed)
        print(f"wrote {args.train} train, {args.val} val and {args.test} test cardiac phantoms (PNG) under {out}")
        return 0
    if args.kind == "ixi":
        from mrihpc.workloads.synthesis.synth import generate as generate_ixi

        out = generate_ixi(Path(args.out), args.subjects, args.incomplete, args.size or 64, args.seed)
        print(f"wrote {args.subjects} subjects ('<id> - T1.pt' and '<id> - T2.pt') and {args.incomplete} "
              f"with T1 only under {out}")
        return 0
    if args.kind == "sinogram":
        from mrihpc.workloads.sinogram.synth import generate as generate_sino

        out = generate_sino(Path(args.out), args.train, args.val, args.test, args.tof, args.slices,
                            args.angles, args.size or 64, args.counts, args.bad_blocks, args.seed)
        print(f"wrote {args.train} train, {args.val} val and {args.test} test raw uint16 sinograms "
              f"[{args.tof}, {args.slices}, {args.angles}, {args.size or 64}] and mask.npy under {out}")
        return 0
    from mrihpc.data.synth import generate

    out = generate(Path(args.out), args.volumes, args.slices, tuple(args.shape), tuple(args.recon_shape),
                   args.layout, args.seed)
    print(f"wrote {args.volumes} {args.layout} volumes under {out}")
    return 0


def cmd_visdom(args) -> int:
    from mrihpc.login.live import assets, server

    if args.visdom_verb == "start":
        from mrihpc.login.live import follower

        s = server.start(args.port, args.env_path, login=not args.no_login)
        print(f"visdom server pid {s['pid']} at {s['url']} (bound to 127.0.0.1; envs in {s['env_path']}, log {s['log']})")
        print(f"login: {'credentials in ' + s['credentials'] + ' (mode 600)' if s['login'] else 'off (--no-login)'}")
        if not args.no_follow:
            f = follower.start(args.port, args.runs)
            print(f"follower pid {f['pid']} streams the points' visdom.log under {', '.join(f['runs'])} (log {f['log']})")
        print("from your laptop: `mrihpc tunnel RUN` prints the ssh line")
    elif args.visdom_verb == "stop":
        from mrihpc.login.live import follower

        if (f := follower.stop(args.port)) is not None:
            print(f"stopped the follower pid {f['pid']}")
        s = server.stop(args.port)
        print(f"stopped visdom server pid {s['pid']} on port {s['port']}")
    elif args.visdom_verb == "status":
        from mrihpc.login.live import follower

        s = server.running(args.port)
        if s is None:
            print(f"no visdom server of yours runs on {socket.gethostname()} port {args.port}")
            return 1
        print(f"server pid {s['pid']} at {s['url']}, envs in {s['env_path']}, log {s['log']}")
        print(f"login: {'credentials in ' + str(s.get('credentials')) if s.get('login') else 'off'}")
        f = follower.status(args.port)
        if f is None:
            print("follower: not running (`mrihpc visdom start` starts one; points under Slurm only write visdom.log)")
        else:
            lag = "-" if f.get("lag_s") is None else f"{f['lag_s']:.2f} s (worst {f.get('max_lag_s', 0):.2f} s)"
            print(f"follower pid {f['pid']} following {', '.join(f['runs'])}: {f.get('files', 0)} visdom.log files, "
                  f"{f.get('posted', 0)} calls posted, lag {lag}, log {f['log']}")
            if f.get("last_error"):
                print(f"follower: last server error: {f['last_error']}")
    elif args.visdom_verb == "assets":
        print(f"installed {assets.install(args.tarballs)} files into {assets.static_dir()}")
    elif args.visdom_verb == "replay":
        from mrihpc.spec import VisdomSpec
        from mrihpc.visdom_transport import replay

        run, manifest = open_run(args.run)
        logs = [run.point(p["index"]).visdom_log for p in manifest["points"]]
        logs = [log for log in logs if log.is_file()]
        if not logs:
            raise RunError(f"{run.root}: no point has a visdom.log (was monitor.visdom set?)")
        url = args.server or VisdomSpec(port=args.port).url
        try:
            done = replay(logs, url)
        except ConnectionError as e:
            print(f"mrihpc visdom replay: {e}", file=sys.stderr)
            return 1
        print(f"replayed {done['calls']} calls from {done['logs']} points into {url} env {', '.join(done['envs'])}")
    return 0


def cmd_tunnel(args) -> int:
    from mrihpc.login.live.tunnel import tunnel
    from mrihpc.specfile import load_point_spec

    run, manifest = open_run(args.run)
    lines, warnings = tunnel(run, manifest, load_point_spec(run.point(0)), args.login, args.local_port)
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)
    print("\n".join(lines))
    return 0


def _metric(run) -> str:
    from mrihpc.login.results import run_metric

    return run_metric(run)[0]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mrihpc", description="MRI deep-learning training on Slurm from a YAML job spec.")
    sub = p.add_subparsers(dest="verb", required=True)
    override = dict(action="append", default=[], metavar="KEY.PATH=VALUE", help="override a spec value (YAML scalar)")

    s = sub.add_parser("validate", help="check specs; print every problem")
    s.add_argument("spec", nargs="+")
    s.add_argument("-o", "--override", **override)
    s.add_argument("--check-paths", action="store_true", help="also check that data folders exist (submit always does)")
    s.set_defaults(fn=cmd_validate)

    s = sub.add_parser("submit", help="validate, expand the sweep and submit it as one array")
    s.add_argument("spec")
    s.add_argument("-o", "--override", **override)
    s.add_argument("--dry-run", action="store_true", help="print the points and the sbatch script; queue nothing")
    s.add_argument("--executor", choices=["slurm", "local", "debug", "auto"])
    s.add_argument("--runs", default=RUNS_DIR, help="folder of run directories (default: $MRIHPC_RUNS or ./runs)")
    s.set_defaults(fn=cmd_submit)

    for verb, fn, text in (("status", cmd_status, "state of every point"),):
        s = sub.add_parser(verb, help=text)
        s.add_argument("run")
        s.set_defaults(fn=fn)

    s = sub.add_parser("results", help="the sweep as a table, best first")
    s.add_argument("run")
    s.add_argument("--sort", help="column to sort by (default best_<train.metric>)")
    s.add_argument("--csv", action="store_true")
    s.add_argument("--plot", type=Path, metavar="OUT.png", help="also draw every point's curves into a PNG")
    s.set_defaults(fn=cmd_results)

    s = sub.add_parser("logs", help="a point's stdout (or --err)")
    s.add_argument("run")
    s.add_argument("point", type=int)
    s.add_argument("--err", action="store_true")
    s.add_argument("--follow", "-f", action="store_true")
    s.set_defaults(fn=cmd_logs)

    s = sub.add_parser("cancel", help="cancel points (all when none given)")
    s.add_argument("run")
    s.add_argument("points", nargs="*", type=int)
    s.set_defaults(fn=cmd_cancel)

    s = sub.add_parser("resubmit", help="a new array of the failed / cancelled / timed-out points")
    s.add_argument("run")
    s.add_argument("--failed", action="store_true", help="pick the points that did not finish")
    s.add_argument("points", nargs="*", type=int)
    s.add_argument("--executor", choices=["slurm", "local", "debug", "auto"])
    s.set_defaults(fn=cmd_resubmit)

    s = sub.add_parser("run", help="run one point in this process (development)")
    s.add_argument("spec")
    s.add_argument("-o", "--override", **override)
    s.add_argument("--point", type=int, default=0)
    s.add_argument("--runs", default=RUNS_DIR)
    s.set_defaults(fn=cmd_run)

    s = sub.add_parser("profile", help="a few training steps of one point: peak memory and a line-by-line profile")
    s.add_argument("spec")
    s.add_argument("-o", "--override", **override)
    s.add_argument("--point", type=int, default=0)
    s.add_argument("--steps", type=int, default=5)
    s.set_defaults(fn=cmd_profile)

    s = sub.add_parser("predict", help="write a point's predictions in its workload's format (HDF5, PNG masks) and panels")
    s.add_argument("run")
    s.add_argument("--point", type=int, required=True)
    s.add_argument("--split", choices=["val", "test"], default="val")
    s.set_defaults(fn=cmd_predict)

    s = sub.add_parser("visdom", help="a local Visdom server for live plots, and replay of a run's plots")
    vis = s.add_subparsers(dest="visdom_verb", required=True)
    s = vis.add_parser("start", help="start a server bound to 127.0.0.1 and the follower that streams the "
                                     "points' visdom.log into it (both detached)")
    s.add_argument("--port", type=int, default=8097)
    s.add_argument("--env-path", type=Path, help="where envs are saved (default <cache>/visdom/envs)")
    s.add_argument("--runs", type=Path, nargs="+", default=[Path("runs")],
                   help="runs folders, experiment folders or run directories to follow (default ./runs)")
    s.add_argument("--no-login", action="store_true", help="Visdom's login off (a private machine only)")
    s.add_argument("--no-follow", action="store_true", help="the server alone")
    s = vis.add_parser("stop", help="stop the server and follower you started on this host and port")
    s.add_argument("--port", type=int, default=8097)
    s = vis.add_parser("status", help="what runs: server, login, follower, the runs it follows, its lag")
    s.add_argument("--port", type=int, default=8097)
    s = vis.add_parser("assets", help="install the page's JS/CSS/MathJax from npm packages (for offline use)")
    s.add_argument("--tarballs", type=Path, help="folder of `npm pack` tarballs (missing ones are fetched into it)")
    s = vis.add_parser("replay", help="rebuild every window of a run from its points' visdom.log")
    s.add_argument("run")
    s.add_argument("--server", help="server URL with port (default http://127.0.0.1:PORT)")
    s.add_argument("--port", type=int, default=8097)
    for s in vis.choices.values():
        s.set_defaults(fn=cmd_visdom)

    s = sub.add_parser("tunnel", help="the ssh line that shows a run's Visdom plots on your laptop")
    s.add_argument("run")
    s.add_argument("--login", help="login host as your laptop reaches it (default: this host's name)")
    s.add_argument("--local-port", type=int, help="port on your laptop (default: the server's)")
    s.set_defaults(fn=cmd_tunnel)

    s = sub.add_parser("data", help="data utilities")
    data = s.add_subparsers(dest="data_verb", required=True)
    s = data.add_parser("synth", help="write synthetic volumes in a real layout")
    s.add_argument("kind", choices=["knee", "acdc", "cine", "sinogram", "ixi"],
                   help="knee: fastMRI / coursework HDF5; acdc: PNG image / mask folders; cine: cine.npz [N, T, X, Y]; "
                        "sinogram: raw uint16 [TOF, Slice, W, L] clean / noisy pairs and a bad-block mask.npy; "
                        "ixi: '<id> - T1.pt' / '<id> - T2.pt' brain phantoms")
    s.add_argument("out")
    s.add_argument("--volumes", type=int, default=8)
    s.add_argument("--slices", type=int, default=16)
    s.add_argument("--shape", type=int, nargs=2, default=[640, 368], metavar=("H", "W"))
    s.add_argument("--recon-shape", type=int, nargs=2, default=[320, 320], metavar=("H", "W"))
    s.add_argument("--layout", choices=["fastmri", "nc2019"], default="fastmri")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--train", type=int, default=60, help="acdc: training images; sinogram: training files")
    s.add_argument("--val", type=int, default=12, help="acdc: validation images; sinogram: validation files")
    s.add_argument("--test", type=int, default=8, help="acdc: test images (no masks); sinogram: test files")
    s.add_argument("--size", type=int, help="acdc, cine, ixi: image side (default 96, 192, 64); sinogram: radial bins L (64)")
    s.add_argument("--tof", type=int, default=2, help="sinogram: TOF bins")
    s.add_argument("--subjects", type=int, default=577, help="ixi: subjects with both contrasts")
    s.add_argument("--incomplete", type=int, default=2, help="ixi: further subjects with T1 only")
    s.add_argument("--angles", type=int, default=50, help="sinogram: projection angles W")
    s.add_argument("--counts", type=float, default=100.0, help="sinogram: expected counts in the brightest bin")
    s.add_argument("--bad-blocks", type=int, default=3, help="sinogram: dead detector blocks in the mask")
    s.add_argument("--cases", type=int, default=200, help="cine: cases")
    s.add_argument("--frames", type=int, default=20, help="cine: frames per case")
    s.set_defaults(fn=cmd_synth)
    return p


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.fn(args)
    except SpecError as e:
        print("\n".join(e.problems), file=sys.stderr)
    except (RunError, DataError, ServerError, CheckpointError, OSError) as e:  # OSError: a full disk, a missing file
        print(f"mrihpc {args.verb}: {e}", file=sys.stderr)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 2


if __name__ == "__main__":
    sys.exit(main())
