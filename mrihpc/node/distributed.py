"""torch.distributed from the Slurm / submitit environment; rank-0 helpers.

One process per GPU (or per CPU task). The world comes from submitit's JobEnvironment,
which reads SLURM_PROCID / SLURM_NTASKS / SLURM_JOB_NODELIST (or the local executor's
equivalents); the rendezvous is the first host of the node list.
"""

from __future__ import annotations

import datetime as dt
import os
import zlib
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as torch_dist


@dataclass(frozen=True)
class World:
    rank: int = 0
    local_rank: int = 0
    size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def _job_environment():
    import submitit

    try:
        return submitit.JobEnvironment()
    except RuntimeError:  # not inside a submitit job (e.g. `mrihpc run`)
        return None


def job_rank() -> int:
    """This task's rank in its job (0 outside a submitit job), known before the process group."""
    env = _job_environment()
    return env.global_rank if env else 0


def init_world(job_id_hint: str = "") -> World:
    """Initialise torch.distributed when the job has more than one task; pick the device."""
    env = _job_environment()
    rank, local_rank, size = (env.global_rank, env.local_rank, env.num_tasks) if env else (0, 0, 1)
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank % torch.cuda.device_count())
        device = torch.device("cuda", torch.cuda.current_device())
    else:
        device = torch.device("cpu")
    if size > 1 and not torch_dist.is_initialized():
        # set from the job, never taken from the environment: a value exported in the user's
        # shell (sbatch copies it into the job) would point every rank at a stale rendezvous
        os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = rendezvous(
            env.hostnames, env.job_id if env else job_id_hint
        )
        backend = "nccl" if device.type == "cuda" else "gloo"
        torch_dist.init_process_group(
            backend, rank=rank, world_size=size, timeout=dt.timedelta(minutes=10)
        )
        if device.type == "cuda":
            check_distinct_gpus(size)
    return World(rank, local_rank, size, device)


def rendezvous(hostnames: list[str], job_id: str) -> tuple[str, str]:
    """(MASTER_ADDR, MASTER_PORT): the job's first host, and a port derived from the job id so
    two jobs sharing a node do not collide, in 20000-32767: below Linux's ephemeral range
    (32768-60999), where any outgoing connection on the node may hold a port (a rank 0 that
    found its port taken so failed, and its peers waited for it)."""
    return hostnames[0], str(20000 + zlib.crc32(job_id.encode()) % 12768)


def all_reduce_mean(values: dict[str, float], world: World) -> dict[str, float]:
    """The mean over ranks of each value (collective: every rank must call it with the same
    keys)."""
    if not world.distributed or not values:
        return values
    t = torch.tensor(
        [float(v) for v in values.values()],
        dtype=torch.float64,
        device=world.device if world.device.type == "cuda" else "cpu",
    )
    torch_dist.all_reduce(t)
    return dict(zip(values, (t / world.size).tolist()))


def check_distinct_gpus(size: int) -> None:
    """Every rank must drive its own GPU; two ranks on one device is a binding mistake."""
    uuid = str(torch.cuda.get_device_properties(torch.cuda.current_device()).uuid)
    uuids: list[Any] = [None] * size
    torch_dist.all_gather_object(uuids, (os.uname().nodename, uuid))
    if len(set(uuids)) != size:
        raise RuntimeError(f"ranks share GPUs: {uuids}; check --gpus-per-node and tasks_per_node")


def close_world() -> None:
    if torch_dist.is_initialized():
        torch_dist.destroy_process_group()


def all_gather(obj: Any, world: World) -> list[Any]:
    """Every rank's ``obj``, in rank order (just ``[obj]`` on one process)."""
    if not world.distributed:
        return [obj]
    out: list[Any] = [None] * world.size
    torch_dist.all_gather_object(out, obj)
    return out


def barrier(world: World) -> None:
    if world.distributed:
        torch_dist.barrier()
