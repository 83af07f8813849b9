"""The GPU path, checked from the CPU side: checkpoints a CUDA run writes load on the CPU with
weights_only and restore every RNG stream; the rendezvous comes from the job; each task gets
exactly one GPU, and docker gets its physical index; SyncBatchNorm is chosen as documented.
What needs a real GPU is in test_gpu.py (marked gpu)."""
from __future__ import annotations

import os
import pickle
import random
import subprocess

import numpy as np
import pytest
import torch
from torch import nn

from conftest import REPO
from mrihpc import checkpoint
from mrihpc.distributed import World, rendezvous
from mrihpc.train import use_sync_batchnorm


def _draws() -> tuple:
    return torch.rand(3).tolist(), np.random.rand(3).tolist(), [random.random() for _ in range(3)]


def test_rng_states_round_trip_through_a_checkpoint_on_the_cpu(tmp_path):
    torch.manual_seed(1), np.random.seed(2), random.seed(3)
    np.random.randn()  # a cached Gaussian is part of numpy's state too
    state = checkpoint.rng_state()
    # the CUDA states a GPU run saves: byte tensors, which must come back as CPU tensors
    state["cuda"] = [torch.cuda.get_rng_state_all()[0] if torch.cuda.is_available() else torch.zeros(16, dtype=torch.uint8)]
    expected = _draws()
    checkpoint.save(tmp_path / "last.pt", {"rng_ranks": [state, state]})
    loaded = checkpoint.load(tmp_path / "last.pt")["rng_ranks"][1]
    tensors = [loaded["torch"], loaded["numpy"]["keys"], *loaded["cuda"]]
    assert all(t.device.type == "cpu" for t in tensors) and loaded["cuda"][0].dtype == torch.uint8
    checkpoint.set_rng_state(loaded)
    assert _draws() == expected


class Payload:
    def __reduce__(self):
        return (os.system, ("touch /tmp/mrihpc-pwned",))


def test_a_crafted_checkpoint_is_refused_not_run(tmp_path):
    path = tmp_path / "last.pt"
    torch.save({"nets": {}, "x": Payload()}, path)
    with pytest.raises(checkpoint.CheckpointError, match="refused: it holds objects other than tensors"):
        checkpoint.load(path)
    path.write_bytes(pickle.dumps(Payload()))
    with pytest.raises(checkpoint.CheckpointError, match=str(path)):
        checkpoint.load(path)
    assert not os.path.exists("/tmp/mrihpc-pwned")


def test_rendezvous_comes_from_the_job():
    assert rendezvous(["node7", "node8"], "4242_3")[1] == rendezvous(["node9"], "4242_3")[1]  # the port is the job's
    addr, port = rendezvous(["node7", "node8"], "4242_3")
    assert addr == "node7" and 20000 <= int(port) < 40000 and port != rendezvous(["node7"], "4242_4")[1]


def test_each_task_gets_exactly_one_gpu_in_the_golden_scripts():
    for path in (REPO / "tests" / "golden").glob("*.sbatch"):
        text = path.read_text()
        assert "--gpu-bind" not in text, path
        if "--gpus-per-node" in text:
            assert "--gpus-per-task=1" in text, path


def test_docker_gets_the_tasks_physical_gpu(tmp_path):
    """The enter script's GPU lines, run by bash with the variables Slurm sets for a task."""
    script = (REPO / "tests" / "golden" / "container_docker.sbatch").read_text().splitlines()
    lines = [line for line in script if "step_gpus" in line]
    assert len(lines) == 2
    probe = "\n".join(lines + ['echo "$visible"'])
    run = lambda env: subprocess.run(["bash", "-c", probe], capture_output=True, text=True,  # noqa: E731
                                      env={"PATH": os.environ["PATH"], **env}).stdout.strip()
    # cgroup-constrained: CUDA_VISIBLE_DEVICES is relative (0), the physical GPUs are 4 and 6
    assert run({"SLURM_STEP_GPUS": "4,6", "SLURM_LOCALID": "1", "CUDA_VISIBLE_DEVICES": "0"}) == "6"
    assert run({"SLURM_JOB_GPUS": "2,3", "SLURM_LOCALID": "0", "CUDA_VISIBLE_DEVICES": "0"}) == "2"
    assert run({"CUDA_VISIBLE_DEVICES": "5"}) == "5"  # outside Slurm


def test_sync_batchnorm_default_and_refusal_on_cpu():
    bn = {"model": nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2))}
    plain = {"model": nn.Conv2d(1, 2, 3)}
    two_gpus = World(rank=0, size=2, device=torch.device("cuda", 0))
    assert use_sync_batchnorm(None, two_gpus, bn) and not use_sync_batchnorm(None, two_gpus, plain)
    assert not use_sync_batchnorm(None, World(size=2), bn)  # gloo on the CPU: no SyncBatchNorm kernel
    assert not use_sync_batchnorm(False, two_gpus, bn)
    assert not use_sync_batchnorm(None, World(size=1, device=torch.device("cuda", 0)), bn)
    with pytest.raises(ValueError, match="train.sync_batchnorm: true needs GPUs"):
        use_sync_batchnorm(True, World(size=2), bn)
