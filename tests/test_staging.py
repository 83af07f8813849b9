"""Node-local staging (data.stage): copied once, reused while the source is unchanged, copied
again when a file changes, skipped with a warning when it cannot be made; and on the 2-node
test cluster, 4 points copy the data once per node and read the node's copy."""

from __future__ import annotations

import os
import time

import h5py
import pytest

from conftest import TINY, merge
from mrihpc.workloads.knee.kspace.synth import generate
from mrihpc.login.cli import main
from mrihpc.node import staging
from mrihpc.paths import read_json
from test_slurm import sacct_rows, submit, wait_done


def _source(tmp_path):
    return generate(tmp_path / "shared", 4, slices=4, shape=(48, 40), recon_shape=(32, 32), seed=3)


def test_copied_once_reused_and_copied_again_when_a_file_changes(tmp_path):
    source, node = _source(tmp_path), tmp_path / "node"
    copy, copied = staging.stage_one(source, node)
    assert copied and staging.listing(copy).keys() == staging.listing(source).keys()
    assert staging.stage_one(source, node) == (copy, False)
    changed = sorted((source / "train").iterdir())[0]
    with h5py.File(changed, "a") as f:
        f.attrs["note"] = "edited"
    os.utime(changed, ns=(time.time_ns(), time.time_ns() + 10**9))
    assert staging.stage_one(source, node) == (copy, True)
    assert (copy / "train" / changed.name).read_bytes() == changed.read_bytes()


def test_a_copy_that_cannot_be_made_leaves_the_shared_path(tmp_path, monkeypatch):
    from mrihpc.specfile import validate_dict

    source = _source(tmp_path)
    data = {
        **{k: v for k, v in TINY["data"].items() if k != "synthetic"},
        "root": str(source),
        "stage": {"to": "$NO_SUCH_VAR/x"},
    }
    spec = validate_dict({**TINY, "data": data}, "spec")
    said = []
    same, done = staging.stage_data(spec, ("root",), said.append)
    assert (
        same.data.root == str(source)
        and done["root"]["skipped"] == "unset variable"
        and "NO_SUCH_VAR" in said[0]
    )
    monkeypatch.setattr(staging, "HEADROOM", 1e15)  # more room than any disk has
    spec = spec.model_copy(
        update={
            "data": spec.data.model_copy(
                update={"stage": spec.data.stage.model_copy(update={"to": str(tmp_path / "node")})}
            )
        }
    )
    same, done = staging.stage_data(spec, ("root",), said.append)
    assert (
        same.data.root == str(source)
        and "MiB free" in done["root"]["skipped"]
        and "reading the shared path" in said[-1]
    )


@pytest.mark.slurm
def test_four_points_on_two_nodes_copy_once_per_node(slurm_cluster, tmp_path, write_spec, capsys):
    source = _source(tmp_path)
    scratch = tmp_path / "scratch"
    data = {
        **{k: v for k, v in TINY["data"].items() if k != "synthetic"},
        "root": str(source),
        "stage": {"to": f"{scratch}/$SLURMD_NODENAME"},
    }
    spec = merge(
        {**TINY, "data": data},
        train={**TINY["train"], "epochs": 3},
        cluster={"executor": "slurm", "time": "10:00", "cpus_per_task": 1, "array_parallelism": 4},
        sweep={"grid": {"train.seed": [0, 1, 2, 3]}},
    )
    run = submit(write_spec(spec), tmp_path / "runs", capsys)
    wait_done(run, timeout=300)
    staged = [read_json(run.point(i).status)["staged"]["root"] for i in range(4)]
    array = read_json(run.manifest)["submissions"][0]["array_id"]
    nodes = [sacct_rows(f"{array}_{i}", "NodeList")[-1][0] for i in range(4)]
    assert sorted(set(nodes)) == ["node1", "node2"], (
        nodes
    )  # two single-CPU points at a time on each node
    assert sum(s["copied"] for s in staged) == 2, staged  # once per node; the others reused it
    for s, node in zip(staged, nodes):
        assert s["to"].startswith(f"{scratch}/{node}/mrihpc-stage/") and s["from"] == str(source)
    assert sorted(p.name for p in scratch.iterdir()) == ["node1", "node2"]
    changed = sorted((source / "val").iterdir())[0]
    os.utime(
        changed, ns=(time.time_ns(), time.time_ns() + 10**9)
    )  # the source changes: copied again
    assert main(["resubmit", str(run.root), "0"]) == 0
    wait_done(run, timeout=300)
    again = read_json(run.point(0).status)["staged"]["root"]
    assert again["copied"] is True and read_json(run.point(0).status)["attempts"] == 2
