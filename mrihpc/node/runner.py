"""One sweep point on its node: read its config, train, record the outcome in status.json.

Whatever happens, status.json says so: running (with host, pid, job id), done (with the
final metrics), interrupted (by a signal, after a checkpoint), or failed (with the error and the end
of the traceback). A failing point raises, so Slurm marks that array task FAILED and nothing else is
touched.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import os
import socket
import sys
import traceback
from pathlib import Path
from typing import Optional

import torch

import mrihpc
from mrihpc import rungs, snapshot, specfile, workloads
from mrihpc.node import provenance, staging
from mrihpc.node.distributed import World, all_gather, barrier, close_world, init_world, job_rank
from mrihpc.node.monitors import Monitors
from mrihpc.node.monitors.console import Console
from mrihpc.node.monitors.jsonl import MetricsFile
from mrihpc.node.monitors.memory import MemoryProfile
from mrihpc.node.monitors.visdom import VisdomMonitor
from mrihpc.node.preemption import Interrupted, StopSignals
from mrihpc.node import parameters
from mrihpc.node.task import TaskContext
from mrihpc.node.train import Trainer
from mrihpc.paths import (
    DamagedFile,
    LinkRefused,
    PointPaths,
    RunPaths,
    atomic_write_bytes,
    dump_yaml,
    overwrite_in_place,
    read_json,
    refuse_links_within,
    remove_stale_temp_files,
    update_json,
)
from mrihpc.spec import JobSpec


def write_status(paths: PointPaths, world: World, **fields) -> None:
    if not world.is_main:
        return
    now = dt.datetime.now().isoformat(timespec="seconds")
    try:
        update_json(
            paths.status,
            lambda status: {**(status or {}), **fields, "updated": now},
            replace_damaged=True,
        )
    except OSError as e:
        if e.errno != errno.ENOSPC or not paths.status.is_file():
            raise
        # the disk is full: keep the outcome and its reason, in the status file's own blocks
        old = {}
        with contextlib.suppress(DamagedFile):
            old = read_json(paths.status, {}) or {}
        keep = {
            k: old[k] for k in ("attempts", "host", "pid", "job_id", "epoch", "epochs") if k in old
        }
        keep |= {k: str(v)[:300] for k, v in fields.items() if k in ("state", "error", "reason")}
        overwrite_in_place(paths.status, {**keep, "updated": now, "disk_full": True})


load_point_spec = specfile.load_point_spec


def _job_id() -> str:
    """Slurm's ``<array>_<task>`` (or plain job id), or the local executor's id."""
    env = os.environ
    if env.get("SLURM_ARRAY_JOB_ID"):
        return f"{env['SLURM_ARRAY_JOB_ID']}_{env.get('SLURM_ARRAY_TASK_ID')}"
    return env.get("SLURM_JOB_ID") or env.get("SUBMITIT_LOCAL_JOB_ID", "")


def visdom_monitor(spec: JobSpec, run: RunPaths, index: int) -> VisdomMonitor:
    """Env ``<name>_<sweep-id>``; the point's name from the manifest titles its windows."""
    v = spec.monitor.visdom
    point = (read_json(run.manifest, {}) or {}).get("points", [])
    name = point[index]["name"] if index < len(point) else f"point {index}"
    post = v.post if v.post is not None else os.environ.get("SUBMITIT_EXECUTOR") != "slurm"
    return VisdomMonitor(
        run.point(index),
        f"{spec.name}_{run.root.name}",
        index,
        name,
        spec.train.metric,
        run.point(index).config.read_text(),
        v.url,
        v.timeout_s,
        v.backoff_s,
        v.flush_every,
        post,
    )


def train_point(
    spec: JobSpec,
    run: RunPaths,
    index: int,
    world: World,
    signals: StopSignals,
    until: Optional[int] = None,
) -> dict:
    """Build the task and train it (to epoch ``until``: its successive-halving rung's, else
    train.epochs); returns the last epoch's record. The test split is scored at the end of
    training, not at a rung's end."""
    until = until or spec.train.epochs
    paths = run.point(index)
    if spec.train.threads and world.device.type == "cpu":
        torch.set_num_threads(spec.train.threads)

    def say(line: str) -> None:
        if world.is_main:
            print(f"[mrihpc] {line}", flush=True)

    # every rank stages: once per node, the node's other tasks reuse the copy
    spec, staged = staging.stage_data(spec, workloads.get(spec.task).data_paths, say)
    if staged:
        write_status(paths, world, staged=staged)
    task = workloads.resolve(workloads.get(spec.task).task)(spec, TaskContext(world, paths.root))
    chosen, live = [], None
    if world.is_main:
        if spec.monitor.memory is not None:  # first: it adds the peaks to the epoch records
            chosen.append(MemoryProfile(paths.memory, spec.monitor.memory.interval_s, world.device))
        chosen += [MetricsFile(paths.metrics), Console(spec.name, until, spec.train.metric)]
        if spec.monitor.visdom is not None:
            try:
                live = visdom_monitor(spec, run, index)
                chosen.append(live)
            except Exception as e:  # noqa: BLE001 - live plots must not cost a run
                print(f"[mrihpc] live plots off: {type(e).__name__}: {e}", file=sys.stderr)
    monitors = Monitors(chosen)

    def on_epoch(record: dict) -> None:
        write_status(
            paths,
            world,
            state="running",
            epoch=record["epoch"] + 1,
            epochs=until,
            latest={
                k: v
                for k, v in record.items()
                if k.startswith(("val_", "mem_")) or k == "train_loss"
            },
        )

    signals.every = spec.train.stop_check_every
    trainer = None
    try:
        trainer = Trainer(
            spec,
            task,
            world,
            paths.checkpoints,
            monitors,
            on_epoch,
            signals,
        )
        counts = parameters.count(trainer.nets)
        if world.is_main:  # as every seed printed it; status shows the total
            print(f"[mrihpc] parameters: {parameters.describe(counts)}", flush=True)
        write_status(paths, world, params=counts)
        record = trainer.fit(until) | {"best": trainer.best}
        # every rank: the evaluation is collective
        if until >= spec.train.epochs and (test := trainer.score_test()):
            write_status(
                paths, world, test={k: v for k, v in test.items() if not k.endswith("volumes")}
            )
        # DDP keeps replicas equal; record each rank's digest so that is checked, not assumed
        digests = all_gather(trainer.weights_digest(), world)
        write_status(paths, world, rank_weights_sha1=digests)
        return record
    finally:
        if trainer is not None:
            trainer.close()
        monitors.close()
        if live is not None:
            write_status(paths, world, visdom=live.stats())


def materialise_config(paths: PointPaths) -> None:
    """Write the point's concrete spec to its config.yaml (once: an edited one is kept), atomically,
    so the other ranks never read half of it."""
    if not paths.config.is_file():
        atomic_write_bytes(paths.config, dump_yaml(specfile.point_raw(paths)).encode())


def failure_reason(e: BaseException) -> str:
    """``Type: message``; for an error a DataLoader worker raised (torch re-raises it as "Caught
    X in DataLoader worker process 0. Original Traceback ...") the original's last line, which
    names the file."""
    text = str(e)
    if text.startswith("Caught ") and "Original Traceback" in text:
        last = text.strip().splitlines()[-1]
        head, sep, message = last.partition(": ")
        return (
            f"{type(e).__name__}: {message}"
            if sep and head.rsplit(".", 1)[-1] == type(e).__name__
            else last
        )
    return f"{type(e).__name__}: {text}"


def note_rank_failure(paths: PointPaths, rank: int, attempt: int, reason: str) -> None:
    """A rank other than 0 records why it failed, in status.json's ``rank_errors`` (this
    attempt's only): rank 0 writes the point's outcome, and this reason would otherwise live only
    in this rank's log. Never raises: the failure itself goes on."""

    def add(status: Optional[dict]) -> dict:
        status = status or {}
        mine = [e for e in status.get("rank_errors") or [] if e.get("attempt") == attempt]
        return {
            **status,
            "rank_errors": mine + [{"attempt": attempt, "rank": rank, "error": reason}],
        }

    with contextlib.suppress(OSError, DamagedFile):
        update_json(paths.status, add)


def this_attempt(paths: PointPaths) -> int:
    """1 + the attempts status.json counts (1 when it is missing or damaged)."""
    try:
        previous = read_json(paths.status, {}) or {}
    except DamagedFile as e:  # the attempt count is lost; the status is rewritten whole
        print(f"[mrihpc] {e}; writing a new one", file=sys.stderr)
        previous = {}
    return int(previous.get("attempts", 0)) + 1


def record_start_failure(paths: PointPaths, error: BaseException) -> None:
    """A rank that failed before it joined its peers (no process group yet) says why: rank 0 as
    the point's failed status, another rank in ``rank_errors``. Never raises."""
    rank, reason = job_rank(), failure_reason(error)
    with contextlib.suppress(Exception):
        if rank == 0:
            write_status(paths, World(), state="failed", error=reason, host=socket.gethostname())
        else:
            note_rank_failure(paths, rank, this_attempt(paths), reason)


def lead_reason(paths: PointPaths, attempt: int, reason: str) -> str:
    """Rank 0's failure ``reason``, led by another rank's of another kind recorded in this
    attempt: when rank 1 fails, rank 0 fails next in a collective with a connection error that
    says nothing of why."""
    try:
        status = read_json(paths.status, {}) or {}
    except DamagedFile:
        return reason
    kind = reason.split(":", 1)[0]
    for e in status.get("rank_errors") or []:
        other = str(e.get("error", ""))
        if e.get("attempt") == attempt and other.split(":", 1)[0] != kind:
            return f"{other} (rank {e.get('rank')}; then rank 0: {reason})"
    return reason


def run_point(run_dir: Path, index: int) -> dict:
    """The node entry: train point ``index`` of ``run_dir`` and record the outcome."""
    run = RunPaths(Path(run_dir))
    paths = run.point(index)
    signals = StopSignals().install()  # before anything slow, so no signal finds submitit's handler
    try:
        world = init_world()
    except BaseException as e:  # e.g. rank 0's rendezvous port taken: srun ends its peers next
        record_start_failure(paths, e)
        raise
    manifest = read_json(run.manifest, {}) or {}
    try:  # the code that runs is the snapshot taken at submit, unchanged
        snapshot.check(manifest, Path(mrihpc.__file__).parent)
    except snapshot.CodeMismatch as e:
        write_status(
            paths, world, state="failed", error=f"CodeMismatch: {e}", host=socket.gethostname()
        )
        close_world()
        raise
    # a link planted in the point's folder (metrics.jsonl, checkpoints/, scales.json, ...) would
    # take its writes out
    try:
        refuse_links_within(paths.root)
    except LinkRefused as e:
        with contextlib.suppress(LinkRefused):  # say why in status.json, unless that is the link
            write_status(
                paths, world, state="failed", error=f"LinkRefused: {e}", host=socket.gethostname()
            )
        close_world()
        raise
    paths.root.mkdir(parents=True, exist_ok=True)
    if world.is_main:  # only this point writes here, and it has not started writing
        materialise_config(paths)
        provenance.write(paths.root / "provenance.json", manifest)
        stale = remove_stale_temp_files(paths.root)
        if stale:
            print(
                f"[mrihpc] removed {len(stale)} temporary file(s) left by a killed write",
                file=sys.stderr,
            )
    attempt = this_attempt(paths)
    # the GPUs Slurm dealt each rank (srun's SLURM_STEP_GPUS; CUDA_VISIBLE_DEVICES where only that
    # is set)
    ranks = all_gather(
        {
            "rank": world.rank,
            "host": socket.gethostname(),
            "gpus": os.environ.get("SLURM_STEP_GPUS") or os.environ.get("CUDA_VISIBLE_DEVICES"),
        },
        world,
    )
    if world.is_main and any(r["gpus"] for r in ranks):
        print(
            "[mrihpc] GPUs dealt: "
            + ", ".join(f"rank {r['rank']} on {r['host']}: {r['gpus']}" for r in ranks),
            flush=True,
        )
    write_status(
        paths,
        world,
        state="running",
        host=socket.gethostname(),
        pid=os.getpid(),
        job_id=_job_id(),
        world_size=world.size,
        device=str(world.device),
        ranks=ranks,
        error=None,
        traceback=None,
        started=dt.datetime.now().isoformat(timespec="seconds"),
        attempts=attempt,
    )
    try:
        until = rungs.epochs_for(manifest, index)  # None unless the sweep is adaptive
        if until is not None and world.is_main:
            rung = rungs.rung_of(manifest, index)
            print(f"[mrihpc] successive halving: rung {rung}, to epoch {until}", flush=True)
        record = train_point(load_point_spec(paths), run, index, world, signals, until)
        barrier(
            world
        )  # every rank past its last collective before any closes its gloo/NCCL sockets
    except Interrupted as e:
        # SIGTERM may be a preemption, a requeue or a scancel: Slurm's accounting tells which
        write_status(paths, world, state="interrupted", reason=f"{signals.reason}; {e}")
        signals.settle()
        close_world()
        signals.leave(world.is_main)
    except BaseException as e:
        reason = failure_reason(e)
        if world.is_main:
            reason = lead_reason(paths, attempt, reason)
        else:  # rank 0 writes the outcome; this rank's reason goes beside it
            note_rank_failure(paths, world.rank, attempt, reason)
        write_status(
            paths,
            world,
            state="failed",
            error=reason,
            traceback="".join(traceback.format_exc()).splitlines()[-25:],
        )
        raise
    finally:
        signals.uninstall()
        close_world()
    write_status(paths, world, state="done", final=record)
    return record
