"""Every registered workload, by the registry alone: its descriptor resolves (task, prediction
writer, losses, synthetic twin), and its shipped demo spec, made tiny, trains a step through the
Trainer, validates and predicts through load_trained. A workload registered without a demo
fails here until it ships one."""

from __future__ import annotations

import inspect

import pytest
import yaml

from conftest import REPO
from mrihpc import workloads
from mrihpc.login.cli import main
from mrihpc.node.task import Task
from mrihpc.paths import RunPaths, read_jsonl

#: task -> (its demo spec, the data.synthetic sizes that make it tiny)
DEMOS = {
    "reconstruction": (
        "quickstart.yaml",
        {"volumes": 4, "slices": 3, "shape": [48, 40], "recon_shape": [32, 32]},
    ),
    "knee_gan": (
        "knee_gan_demo.yaml",
        {"volumes": 4, "slices": 3, "shape": [48, 40], "recon_shape": [32, 32]},
    ),
    "segmentation": ("acdc_demo.yaml", {"train": 4, "val": 2, "test": 2, "size": 32}),
    "cine": ("cine_demo.yaml", {"cases": 10, "frames": 7, "size": 64}),
    "synthesis": ("ixi_pix2pix_demo.yaml", {"subjects": 12, "incomplete": 1, "size": 64}),
    "sinogram": (
        "sino_denoise_demo.yaml",
        {
            "train_files": 2,
            "val_files": 1,
            "test_files": 1,
            "tof": 1,
            "slices": 4,
            "angles": 8,
            "bins": 16,
        },
    ),
}


def test_every_registered_workload_has_a_demo_here():
    assert set(DEMOS) == set(workloads.names())


@pytest.mark.parametrize("name", workloads.names())
def test_the_descriptor_resolves(name):
    w = workloads.get(name)
    assert w.name == name and issubclass(workloads.resolve(w.task), Task)
    assert list(inspect.signature(workloads.resolve(w.predict)).parameters)[:2] == [
        "trained",
        "split",
    ]
    assert all(callable(workloads.resolve(f)) for f in w.losses.values())
    assert w.default_metric in w.metrics and set(w.metrics.values()) <= {"max", "min"}
    assert set(w.default_loss) <= set(w.losses)
    for hook in (w.check_data, w.prepare_data, w.check_spec, w.optimizers_of):
        assert hook is None or callable(workloads.resolve(hook))
    if w.synth is not None:
        assert isinstance(workloads.resolve(w.synth), workloads.SynthTwin)


@pytest.mark.parametrize("name", workloads.names())
def test_the_demo_trains_a_step_validates_and_predicts(name, tmp_path, capsys):
    demo, tiny = DEMOS[name]
    spec = yaml.safe_load((REPO / "jobs" / demo).read_text())
    assert spec["task"] == name
    spec["data"]["synthetic"] |= tiny
    for key in ("skip_slices", "epoch_size", "val_samples"):  # sizes of the demo's data
        if key in spec["data"]:
            spec["data"][key] = {"skip_slices": 0, "epoch_size": 8, "val_samples": 4}[key]
    spec["train"] |= {"epochs": 1, "steps_per_epoch": 1, "batch_size": 2, "threads": 1}
    spec.pop("sweep", None)
    spec.pop("monitor", None)
    path = tmp_path / demo
    path.write_text(yaml.safe_dump(spec))
    assert main(["run", str(path), "--point", "0", "--runs", str(tmp_path / "runs")]) == 0
    run = RunPaths(next((tmp_path / "runs").glob("*/*")))
    (epoch,) = [r for r in read_jsonl(run.point(0).metrics, dict) if r.get("kind") == "epoch"]
    metric = f"val_{spec['train'].get('metric') or workloads.get(name).default_metric}"
    assert (
        epoch["train_loss"] == epoch["train_loss"]
        and epoch[metric] == epoch[metric]
        and epoch["val_volumes"] >= 1
    )
    capsys.readouterr()
    assert main(["predict", str(run.root), "--point", "0", "--split", "val", "--here"]) == 0
    written = capsys.readouterr().out.splitlines()
    assert written and all(str(run.point(0).predictions / "val") in f for f in written)
