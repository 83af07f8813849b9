"""Specs: every shipped spec validates; malformed ones fail with the key path, never a traceback."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import REPO, TINY, merge
from mrihpc.login.cli import main
from mrihpc.spec import slurm_time_minutes
from mrihpc.specfile import SpecError, load_spec

SHIPPED = sorted((REPO / "jobs").glob("*.yaml"))


def test_shipped_specs_exist():
    names = {p.name for p in SHIPPED}
    assert {"quickstart.yaml", "knee_unet.yaml", "knee_unet_cv.yaml"} <= names


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_every_shipped_spec_validates(path, capsys):
    assert main(["validate", str(path)]) == 0
    assert "ok" in capsys.readouterr().out


# (description, spec dict, overrides, text the error must contain)
MALFORMED = [
    (
        "unknown top key",
        merge(TINY, modle={"name": "unet"}),
        [],
        "modle: unknown key; did you mean 'model'?",
    ),
    (
        "unknown nested key",
        merge(TINY, optim={"nam": "adam"}),
        [],
        "optim.nam: unknown key; did you mean 'name'?",
    ),
    (
        "negative lr",
        merge(TINY, optim={"lr": -1.0}),
        [],
        "optim.lr: Input should be greater than 0",
    ),
    ("zero lr via override", TINY, ["optim.lr=0"], "optim.lr: Input should be greater than 0"),
    ("epochs 0", merge(TINY, train={"epochs": 0}), [], "train.epochs:"),
    ("gpus 9", merge(TINY, cluster={"gpus_per_node": 9}), [], "cluster.gpus_per_node:"),
    (
        "array parallelism 0",
        merge(TINY, cluster={"array_parallelism": 0}),
        [],
        "cluster.array_parallelism:",
    ),
    ("bad time", merge(TINY, cluster={"time": "1:2:3:4"}), [], "cluster.time: not a Slurm time"),
    (
        "time minutes out of range",
        merge(TINY, cluster={"time": "01:75:00"}),
        [],
        "cluster.time: field out of range",
    ),
    (
        "unknown task",
        merge(TINY, task="segmentaton"),
        [],
        "task: unknown task 'segmentaton'; allowed: reconstruction",
    ),
    (
        "unknown model",
        merge(TINY, model={"name": "resnet"}),
        [],
        "model.name: unknown model 'resnet'; allowed: unet",
    ),
    (
        "unknown optimiser",
        merge(TINY, optim={"name": "lamb"}),
        [],
        "optim.name: unknown optimiser 'lamb'; allowed: adagrad, adam, adamw, rmsprop, sgd",
    ),
    (
        "unknown loss",
        merge(TINY, loss={"l1": 1.0, "perceptual": 1.0}),
        [],
        "loss.perceptual: not a loss of task reconstruction; allowed: l1, mse, ssim",
    ),
    (
        "unknown mask",
        merge(TINY, data={**TINY["data"], "mask": {"kind": "poisson"}}),
        [],
        "data.mask.kind: unknown mask kind 'poisson'",
    ),
    (
        "unequal mask lists",
        merge(
            TINY,
            data={**TINY["data"], "mask": {"accelerations": [4, 8], "center_fractions": [0.08]}},
        ),
        [],
        "data.mask: accelerations (2) and center_fractions (1)",
    ),
    (
        "unknown executor",
        merge(TINY, cluster={"executor": "k8s"}),
        [],
        "cluster.executor: Input should be 'slurm', 'local', 'debug' or 'auto'",
    ),
    (
        "sweep key missing",
        merge(TINY, sweep={"grid": {"optim.weight_decy": [0.1]}}),
        [],
        "sweep.grid.optim.weight_decy: no such key 'weight_decy'; did you mean 'weight_decay'?",
    ),
    (
        "zip unequal",
        merge(TINY, sweep={"zip": {"optim.lr": [1e-3, 2e-3], "train.seed": [1]}}),
        [],
        "sweep: zip lists must have equal lengths",
    ),
    (
        "sweep value invalid",
        merge(TINY, sweep={"grid": {"optim.lr": [1e-3, -5.0]}}),
        [],
        "optim.lr: Input should be greater than 0; got -5.0 (in sweep point 1",
    ),
    ("folds 1", merge(TINY, sweep={"folds": 1}), [], "sweep.folds:"),
    (
        "wrong type",
        merge(TINY, train={"batch_size": "eight"}),
        [],
        "train.batch_size: Input should be a valid integer",
    ),
    ("name with space", merge(TINY, name="knee unet"), [], "name: String should match pattern"),
    (
        "no data source",
        {**TINY, "data": {"format": "fastmri"}},
        [],
        "data: give exactly one of data.root",
    ),
    (
        "unknown format",
        merge(TINY, data={**TINY["data"], "format": "dicom"}),
        [],
        "data.format: unknown data format 'dicom'",
    ),
    (
        "override bad key",
        TINY,
        ["optim.lrr=1"],
        "-o optim.lrr: no such key 'lrr'; did you mean 'lr'?",
    ),
    ("override without =", TINY, ["optim.lr"], "-o optim.lr: expected key.path=value"),
    (
        "bad mail type",
        merge(TINY, cluster={"mail_type": "END,SOMETIMES"}),
        [],
        "cluster.mail_type: unknown mail type(s) SOMETIMES",
    ),
    (
        "nesterov without sgd",
        merge(TINY, optim={"nesterov": True}),
        [],
        "optim: nesterov needs name: sgd",
    ),
    (
        "batch not divisible by ranks",
        merge(TINY, cluster={"tasks_per_node": 3}),
        [],
        "train.batch_size: 2 is not divisible by the 3 ranks",
    ),
    (
        "missing data root folder",
        {**TINY, "data": {"format": "fastmri", "root": "/nonexistent/knee"}},
        [],
        "data.root: folder /nonexistent/knee does not exist",
    ),
]


@pytest.mark.parametrize("what,spec,overrides,expected", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_spec_is_rejected_with_its_key_path(
    what, spec, overrides, expected, write_spec, capsys
):
    path = write_spec(spec)
    args = ["validate", "--check-paths", str(path)] + [a for o in overrides for a in ("-o", o)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert expected in err, err
    assert err.startswith(str(path)), err
    assert "Traceback" not in err


def test_every_problem_is_reported_at_once(write_spec):
    path = write_spec(
        merge(TINY, optim={"lr": -1.0, "nam": "x"}, train={"epochs": 0}, cluster={"time": "soon"})
    )
    with pytest.raises(SpecError) as e:
        load_spec(path)
    joined = "\n".join(e.value.problems)
    for key in ("optim.lr", "optim.nam", "train.epochs", "cluster.time"):
        assert f"{path}: {key}:" in joined
    assert len(e.value.problems) == 4


def test_cli_exit_status_and_no_traceback_in_a_real_process(write_spec):
    path = write_spec(merge(TINY, optim={"lr": "fast"}))
    out = subprocess.run(
        [sys.executable, "-m", "mrihpc", "submit", str(path)], capture_output=True, text=True
    )
    assert out.returncode == 2
    assert f"{path}: optim.lr: Input should be a valid number" in out.stderr
    assert "Traceback" not in out.stderr


def test_not_yaml_names_file_and_line(write_spec, capsys):
    path = write_spec("name: x\ndata: [unclosed\n")
    assert main(["validate", str(path)]) == 2
    assert f"{path}: line" in capsys.readouterr().err


def test_extends_merges_and_overrides_apply_last(write_spec):
    write_spec(TINY, "base.yaml")
    child = write_spec("extends: base.yaml\nname: child\noptim: {lr: 5.0e-4}\n", "child.yaml")
    spec, _ = load_spec(child, ["train.epochs=7", "optim.name=sgd"])
    assert (
        spec.name,
        spec.optim_for("main").lr,
        spec.optim_for("main").name,
        spec.train.epochs,
    ) == ("child", 5e-4, "sgd", 7)
    assert spec.model.channels == TINY["model"]["channels"]


def test_extends_cycle_is_an_error(write_spec):
    write_spec("extends: b.yaml\nname: a\n", "a.yaml")
    b = write_spec("extends: a.yaml\nname: b\n", "b.yaml")
    with pytest.raises(SpecError, match="extends: cycle"):
        load_spec(b)


def test_override_values_are_yaml_scalars(write_spec):
    spec, _ = load_spec(
        write_spec(TINY), ["optim.lr=3e-4", "cluster.exclusive=true", "data.mask.accelerations=[8]"]
    )
    assert (
        spec.optim_for("main").lr == 3e-4
        and spec.cluster.exclusive is True
        and spec.data.mask.accelerations == [8]
    )


@pytest.mark.parametrize(
    "text,minutes",
    [
        ("90", 90),
        ("05:30", 6),
        ("24:00:00", 1440),
        ("1-12", 2160),
        ("2-00:30", 2910),
        ("0-00:00:30", 1),
    ],
)
def test_slurm_time_formats(text, minutes):
    assert slurm_time_minutes(text) == minutes


def test_model_preset_fills_only_missing_fields(write_spec):
    spec, _ = load_spec(write_spec(merge(TINY, model={"preset": "nc2019", "channels": 16})))
    assert (spec.model.channels, spec.model.norm, spec.model.upsample) == (16, "batch", "bilinear")
