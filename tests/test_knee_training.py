"""The knee workload end to end on CPU: metrics, model, schedule, trainer, resume, predictions."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import torch
import yaml

from conftest import TINY, merge, stop_after
from mrihpc.node.distributed import World
from mrihpc.models.unet import build_unet
from mrihpc.login.cli import main
from mrihpc.paths import read_json, read_jsonl
from mrihpc.paths import RunPaths
from mrihpc.node.trained import load_trained
from mrihpc.workloads.knee.predict import predict
from mrihpc.node.preemption import Interrupted
from mrihpc.node.runner import run_point
from mrihpc.spec import ModelSpec
from mrihpc.specfile import validate_dict
from mrihpc.workloads.knee.task import ReconstructionTask
from mrihpc.node.train import Trainer


def test_unet_presets():
    fastmri = build_unet(ModelSpec(preset="fastmri"))
    assert sum(p.numel() for p in fastmri.parameters()) == 7_756_097
    seed = build_unet(ModelSpec(preset="nc2019", depth=2, channels=8))
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in seed.modules())
    for net in (fastmri, seed):
        assert net(torch.randn(2, 1, 37, 53)).shape == (2, 1, 37, 53)  # odd sizes are padded back


def _point(tmp_path, spec: dict, index: int = 0) -> RunPaths:
    run = RunPaths(tmp_path / "run")
    (run.point(index).root).mkdir(parents=True, exist_ok=True)
    run.point(index).config.write_text(yaml.safe_dump(spec))
    return run


@pytest.mark.parametrize("acc,fraction", [(4, 0.08), (8, 0.04)])
def test_training_beats_zero_filled(tmp_path, acc, fraction):
    spec = merge(
        TINY,
        model={"name": "unet", "channels": 16, "depth": 2, "residual": True},
        train={**TINY["train"], "epochs": 6},
        data={**TINY["data"], "mask": {"accelerations": [acc], "center_fractions": [fraction]}},
    )
    run = _point(tmp_path, spec)
    final = run_point(run.root, 0)
    assert final["val_ssim"] > final["val_zf_ssim"] + 0.03, final
    assert final["val_psnr"] > final["val_zf_psnr"] + 0.5, final
    assert (
        0 < final["val_seed_ssim"] < 1 and final["val_seed_ssim"] != final["val_ssim"]
    )  # seed 000's definition too
    assert (run.point(0).checkpoints / "best.pt").is_file() and (
        run.point(0).checkpoints / "last.pt"
    ).is_file()
    epochs = [r for r in read_jsonl(run.point(0).metrics) if r["kind"] == "epoch"]
    assert [r["epoch"] for r in epochs] == list(range(6))


class RecordingTask(ReconstructionTask):
    """The real knee task, recording the learning rate used at every step."""

    lrs: list[float] = []

    def train_step(self, batch, nets, ctx):
        type(self).lrs.append(ctx.lr())
        return super().train_step(batch, nets, ctx)


class NullMonitors:
    def log(self, metrics, step):
        pass


def _train(spec: dict, folder, epochs: int, stop_after_steps: int = -1) -> tuple[dict, list[float]]:
    job = validate_dict(merge(spec, train={**spec["train"], "epochs": epochs}), "test")
    RecordingTask.lrs = []
    stop = stop_after(stop_after_steps, lambda: len(RecordingTask.lrs))  # a signal after N steps
    trainer = Trainer(
        job, RecordingTask(job, World()), World(), folder, NullMonitors(), signals=stop
    )
    try:
        trainer.fit()
    except Interrupted:
        pass
    return {k: v.clone() for k, v in trainer.nets["model"].state_dict().items()}, list(
        RecordingTask.lrs
    )


def test_resume_gives_identical_weights_and_lr_sequence(tmp_path):
    spec = merge(
        TINY,
        model={**TINY["model"], "dropout": 0.1},  # dropout: the RNG state must resume too
        schedule={"warmup_epochs": 1, "restart_epochs": 1, "restart_mult": 2},
    )
    straight, lrs_straight = _train(spec, tmp_path / "a", 4)
    _, lrs_first = _train(spec, tmp_path / "b", 2)
    resumed, lrs_second = _train(
        spec, tmp_path / "b", 4
    )  # a new process would do the same: read last.pt
    assert lrs_first + lrs_second == lrs_straight
    assert len(set(lrs_straight)) > 3  # warm-up and restarts really changed the LR
    for key, value in straight.items():
        assert torch.equal(value, resumed[key]), key


def test_constant_schedule_keeps_the_lr_after_its_warm_up_and_resumes(tmp_path):
    """kind constant (seeds 000, 002, 004 used no schedule): after a one-epoch warm-up from 1e-2 x
    lr every step has exactly lr, also across a resume (TINY's restart_mult 2 stays and does not
    apply)."""
    spec = merge(
        TINY, schedule={"kind": "constant", "warmup_epochs": 1, "warmup_start_factor": 0.01}
    )
    _, lrs = _train(spec, tmp_path / "a", 3)
    per_epoch, lr = len(lrs) // 3, TINY["optim"]["lr"]
    assert lrs[0] == pytest.approx(0.01 * lr) and lrs[0] < lrs[per_epoch - 1] < lr
    assert lrs[per_epoch:] == pytest.approx([lr] * 2 * per_epoch) and len(lrs) == 3 * per_epoch
    _, first = _train(spec, tmp_path / "b", 2)
    _, second = _train(spec, tmp_path / "b", 3)
    assert first + second == lrs


def test_stop_inside_an_epoch_resumes_from_that_step(tmp_path):
    spec = merge(TINY, model={**TINY["model"], "dropout": 0.1})
    straight, lrs_straight = _train(spec, tmp_path / "a", 2)
    steps_per_epoch = len(lrs_straight) // 2
    _, lrs_first = _train(
        spec, tmp_path / "b", 2, stop_after_steps=steps_per_epoch + 3
    )  # 3 steps into epoch 2
    assert len(lrs_first) == steps_per_epoch + 3
    resumed, lrs_second = _train(spec, tmp_path / "b", 2)
    assert lrs_first + lrs_second == lrs_straight  # no step repeated, none skipped
    for key, value in straight.items():
        assert torch.equal(value, resumed[key]), key


class EpochEcho(torch.utils.data.Dataset):
    """Each item is the epoch its process's copy of the dataset was last told."""

    epoch = -1

    def set_epoch(self, epoch):
        self.epoch = epoch

    def __len__(self):
        return 12

    def __getitem__(self, i):
        return self.epoch


def test_persistent_workers_see_every_epoch():
    """The Trainer's loaders keep their workers across epochs; the epoch travels with each index
    (EpochIndexed), so workers forked in epoch 0 draw epoch 2's masks in epoch 2."""
    from torch.utils.data import DataLoader

    from mrihpc.node.loading import EpochIndexed, ShuffledShard

    sampler = ShuffledShard(12, 0, World())
    loader = DataLoader(
        EpochIndexed(EpochEcho()),
        batch_size=3,
        sampler=sampler,
        num_workers=2,
        persistent_workers=True,
    )
    pids = set()
    for epoch in range(3):
        sampler.set_epoch(epoch)
        seen = torch.cat(list(loader)).tolist()
        assert seen == [epoch] * 12
        pids.add(tuple(w.pid for w in loader._iterator._workers))
    assert len(pids) == 1  # the same two workers all along


def test_two_persistent_workers_train_as_no_workers_across_a_stop_and_resume(tmp_path):
    """2 workers (persistent, stopped inside epoch 2 and resumed) end with the weights of an
    uninterrupted run without workers: same samples, same masks, epoch by epoch."""
    spec = merge(TINY, model={**TINY["model"], "dropout": 0.1})
    straight, lrs = _train(spec, tmp_path / "a", 3)
    workers = merge(spec, train={**spec["train"], "workers": 2})
    _train(workers, tmp_path / "b", 3, stop_after_steps=len(lrs) // 3 + 2)
    resumed, _ = _train(workers, tmp_path / "b", 3)
    for key, value in straight.items():
        assert torch.equal(value, resumed[key]), key


def test_memory_profile_is_read_by_mprof_and_peak_reaches_status(tmp_path):
    from mprof import read_mprofile_file

    run = _point(tmp_path, merge(TINY, monitor={"memory": {"interval_s": 0.1}}))
    run_point(run.root, 0)
    profile = read_mprofile_file(str(run.point(0).memory))
    assert (
        len(profile["mem_usage"]) >= 3 and min(profile["mem_usage"]) > 10
    )  # MiB of a torch process
    assert profile["timestamp"] == sorted(profile["timestamp"])
    peak = json.loads(run.point(0).status.read_text())["latest"]["mem_host_peak_mib"]
    assert abs(peak - max(profile["mem_usage"])) < 50
    epochs = [r for r in read_jsonl(run.point(0).metrics) if r["kind"] == "epoch"]
    assert all(r["mem_host_peak_mib"] > 0 for r in epochs)


def test_predictions_in_fastmri_layout(tmp_path):
    run = _point(tmp_path, merge(TINY, train={**TINY["train"], "epochs": 1}))
    run_point(run.root, 0)
    files = predict(load_trained(run.root, 0), "val")
    assert files
    with h5py.File(files[0]) as f:
        rec = f["reconstruction"]
        assert rec.dtype == np.float32 and rec.shape == (10, 64, 64)  # every slice, recon size
    assert (files[0].parent / f"{files[0].stem}_reconstruction.png").is_file()


def test_cpu_prediction_batches_small_slices_and_passes_large_ones_one_by_one(tmp_path):
    """On the CPU a forward pass takes at most CPU_PASS_VALUES input values (batching large
    slices there is slower: trained.py's figures); a batch asked for is kept; a GPU takes the
    training batch. Every way writes the same volumes."""
    import dataclasses

    from mrihpc.node.trained import CPU_PASS_VALUES

    run = _point(tmp_path, merge(TINY, train={**TINY["train"], "epochs": 1, "batch_size": 8}))
    run_point(run.root, 0)
    default = load_trained(run.root, 0)
    assert CPU_PASS_VALUES // (64 * 64) >= 8 and default.batch_for((1, 64, 64)) == 8
    assert default.batch_for((1, 128, 128)) == CPU_PASS_VALUES // (128 * 128)
    assert default.batch_for((1, 320, 320)) == 1 and default.batch_for((2, 20, 96, 96)) == 1
    assert load_trained(run.root, 0, batch_size=4).batch_for((1, 320, 320)) == 4
    # no GPU here: batch_for reads only the device's type, so a CUDA device object stands in
    gpu = dataclasses.replace(default, device=torch.device("cuda", 0))
    assert gpu.batch_for((1, 320, 320)) == 8
    assert list(default.batches(0, lambda: pytest.fail("no sample to read"))) == []
    assert [list(r) for r in default.batches(10, lambda: torch.zeros(1, 128, 128))] == [
        [0, 1],
        [2, 3],
        [4, 5],
        [6, 7],
        [8, 9],
    ]
    volumes = {}
    for trained in (default, load_trained(run.root, 0, batch_size=1)):
        for file in predict(trained, "val"):
            with h5py.File(file) as f:
                volumes[trained.batch_fixed, file.name] = f["reconstruction"][()]
            file.unlink()
    names = {name for _, name in volumes}
    assert names and len(volumes) == 2 * len(names)
    for name in names:
        np.testing.assert_allclose(volumes[False, name], volumes[True, name], rtol=0, atol=1e-5)


def test_predictions_for_coursework_test_layout(tmp_path):
    spec = merge(
        TINY, data={**TINY["data"], "format": "nc2019"}, train={**TINY["train"], "epochs": 1}
    )
    run = _point(tmp_path, spec)
    run_point(run.root, 0)
    files = predict(load_trained(run.root, 0), "test")
    with h5py.File(files[0]) as f:
        assert sorted(f.keys()) == ["reconstruction_4af", "reconstruction_8af"]
        assert f["reconstruction_8af"].shape == (10, 64, 64)


def test_transform_on_device_trains_as_the_host_path(tmp_path):
    """The same point with data.transform_on host and device (its workers only read k-space; the
    batched transform runs in the training process, here on the CPU): the same losses and scores."""
    finals = {}
    for where, workers in (("host", 0), ("device", 1)):
        spec = merge(
            TINY,
            data={**TINY["data"], "transform_on": where},
            train={**TINY["train"], "workers": workers},
        )
        run = _point(tmp_path / where, spec)
        finals[where] = run_point(run.root, 0)
    host, device = finals["host"], finals["device"]
    for key in ("val_zf_ssim", "val_zf_psnr", "val_zf_nmse"):  # the inputs themselves: equal
        assert abs(host[key] - device[key]) <= 1e-5 * abs(host[key]), (key, host[key], device[key])
    for key in (
        "train_loss",
        "val_loss",
        "val_ssim",
        "val_psnr",
    ):  # float rounding, grown by 28 Adam steps
        assert abs(host[key] - device[key]) <= 1e-2 * abs(host[key]), (key, host[key], device[key])


def test_a_test_folder_with_references_is_scored_once_with_best_and_last(tmp_path, capsys):
    """test/ holding fully sampled files with references: scored when training ends (test_* with
    best.pt, test_last_* with last.pt), never during it; results shows the columns."""
    import shutil

    from mrihpc.workloads.knee.kspace.synth import generate

    root = generate(tmp_path / "data", 5, slices=8, shape=(96, 80), recon_shape=(64, 64), seed=3)
    shutil.copytree(root / "val", root / "test")
    data = {k: v for k, v in TINY["data"].items() if k != "synthetic"} | {"root": str(root)}
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({**TINY, "data": data}))
    assert main(["submit", str(spec), "--runs", str(tmp_path / "runs")]) == 0
    run = RunPaths(next((tmp_path / "runs" / "tiny").iterdir()))
    records = read_jsonl(run.point(0).metrics)
    test = [r for r in records if r.get("kind") == "test"]
    assert len(test) == 1 and records.index(test[0]) > max(
        i for i, r in enumerate(records) if r.get("kind") == "epoch"
    )
    epochs = [r for r in records if r.get("kind") == "epoch"]
    best = max(epochs, key=lambda r: r["val_ssim"])
    # test/ is a copy of val/: best.pt scores there what it scored on validation; last.pt the last
    # epoch's
    assert test[0]["test_ssim"] == pytest.approx(best["val_ssim"], abs=1e-6)
    assert test[0]["test_last_ssim"] == pytest.approx(epochs[-1]["val_ssim"], abs=1e-6)
    assert read_json(run.point(0).status)["test"]["test_ssim"] == test[0]["test_ssim"]
    capsys.readouterr()
    assert main(["results", str(run.root), "--csv"]) == 0
    assert {"test_ssim", "test_last_ssim"} <= set(
        capsys.readouterr().out.splitlines()[0].split(",")
    )
