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
from mrihpc.node import checkpoint
from mrihpc.node.distributed import World, rendezvous
from mrihpc.node.train import use_sync_batchnorm


def _draws() -> tuple:
    return torch.rand(3).tolist(), np.random.rand(3).tolist(), [random.random() for _ in range(3)]


def test_rng_states_round_trip_through_a_checkpoint_on_the_cpu(tmp_path):
    torch.manual_seed(1), np.random.seed(2), random.seed(3)
    np.random.randn()  # a cached Gaussian is part of numpy's state too
    state = checkpoint.rng_state()
    # the CUDA states a GPU run saves: byte tensors, which must come back as CPU tensors
    state["cuda"] = [
        torch.cuda.get_rng_state_all()[0]
        if torch.cuda.is_available()
        else torch.zeros(16, dtype=torch.uint8)
    ]
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
    with pytest.raises(
        checkpoint.CheckpointError, match="refused: it holds objects other than tensors"
    ):
        checkpoint.load(path)
    path.write_bytes(pickle.dumps(Payload()))
    with pytest.raises(checkpoint.CheckpointError, match=str(path)):
        checkpoint.load(path)
    assert not os.path.exists("/tmp/mrihpc-pwned")


def test_rendezvous_comes_from_the_job():
    assert (
        rendezvous(["node7", "node8"], "4242_3")[1] == rendezvous(["node9"], "4242_3")[1]
    )  # the port is the job's
    addr, port = rendezvous(["node7", "node8"], "4242_3")
    assert (
        addr == "node7"
        and 20000 <= int(port) < 32768  # below the ephemeral ports
        and port != rendezvous(["node7"], "4242_4")[1]
    )


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

    def run(env: dict) -> str:
        return subprocess.run(
            ["bash", "-c", probe],
            capture_output=True,
            text=True,
            env={"PATH": os.environ["PATH"], **env},
        ).stdout.strip()

    # cgroup-constrained: CUDA_VISIBLE_DEVICES is relative (0), the physical GPUs are 4 and 6
    assert run({"SLURM_STEP_GPUS": "4,6", "SLURM_LOCALID": "1", "CUDA_VISIBLE_DEVICES": "0"}) == "6"
    assert run({"SLURM_JOB_GPUS": "2,3", "SLURM_LOCALID": "0", "CUDA_VISIBLE_DEVICES": "0"}) == "2"
    assert run({"CUDA_VISIBLE_DEVICES": "5"}) == "5"  # outside Slurm


def test_sync_batchnorm_default_and_refusal_on_cpu():
    bn = {"model": nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2))}
    plain = {"model": nn.Conv2d(1, 2, 3)}
    two_gpus = World(rank=0, size=2, device=torch.device("cuda", 0))
    assert use_sync_batchnorm(None, two_gpus, bn) and not use_sync_batchnorm(None, two_gpus, plain)
    assert not use_sync_batchnorm(
        None, World(size=2), bn
    )  # gloo on the CPU: no SyncBatchNorm kernel
    assert not use_sync_batchnorm(False, two_gpus, bn)
    assert not use_sync_batchnorm(None, World(size=1, device=torch.device("cuda", 0)), bn)
    with pytest.raises(ValueError, match="train.sync_batchnorm: true needs GPUs"):
        use_sync_batchnorm(True, World(size=2), bn)


def test_predict_refuses_a_crafted_checkpoint_with_a_message(tmp_path, capsys):
    import json

    import yaml

    from mrihpc.login.cli import main
    from mrihpc.paths import RunPaths

    run = RunPaths(tmp_path / "run")
    point = run.point(0)
    point.checkpoints.mkdir(parents=True)
    run.manifest.write_text(json.dumps({"points": [{"index": 0, "name": "p"}], "submissions": []}))
    point.config.write_text(
        yaml.safe_dump(
            {
                "name": "p",
                "task": "segmentation",
                "data": {"synthetic": {"train": 2, "val": 1, "test": 1, "size": 32}},
            }
        )
    )
    torch.save({"nets": {"model": Payload()}}, point.best_checkpoint)
    assert main(["predict", str(run.root), "--point", "0"]) == 2
    err = capsys.readouterr().err
    assert f"mrihpc predict: {point.best_checkpoint}: refused" in err and "Traceback" not in err
    assert not os.path.exists("/tmp/mrihpc-pwned")


class _Slow(torch.utils.data.Dataset):
    def __len__(self):
        return 12

    def __getitem__(self, i):
        import time

        time.sleep(0.02)
        return i


def test_dataloader_workers_leave_the_steps_signals_to_the_training_process():
    """TERM and USR2 sent to the workers at once after they are forked (before their init ran)
    and again mid-epoch: the epoch still yields every sample."""
    import signal

    from torch.utils.data import DataLoader

    from mrihpc.node.loading import Workers, leave_signals_to_parent

    loader = DataLoader(
        _Slow(), batch_size=2, num_workers=2, worker_init_fn=leave_signals_to_parent
    )
    it = iter(Workers(loader, batch_size=2))
    pids = [w.pid for w in it._workers]
    for pid in pids:
        os.kill(pid, signal.SIGTERM)
        os.kill(pid, signal.SIGUSR2)
    seen = [next(it)]
    for pid in pids:
        os.kill(pid, signal.SIGTERM)
    seen += list(it)
    assert sorted(int(i) for batch in seen for i in batch) == list(range(12))
