"""A seventh workload (tests/blobs/: spec, task, prediction writer) joins with its registry line
alone: it validates, trains through the Trainer (steps, validation, test scores), predicts
through load_trained and shows in `results`, and no central module names it."""

from __future__ import annotations

import io
import re
import tokenize

import numpy as np
import pytest
import yaml

from conftest import REPO
from mrihpc import workloads
from mrihpc.login.cli import main
from mrihpc.paths import RunPaths, read_jsonl


def _blobs(folder, n: int, size: int = 32, seed: int = 0) -> None:
    """``n`` images of Gaussian blobs ``(size, size)`` in [0, 1] as .npy files in ``folder``."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    for i in range(n):
        image = np.zeros((size, size))
        for _ in range(3):
            cy, cx, r = rng.uniform(6, size - 6, 2).tolist() + [rng.uniform(2, 5)]
            image += np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))
        np.save(folder / f"blob{i:03d}.npy", (image / image.max()).astype(np.float32))


@pytest.fixture
def blobs_registered(monkeypatch):
    """The workload's one registry line, as a user adds it to mrihpc/workloads/__init__.py."""
    monkeypatch.setitem(workloads.WORKLOADS, "blobs", "blobs.spec:WORKLOAD")


def test_a_seventh_workload_needs_only_its_registry_line(blobs_registered, tmp_path, capsys):
    for split, n in (("train", 8), ("val", 3), ("test", 2)):
        _blobs(tmp_path / "data" / split, n, seed=len(split))
    spec = {
        "name": "blobs",
        "task": "blobs",
        "data": {"root": str(tmp_path / "data"), "noise": 0.2},
        "model": {"channels": 8, "depth": 2, "residual": True},
        "optim": {"lr": 3e-3},
        "train": {"epochs": 3, "batch_size": 2, "workers": 0, "seed": 0},
        "cluster": {"executor": "local"},
    }
    path = tmp_path / "blobs.yaml"
    path.write_text(yaml.safe_dump(spec))
    assert main(["validate", str(path), "--params"]) == 0
    assert re.search(
        r"parameters, point 0 \(blobs\): model \d[\d,]*", capsys.readouterr().out
    )  # its network's count
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**spec, "loss": {"dice": 1.0}}))
    assert main(["validate", str(bad)]) != 0
    assert "loss.dice: not a loss of task blobs; allowed: mse, l1" in capsys.readouterr().err

    assert main(["run", str(path), "--point", "0", "--runs", str(tmp_path / "runs")]) == 0
    run = RunPaths(next((tmp_path / "runs" / "blobs").iterdir()))
    records = read_jsonl(run.point(0).metrics, dict)
    epochs = [r for r in records if r.get("kind") == "epoch"]
    assert len(epochs) == 3 and all(
        r["val_volumes"] == 3 for r in epochs
    )  # three images, each scored once
    assert {"val_psnr", "val_ssim", "val_nmse", "val_loss"} <= set(epochs[-1])
    test = next(r for r in records if r.get("kind") == "test")
    assert test["test_volumes"] == 2 and "test_last_psnr" in test

    capsys.readouterr()
    assert main(["predict", str(run.root), "--point", "0", "--split", "test", "--here"]) == 0
    written = sorted((run.point(0).predictions / "test").glob("*_denoised.npy"))
    assert [p.name for p in written] == ["blob000_denoised.npy", "blob001_denoised.npy"]
    assert np.load(written[0]).shape == (32, 32)
    assert main(["results", str(run.root), "--csv"]) == 0
    assert "best_psnr" in capsys.readouterr().out


def _code_words(path) -> list[str]:
    """The names and non-doc strings of a Python file, lower case (comments and docstrings are
    prose, and may mention a workload as an example)."""
    tokens = tokenize.generate_tokens(io.StringIO(path.read_text()).readline)
    return [
        t.string.lower()
        for t in tokens
        if t.type == tokenize.NAME
        or t.type == tokenize.STRING
        and not t.string.startswith(('"""', "'''"))
    ]


def test_no_central_module_names_a_workload():
    """The core (node/, login/, the shared spec modules) reaches every workload through the
    registry: no workload's name (nor its data's) in its code."""
    names = (set(workloads.WORKLOADS) - {"reconstruction"}) | {"knee", "acdc", "ixi", "sinogram"}
    package = REPO / "mrihpc"
    central = [
        p for p in package.rglob("*.py") if p.relative_to(package).parts[0] in ("node", "login")
    ]
    central += [
        package / f"{name}.py" for name in ("spec", "spec_cluster", "specfile", "section", "sweep")
    ]
    assert len(central) > 40
    found = [
        f"{path.relative_to(REPO)}: {word}"
        for path in central
        for word in _code_words(path)
        if any(name in word for name in names)
    ]
    assert not found, "\n".join(found)


def test_a_validation_set_without_volumes_is_refused_by_name(blobs_registered, tmp_path):
    """The Trainer checks a workload's sets against node/datasets.py's protocols: a validation
    set that cannot say which items form a volume is a TypeError naming the task, at start."""
    from mrihpc.node.distributed import World
    from mrihpc.node.train import Trainer
    from mrihpc.specfile import validate_dict

    from blobs.task import BlobsTask

    _blobs(tmp_path / "data" / "train", 4)
    _blobs(tmp_path / "data" / "val", 2)

    class Unscored(BlobsTask):
        def datasets(self):
            train, val = super().datasets()
            return train, [val[i] for i in range(len(val))]  # items, no volumes_index

    spec = validate_dict(
        {
            "name": "blobs",
            "task": "blobs",
            "data": {"root": str(tmp_path / "data")},
            "model": {"channels": 4, "depth": 1},
            "train": {"epochs": 1, "batch_size": 2},
        },
        "spec",
    )
    with pytest.raises(
        TypeError, match="the val set of task blobs \\(list\\) has no volumes_index"
    ):
        Trainer(spec, Unscored(spec, World()), World(), tmp_path / "ckpt", None)


def _blobs_spec(tmp_path):
    from mrihpc.specfile import validate_dict

    _blobs(tmp_path / "data" / "train", 4)
    _blobs(tmp_path / "data" / "val", 2)
    return validate_dict(
        {
            "name": "blobs",
            "task": "blobs",
            "data": {"root": str(tmp_path / "data")},
            "model": {"channels": 4, "depth": 1},
            "train": {"epochs": 1, "batch_size": 2},
        },
        "spec",
    )


def test_the_descriptor_declares_its_datasets_protocols(blobs_registered, tmp_path, monkeypatch):
    """The descriptor's ``datasets`` is the one declaration of what its sets are: the Trainer
    refuses at start a set that lacks a declared protocol and one that offers a protocol it would
    use without the declaration (set_epoch on a training set), each naming the set and the fix."""
    import dataclasses

    from mrihpc.node.datasets import PROTOCOLS
    from mrihpc.node.distributed import World
    from mrihpc.node.train import Trainer

    from blobs import spec as blobs_spec
    from blobs.task import BlobsTask

    assert set(PROTOCOLS) == set(workloads.DATASET_TRAITS)
    spec = _blobs_spec(tmp_path)
    declared = blobs_spec.WORKLOAD.datasets
    assert declared.train == ("epoch_dependent",)
    Trainer(spec, BlobsTask(spec, World()), World(), tmp_path / "ok", None)  # as declared

    undeclared = dataclasses.replace(blobs_spec.WORKLOAD, datasets=workloads.Datasets())
    monkeypatch.setattr(blobs_spec, "WORKLOAD", undeclared)
    with pytest.raises(
        TypeError,
        match=r"the train set of task blobs \(NoisyImages\) offers set_epoch\(epoch\) but its "
        r"workload's datasets do not declare epoch_dependent",
    ):
        Trainer(spec, BlobsTask(spec, World()), World(), tmp_path / "a", None)

    slotted = workloads.Datasets(train=("epoch_dependent", "slotted"))
    monkeypatch.setattr(blobs_spec, "WORKLOAD", dataclasses.replace(undeclared, datasets=slotted))
    with pytest.raises(
        TypeError,
        match=r"the train set of task blobs \(NoisyImages\) lacks slot_shapes\(\), declared in "
        r"its workload's datasets as slotted",
    ):
        Trainer(spec, BlobsTask(spec, World()), World(), tmp_path / "b", None)


def test_a_protocol_declared_for_sets_that_never_use_it_is_refused():
    with pytest.raises(ValueError, match="Datasets.train: scored not a protocol of train sets"):
        workloads.Datasets(train=("scored",))
    with pytest.raises(ValueError, match="Datasets.scored: epoch_dependent not a protocol"):
        workloads.Datasets(scored=("scored", "epoch_dependent"))
    with pytest.raises(ValueError, match="a validation set is always 'scored'"):
        workloads.Datasets(scored=())
