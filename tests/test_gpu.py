"""GPU tests: run with `pytest -m gpu` on a machine with a CUDA GPU; skipped elsewhere (CI has
none). They exercise what the CPU suite cannot: resume of a CUDA run, bf16 / fp16 steps, NCCL,
the distinct-GPU check and CUDA memory samples."""

from __future__ import annotations

import os

import pytest
import torch

from conftest import TINY, merge, stop_after
from mrihpc.node import checkpoint
from mrihpc.node.distributed import World, check_distinct_gpus
from mrihpc.node.monitors.memory import MemoryProfile
from mrihpc.node.preemption import Interrupted
from mrihpc.specfile import validate_dict
from mrihpc.node.train import Trainer
from mrihpc.workloads.knee.task import ReconstructionTask

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]
CUDA = World(device=torch.device("cuda", 0))


class Quiet:
    def log(self, metrics, step):
        pass


def _train(spec: dict, folder, epochs: int, stop_after_steps=-1, monitors=None) -> Trainer:
    job = validate_dict(merge(spec, train={**spec["train"], "epochs": epochs}), "gpu")
    steps = []

    class Counting(ReconstructionTask):
        def train_step(self, batch, nets, ctx):
            steps.append(1)
            return super().train_step(batch, nets, ctx)

    trainer = Trainer(
        job,
        Counting(job, CUDA),
        CUDA,
        folder,
        monitors or Quiet(),
        signals=stop_after(stop_after_steps, lambda: len(steps)),
    )
    try:
        trainer.fit()
    except Interrupted:
        pass
    return trainer


def _weights(trainer: Trainer) -> dict:
    return {k: v.detach().cpu().clone() for k, v in trainer.nets["model"].state_dict().items()}


def test_resume_on_cuda_after_a_requeue_is_bit_exact(tmp_path):
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    spec = merge(
        TINY, model={**TINY["model"], "dropout": 0.1}, train={**TINY["train"], "precision": "fp32"}
    )
    straight = _weights(_train(spec, tmp_path / "a", 3))
    _train(
        spec, tmp_path / "b", 3, stop_after_steps=5
    )  # "requeued" mid-epoch 2 (a step-boundary checkpoint)
    saved = checkpoint.load(tmp_path / "b" / "last.pt")  # loadable on the CPU with weights_only
    assert all(t.device.type == "cpu" for t in saved["rng_ranks"][0]["cuda"])
    resumed = _weights(_train(spec, tmp_path / "b", 3))
    for key, value in straight.items():
        assert torch.equal(value, resumed[key]), key


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_steps_train_and_the_scaler_updates_once_per_iteration(tmp_path, precision):
    spec = merge(TINY, train={**TINY["train"], "precision": precision, "steps_per_epoch": 6})
    trainer = _train(spec, tmp_path, 1)
    assert trainer.amp_dtype == {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    assert all(torch.isfinite(p).all() for p in trainer.nets["model"].parameters())
    if precision == "fp16":  # growth tracker counts successful iterations since the last change
        assert trainer.scaler.is_enabled() and trainer.scaler._get_growth_tracker() in (6, 0)


def test_nccl_with_one_gpu_and_the_distinct_gpu_check(monkeypatch):
    import torch.distributed as dist

    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", "29611")
    torch.cuda.set_device(0)
    dist.init_process_group("nccl", rank=0, world_size=1)
    try:
        t = torch.ones(4, device="cuda")
        dist.all_reduce(t)
        assert t.tolist() == [1.0] * 4
        check_distinct_gpus(1)
    finally:
        dist.destroy_process_group()


def test_cuda_memory_reaches_memory_dat(tmp_path):
    profile = MemoryProfile(tmp_path / "memory.dat", 0.1, CUDA.device)
    _train(TINY, tmp_path / "ckpt", 1, monitors=profile)
    profile.close()
    lines = [
        line
        for line in (tmp_path / "memory.dat").read_text().splitlines()
        if line.startswith("CUDA ")
    ]
    assert lines and max(float(line.split()[3]) for line in lines) > 0
    assert os.path.getsize(tmp_path / "memory.dat") > 0


def test_fp16_gan_step_updates_the_scaler_once_per_iteration(tmp_path):
    from test_gan import SPECS, TRAIN

    from mrihpc import workloads

    spec = validate_dict(
        merge(SPECS["cgan"], train={**TRAIN, "precision": "fp16", "steps_per_epoch": 6}), "gpu"
    )
    trainer = Trainer(
        spec, workloads.resolve(workloads.get(spec.task).task)(spec, CUDA), CUDA, tmp_path, Quiet()
    )
    trainer.fit()
    # two optimisers step per iteration; the growth tracker counts iterations, so 6 (or 0 after a
    # backoff)
    assert trainer.scaler.is_enabled() and trainer.scaler._get_growth_tracker() in (6, 0)


def test_the_device_transform_on_cuda_equals_the_host_path():
    """data.transform_on: device on a GPU: cuFFT's batched zero-filled inputs against the host's
    per-slice ones (PocketFFT), on the same raw k-space and masks."""
    from mrihpc.workloads.knee.kspace.masks import RandomMask
    from mrihpc.workloads.knee.kspace.slices import KSpaceSlices, collate_raw, finish_batch
    from mrihpc.node.task import to_device
    from mrihpc.workloads.knee.files import split_files, volumes_of

    job = validate_dict(merge(TINY, data={**TINY["data"], "normalize": "instance"}), "gpu")
    train_files, _ = split_files(job.data)
    volumes = volumes_of(train_files, job.data)
    args = (volumes, RandomMask([4], [0.08]), (64, 64), "instance", 0, True, 0)
    host, raw = KSpaceSlices(*args), KSpaceSlices(*args, raw=True)
    picks = list(range(0, len(host), max(1, len(host) // 8)))
    batch = {k: to_device(v, CUDA.device) for k, v in collate_raw([raw[i] for i in picks]).items()}
    done = finish_batch(batch, "instance")
    want = torch.stack([host[i]["input"] for i in picks])
    assert torch.allclose(done["input"].cpu(), want, atol=1e-4)
