"""Validated points + cluster section -> a submitit executor -> ONE array per sweep.

The pickled callable is ``PointTask(run_dir, index)`` (a few hundred bytes): the node derives
its point's spec from ``spec.yaml`` and the point's overrides in ``manifest.json`` and writes
``points/<i>/config.yaml`` itself. Slurm submission returns as soon as sbatch does; the local
executor runs at most ``array_parallelism`` points at once and waits for them.
"""

from __future__ import annotations

import datetime as dt
import getpass
import math
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Sequence

import mrihpc
from mrihpc import rungs, snapshot, workloads
from mrihpc.login import container, provenance
from mrihpc.login.provision import ProvisionError
from mrihpc.paths import RunPaths, atomic_write_json, dump_yaml, update_json
from mrihpc.spec import ClusterSpec, JobSpec, slurm_time_minutes
from mrihpc.sweep import Point

if (
    TYPE_CHECKING
):  # submitit (and asyncio under it) is imported where a job is made, not by validate
    import submitit

DEFAULT_MAX_ARRAY_SIZE = 1001  # Slurm's own default MaxArraySize


def resolve_executor(name: str) -> str:
    """``auto`` -> slurm when sbatch is on PATH, else local."""
    if name == "auto":
        return "slurm" if shutil.which("sbatch") else "local"
    return name


def slurm_parameters(spec: JobSpec, run_root: Path) -> dict[str, Any]:
    """The cluster section as submitit SlurmExecutor parameters (sbatch flags); the container's
    srun arguments and setup lines (see ``mrihpc.login.container``)."""
    c = spec.cluster
    # exactly one GPU per task: --gpu-bind=closest would give a task every GPU of its NUMA domain,
    # and two ranks could then pick the same one
    gres = c.gpu_request == "gres"
    srun_args = (
        (["--gpus-per-task=1"] if c.gpus_per_node and not gres else [])
        # one rank that exits with an error ends the step: its peers would otherwise wait in the
        # rendezvous or an NCCL collective until the 10-minute timeout, holding every GPU
        + (["--kill-on-bad-exit=1"] if c.nodes * c.num_tasks_per_node > 1 else [])
        + container.srun_args(spec, run_root)
    )
    setup = list(c.setup) + code_lines(run_root) + container.setup_lines(spec)
    params: dict[str, Any] = dict(
        job_name=c.job_name or spec.name,
        partition=c.partition,
        account=c.account,
        qos=c.qos,
        nodes=c.nodes,
        ntasks_per_node=c.num_tasks_per_node,
        cpus_per_task=c.cpus_per_task,
        gpus_per_node=(c.gpus_per_node or None) if not gres else None,
        gres=f"gpu:{c.gpus_per_node}" if gres and c.gpus_per_node else None,
        mem=_mem(c.mem_gb),
        time=slurm_time_minutes(c.time),
        constraint=c.constraint,
        exclude=c.exclude,
        exclusive=True if c.exclusive else None,
        array_parallelism=c.array_parallelism,
        mail_user=c.mail_user,
        mail_type=c.mail_type,
        setup=setup or None,
        signal_delay_s=c.signal_delay_s,
        additional_parameters={"requeue" if c.requeue else "no-requeue": True, **c.sbatch},
        srun_args=srun_args or None,
    )
    return {k: v for k, v in params.items() if v is not None}


def code_lines(run_root: Path) -> list[str]:
    """Shell lines that make a task import the run's snapshot of mrihpc (see ``mrihpc.snapshot``),
    after the spec's own setup lines, so a ``module load`` that resets PYTHONPATH cannot undo them.
    The working directory stays the submitting one (relative data paths mean what they meant)."""
    code = shlex.quote(str(RunPaths(run_root).code))
    # PYTHONSAFEPATH (Python 3.11+): `python -m` would put the working directory first on sys.path,
    # and a user who submits from their checkout would import its mrihpc before the snapshot
    return [
        f'export PYTHONPATH={code}"${{PYTHONPATH:+:$PYTHONPATH}}"',
        "export PYTHONSAFEPATH=1",
        f"export {snapshot.CODE_ENV}={code}",
    ]


def _mem(gb: Optional[float]) -> Optional[str]:
    """Slurm's --mem from GB: 400 -> "400GB", 1.5 -> "1536MB"."""
    if gb is None:
        return None
    return (
        f"{int(gb)}GB" if gb == int(gb) else f"{math.ceil(gb * 1024)}MB"
    )  # never rounds down to 0


def _script_only_executor(logs: Path, python: str):
    """submitit's own SlurmExecutor, allowed to exist where srun does not, to render scripts."""
    from submitit.slurm.slurm import SlurmExecutor

    class ScriptOnly(SlurmExecutor):
        @classmethod
        def affinity(cls) -> int:
            return 1

    return ScriptOnly(folder=logs, python=python)


def sbatch_script(spec: JobSpec, logs: Path, num_points: int) -> str:
    """The exact sbatch script submitit submits for an array of ``num_points`` tasks."""
    ex = _script_only_executor(logs, container.python_command(spec, logs.parent))
    ex.update_parameters(**slurm_parameters(spec, logs.parent))
    if num_points > 1:
        ex.parameters["map_count"] = num_points
    return ex._make_submission_file_text(ex._submitit_command_str, "dry-run")


def dry_run_text(spec: JobSpec, logs: Path, num_points: int) -> str:
    """The sbatch script and, for docker / apptainer, the script that enters the image."""
    text = sbatch_script(spec, logs, num_points)
    if spec.container.runtime in ("docker", "apptainer"):
        text += f"\n# {logs.parent / container.ENTER_SCRIPT} (srun runs it in place of python):\n"
        text += container.enter_script(spec, logs.parent)
    return text


def max_array_size(cluster: ClusterSpec) -> int:
    """The spec's setting, else Slurm's MaxArraySize, else Slurm's default."""
    if cluster.max_array_size:
        return cluster.max_array_size
    try:
        out = subprocess.run(
            ["scontrol", "show", "config"], capture_output=True, text=True, timeout=20
        ).stdout
        m = re.search(r"^MaxArraySize\s*=\s*(\d+)", out, re.M)
        if m:
            return int(m.group(1))
    except (OSError, subprocess.TimeoutExpired):
        pass
    return DEFAULT_MAX_ARRAY_SIZE


def make_executor(spec: JobSpec, executor: str, logs: Path) -> submitit.Executor:
    import submitit
    from submitit.slurm.slurm import SlurmExecutor

    if executor == "slurm":
        ex = SlurmExecutor(
            folder=logs,
            max_num_timeout=spec.train.max_requeues,
            python=container.python_command(spec, logs.parent),
        )
        ex.update_parameters(**slurm_parameters(spec, logs.parent))
        return ex
    if executor == "local":
        ex = submitit.LocalExecutor(
            folder=logs,
            max_num_timeout=spec.train.max_requeues,
            python=container.python_command(spec, logs.parent),
        )
        ex.update_parameters(
            timeout_min=slurm_time_minutes(spec.cluster.time),
            tasks_per_node=spec.cluster.num_tasks_per_node,
            gpus_per_node=spec.cluster.gpus_per_node,
            signal_delay_s=spec.cluster.signal_delay_s,
            setup=list(spec.cluster.setup) + code_lines(logs.parent),
        )
        return ex
    if executor == "debug":
        return submitit.DebugExecutor(folder=logs)
    raise ValueError(f"unknown executor {executor!r}")


def git_revision(cwd: Path) -> Optional[str]:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10
        )
        return out.stdout.strip() or None if out.returncode == 0 else None
    except OSError:
        return None


def new_sweep_id() -> str:
    now = dt.datetime.now()
    return now.strftime("%Y%m%d-%H%M%S-") + f"{now.microsecond:06d}"[:3]


def write_run_directory(
    runs_dir: Path,
    spec: JobSpec,
    raw: dict,
    source: str,
    points: Sequence[tuple[Point, JobSpec]],
    executor: str,
) -> RunPaths:
    """Create runs/<name>/<sweep-id>/ with spec.yaml and manifest.json (every point's overrides)."""
    run = RunPaths.create(runs_dir, spec.name, new_sweep_id())
    try:
        _write_run_files(run, spec, raw, source, points, executor)
    except (
        OSError
    ) as e:  # a full disk, a quota: no half-made run directory that status would misread
        snapshot.make_writable(run.code) if run.code.exists() else None
        shutil.rmtree(run.root, ignore_errors=True)
        from mrihpc.login.views import RunError

        raise RunError(
            f"{run.root}: could not write the run directory ({e.strerror or e}); nothing "
            "was submitted"
        ) from None
    except ProvisionError as e:  # the image's Python could not be learned, or a wheel is missing
        snapshot.make_writable(run.code)
        shutil.rmtree(run.root, ignore_errors=True)
        from mrihpc.login.views import RunError

        raise RunError(f"{source}: container: {e}; nothing was submitted") from None
    return run


def _write_run_files(
    run: RunPaths,
    spec: JobSpec,
    raw: dict,
    source: str,
    points: Sequence[tuple[Point, JobSpec]],
    executor: str,
) -> None:
    # one spec and one manifest (every point's overrides and seed); a point's folder and its
    # config.yaml are made on its node when it starts (10,000 points: two files, not 20,000)
    run.spec.write_text(dump_yaml(raw))
    code = snapshot.take(run.code)
    image = container.write_enter_script(spec, run.root)
    run.root.joinpath("points").mkdir()
    atomic_write_json(
        run.manifest,
        {
            "name": spec.name,
            "sweep_id": run.root.name,
            "source": str(Path(source).resolve()),
            "created": dt.datetime.now().isoformat(timespec="seconds"),
            "user": getpass.getuser(),
            "git_rev": git_revision(Path(source).resolve().parent),
            "mrihpc_version": mrihpc.__version__,
            "code": code,
            "container": image,
            "provenance": provenance.submit_side(
                run.root, Path(source).resolve().parent, Path(code["source"])
            ),
            "python": sys.executable,
            "executor": executor,
            # what status and results rank by, readable without the spec models
            "task": spec.task,
            "metric": points[0][1].train.metric,
            "metric_directions": workloads.get(spec.task).metrics,
            "points": [p.to_json() for p, _ in points],
            "submissions": [],
            **(
                {"adaptive": a}
                if (
                    a := rungs.plan(
                        spec, workloads.get(spec.task).metrics, [p.index for p, _ in points]
                    )
                )
                else {}
            ),
        },
    )


def _record(run: RunPaths, *submissions: dict) -> None:
    update_json(
        run.manifest,
        lambda manifest: {**manifest, "submissions": manifest["submissions"] + list(submissions)},
    )


def _job_record(job: submitit.Job) -> dict:
    return {
        "job_id": str(job.job_id),
        "stdout": str(job.paths.stdout).replace("%t", "0"),
        "stderr": str(job.paths.stderr).replace("%t", "0"),
    }


def submit_points(
    run: RunPaths, spec: JobSpec, indices: Sequence[int], executor: str, on_start=None, on_tick=None
) -> list[submitit.Job]:
    """Queue ``indices`` of the run; slurm: one array per MaxArraySize chunk, returns at once;
    local / debug: runs them (at most array_parallelism at a time) and returns when all ended."""
    from submitit.core.utils import FailedJobError

    from mrihpc.node.entry import (
        PointTask,
    )  # submitit's Checkpointable: imported to submit, not to validate

    ex = make_executor(spec, executor, run.logs)
    tasks = [PointTask(str(run.root), i) for i in indices]
    stamp = dt.datetime.now().isoformat(timespec="seconds")
    if executor == "slurm":
        jobs, arrays = [], []
        chunk = max_array_size(spec.cluster)
        try:
            for start in range(0, len(tasks), chunk):
                part = tasks[start : start + chunk]
                try:
                    with ex.batch():
                        new = [ex.submit(t) for t in part]
                except (
                    FailedJobError
                ) as e:  # a QOS or association limit, a controller that went away
                    raise _refused(run, part, arrays, e) from None
                jobs += new
                arrays.append(
                    {
                        "time": stamp,
                        "executor": executor,
                        "array_id": new[0].job_id.split("_")[0],
                        "jobs": {str(t.index): _job_record(j) for t, j in zip(part, new)},
                    }
                )
        # one manifest rewrite for all arrays (10,000 points: 0.15 s, not 1.5 s for ten), even
        # when a later sbatch fails: what was queued is recorded
        finally:
            if arrays:
                _record(run, *arrays)
        return jobs
    return _run_here(
        run, ex, tasks, spec.cluster.array_parallelism, executor, stamp, on_start, on_tick
    )


def submit_prediction(
    run: RunPaths,
    spec: JobSpec,
    index: Optional[int],
    split: str,
    after: Sequence[str] = (),
    which: str = "best",
    each_fold: bool = False,
) -> submitit.Job:
    """One Slurm job that writes point ``index``'s predictions of ``split`` with its ``which``
    checkpoint (best or last; index None: the best point on validation, or with ``each_fold`` the
    folds of the best configuration, chosen on the node) in one job with
    the point's partition, container and at most one GPU, one task; ``after``: job ids it waits
    for (``--dependency=afterok``). Recorded in the manifest."""
    from mrihpc.node.entry import PredictTask
    from mrihpc.paths import update_json

    c = spec.cluster
    spec = spec.model_copy(
        update={
            "cluster": c.model_copy(
                update={"nodes": 1, "tasks_per_node": 1, "gpus_per_node": min(c.gpus_per_node, 1)}
            )
        }
    )
    ex = make_executor(spec, "slurm", run.logs)
    params = slurm_parameters(spec, run.root)
    params["job_name"] = f"{params['job_name']}-predict"
    if after:
        params["additional_parameters"] = {
            **params["additional_parameters"],
            "dependency": "afterok:" + ":".join(after),
        }
    ex.update_parameters(**params)
    job = ex.submit(PredictTask(str(run.root), index, split, which, each_fold))
    record = {
        "time": dt.datetime.now().isoformat(timespec="seconds"),
        "job_id": job.job_id,
        "point": ("each-fold" if each_fold else "best") if index is None else index,
        "split": split,
        "checkpoint": which,
        "after": list(after),
    }
    update_json(run.manifest, lambda m: {**m, "predictions": m.get("predictions", []) + [record]})
    return job


def _refused(run: RunPaths, part: list, arrays: list[dict], error: Exception):
    from mrihpc.login.views import SubmitRefused

    reason = str(error).strip() or type(error).__name__
    queued = (
        f"array(s) {', '.join(a['array_id'] for a in arrays)} queued before it"
        if arrays
        else "nothing queued"
    )
    return SubmitRefused(
        bool(arrays),
        reason,
        f"{run.root}: sbatch refused the array of points {part[0].index}-{part[-1].index} "
        f"({reason}); {queued}. Once the cause is fixed, "
        f"`mrihpc resubmit {run.root} --failed` queues the points left out",
    )


def _run_here(
    run, ex, tasks, parallelism, executor, stamp, on_start, on_tick
) -> list[submitit.Job]:
    """Local and debug executors: a rolling window of ``parallelism`` running points;
    ``on_tick(finished)`` every half second while waiting (progress display)."""
    pending, running, done = list(tasks), [], []
    while pending or running:
        while pending and len(running) < parallelism:
            task = pending.pop(0)
            job = ex.submit(task)
            _record(
                run,
                {
                    "time": stamp,
                    "executor": executor,
                    "array_id": None,
                    "jobs": {str(task.index): _job_record(job)},
                },
            )
            if on_start:
                on_start(task.index, job)
            if executor == "debug":
                _wait_quietly(job)
                done.append(job)
            else:
                running.append(job)
        for job in [j for j in running if j.done()]:
            running.remove(job)
            done.append(job)
        if running:
            if on_tick:
                on_tick(len(done))
            time.sleep(0.5)
    return done


def _wait_quietly(job: submitit.Job) -> None:
    """Run / wait for a job; a failed point is recorded in its status.json, not raised here."""
    try:
        job.result()
    except Exception:  # noqa: BLE001 - the point's own status.json holds the error
        pass
