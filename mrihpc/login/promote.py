"""Successive halving's promotion: once a rung has ended, choose the next rung's points and queue
them, with no server anywhere.

Under Slurm each rung is one array followed by one small job (1 CPU, no GPU, no container,
``--dependency=afterany`` on the rung's arrays) that runs ``PromoteTask``: it reads the points'
metrics, records the next rung in the manifest, marks its points pending, queues them as one
array that resumes each from its last.pt, and queues the promotion after that, until the last
rung. Every step is recorded before the next, so a promotion killed at any moment and run again
(``mrihpc resubmit``) finishes the same work once. With the local executor the submitting
process runs the rungs one after the other (``advance_locally``).
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Optional

from mrihpc import rungs
from mrihpc.paths import RunPaths, read_json, update_json


class PromoteTask:
    """Promote rung ``rung`` of the run in ``run_dir``: what submitit pickles for the job."""

    def __init__(self, run_dir: str, rung: int):
        self.run_dir, self.rung = str(run_dir), int(rung)

    def __call__(self) -> list[int]:
        # the job's own SLURM_* variables (its job id, memory, CPUs) would leak into the sbatch and
        # srun of the array it queues; the site's configuration file stays
        for key in [k for k in os.environ if k.startswith("SLURM_") and k != "SLURM_CONF"]:
            del os.environ[key]
        return promote(RunPaths(Path(self.run_dir)), self.rung, "slurm")

    def __repr__(self) -> str:
        return f"PromoteTask({self.run_dir!r}, {self.rung})"


def _say(line: str) -> None:
    print(f"[mrihpc] {line}", flush=True)


def promote(run: RunPaths, rung: int, executor: str) -> list[int]:
    """Choose and queue rung ``rung + 1`` (once: a rung already recorded is not chosen again, a
    rung already queued is not queued again). Slurm: returns once its array and its own
    promotion job are queued; local / debug: once its points have run. Returns its points."""
    manifest = read_json(run.manifest)
    if rungs.is_last(manifest, rung):
        _say(f"rung {rung} is the last: nothing to promote")
        return []
    if len(manifest["adaptive"]["rungs"]) <= rung + 1:
        chosen, values, line = rungs.choose(run, manifest, rung)
        _say(line)
        record = {
            "epochs": manifest["adaptive"]["budgets"][rung + 1],
            "points": chosen,
            "values": {str(i): v for i, v in values.items()},
            "time": dt.datetime.now().isoformat(timespec="seconds"),
        }
        # first: no point of the new rung may read "done" (its last rung's end) once it is recorded
        for i in chosen:
            update_json(
                run.point(i).status,
                lambda s: {**(s or {}), "state": "pending", "error": None},
                replace_damaged=True,
            )

        def add(m: dict) -> dict:  # under the manifest's lock: a second promotion adds nothing
            if len(m["adaptive"]["rungs"]) <= rung + 1:
                m["adaptive"]["rungs"].append(record)
            return m

        manifest = update_json(run.manifest, add)
    nxt = manifest["adaptive"]["rungs"][rung + 1]
    if not nxt["points"]:
        _say(f"rung {rung}: no point finished it; the sweep stops here")
        return []
    if _queued(manifest, rung + 1):
        _say(
            f"rung {rung + 1} was queued already "
            f"({', '.join(nxt.get('queued') or ['earlier'])}): nothing to do"
        )
        return nxt["points"]
    _queue(run, manifest, rung + 1, executor)
    return nxt["points"]


def _queued(manifest: dict, rung: int) -> bool:
    """Rung ``rung``'s points were submitted: recorded so, or (a promotion killed between its
    sbatch and that record) each has a submission made after the rung was chosen."""
    record = manifest["adaptive"]["rungs"][rung]
    if record.get("queued") is not None:
        return True
    newer = {
        int(i) for s in manifest["submissions"] if s["time"] >= record["time"] for i in s["jobs"]
    }
    return set(record["points"]) <= newer


def _queue(run: RunPaths, manifest: dict, rung: int, executor: str) -> None:
    """Submit rung ``rung``'s points (one array per distinct set of resources, as resubmit
    does) and, under Slurm, the promotion job that follows them."""
    from mrihpc.login import launch
    from mrihpc.login.adapt import by_cluster
    from mrihpc.login.sbatch_flags import with_cluster
    from mrihpc.specfile import load_point_spec

    points = manifest["adaptive"]["rungs"][rung]["points"]
    spec = load_point_spec(run.point(points[0]))
    arrays: list[str] = []
    for changes, indices in by_cluster(manifest, points).items():
        jobs = launch.submit_points(
            run, with_cluster(spec, dict(changes), "resubmit --adapt"), indices, executor
        )
        arrays += (
            list(dict.fromkeys(j.job_id.split("_")[0] for j in jobs)) if executor == "slurm" else []
        )

    def queued(m: dict) -> dict:
        m["adaptive"]["rungs"][rung]["queued"] = arrays
        return m

    manifest = update_json(run.manifest, queued)
    _say(
        f"rung {rung}: point(s) {' '.join(map(str, points))} queued"
        + (f" as array(s) {', '.join(arrays)}" if arrays else " here")
    )
    if executor == "slurm" and not rungs.is_last(manifest, rung):
        job = submit_promotion(run, rung, arrays)
        _say(f"rung {rung}: promotion job {job} queued after array(s) {', '.join(arrays)}")
    elif (
        executor == "slurm" and manifest["adaptive"].get("then") == "predict"
    ):  # submit --then predict
        job = launch.submit_prediction(run, spec, None, "test", after=arrays)
        _say(
            f"the last rung's best point predicts its test split in job {job.job_id}, "
            f"after {', '.join(arrays)}"
        )


def submit_promotion(run: RunPaths, rung: int, after: list[str]) -> str:
    """The small job that promotes rung ``rung`` once ``after`` (its arrays) have ended: 1 CPU, no
    GPU, no container (it imports no torch: the host's Python with the run's code snapshot),
    the run's partition and account. Recorded in the manifest; returns its job id."""
    from mrihpc.login import launch
    from mrihpc.spec import ContainerSpec
    from mrihpc.specfile import load_point_spec

    manifest = read_json(run.manifest)
    spec = load_point_spec(run.point(manifest["adaptive"]["rungs"][rung]["points"][0]))
    c = spec.cluster
    small = c.model_copy(
        update={
            "partition": manifest["adaptive"].get("partition") or c.partition,
            "nodes": 1,
            "tasks_per_node": 1,
            "cpus_per_task": 1,
            "gpus_per_node": 0,
            "mem_gb": 1.0,
            "time": "00:20:00",
            "exclusive": False,
            "array_parallelism": 1,
            "requeue": False,
        }
    )
    spec = spec.model_copy(update={"cluster": small, "container": ContainerSpec()})
    ex = launch.make_executor(spec, "slurm", run.logs)
    params = launch.slurm_parameters(spec, run.root)
    params["job_name"] = f"{params['job_name']}-promote{rung}"
    extra = {k: v for k, v in params["additional_parameters"].items() if k not in ("gres", "gpus")}
    params["additional_parameters"] = {
        **extra,
        **({"dependency": "afterany:" + ":".join(after)} if after else {}),
    }
    ex.update_parameters(**params)
    job = ex.submit(PromoteTask(str(run.root), rung))
    record = {
        "rung": rung,
        "job_id": str(job.job_id),
        "time": dt.datetime.now().isoformat(timespec="seconds"),
        "after": list(after),
        "stdout": str(job.paths.stdout),
        "stderr": str(job.paths.stderr),
    }
    update_json(
        run.manifest,
        lambda m: {
            **m,
            "adaptive": {**m["adaptive"], "promotions": m["adaptive"]["promotions"] + [record]},
        },
    )
    return str(job.job_id)


def pending_promotion(manifest: dict) -> Optional[int]:
    """The rung whose promotion has not happened yet (its next rung is not recorded, or not
    queued), None when the sweep has reached its last rung."""
    a = manifest["adaptive"]
    k = len(a["rungs"]) - 1
    if k >= 1 and not _queued(manifest, k) and a["rungs"][k]["points"]:
        return k - 1
    if rungs.is_last(manifest, k) or not a["rungs"][k]["points"]:
        return None
    return k


def advance_locally(run: RunPaths, executor: str) -> None:
    """Local / debug executor: promote and run each rung here, until the last (or until a rung
    that no point finished)."""
    while (rung := pending_promotion(read_json(run.manifest))) is not None:
        if not promote(run, rung, executor):
            return
