"""Points in a REAL container: a real dockerd (tools/docker-engine.sh), the stock-like image (Python
and CPU torch, no mrihpc, no submitit, numpy, pydantic, h5py, ...), the real test Slurm cluster.

What the tests cannot do here: --gpus (no NVIDIA toolkit, no GPU: GPU passing stays checked on the
generated script, test_containers.py), a registry pull (images are built locally).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import DOCKER_IMAGE, REPO, TINY, merge, wait_status as _wait
from mrihpc.login.cli import main
from mrihpc.node import checkpoint
from mrihpc.paths import RunPaths, read_json

pytestmark = pytest.mark.slurm

SLURM_TINY = merge(
    TINY, cluster={"executor": "slurm", "time": "10:00", "array_parallelism": 2, "cpus_per_task": 1}
)


def in_docker(host: str, **docker) -> dict:
    return {
        "runtime": "docker",
        "image": DOCKER_IMAGE,
        "docker": {"host": host, "network": "none", **docker},
    }


def _submit(spec: dict, folder: Path, write_spec, capsys, *flags: str) -> RunPaths:
    runs = folder / "runs"
    assert (
        main(["submit", str(write_spec(spec, f"{spec['name']}.yaml")), "--runs", str(runs), *flags])
        == 0
    )
    assert "submitted array job" in capsys.readouterr().out
    return RunPaths(sorted(runs.glob("*/*"))[-1])


def _containers(host: str) -> list[str]:
    out = subprocess.run(
        ["docker", "--host", host, "ps", "-a", "--format", "{{.Names}}"],
        capture_output=True,
        text=True,
        check=True,
    )
    return [n for n in out.stdout.split() if n.startswith("mrihpc-")]


def _no_containers_left(host: str, timeout: float = 30) -> None:
    deadline = time.time() + timeout
    while _containers(host) and time.time() < deadline:
        time.sleep(0.3)
    assert _containers(host) == []


def _ran_inside(run: RunPaths, point: int) -> dict:
    """The point's own record of where it ran, written from inside by its rank 0."""
    seen = read_json(run.point(point).root / "provenance.json")
    assert seen["in_container"] and seen["dockerenv"], seen  # /.dockerenv: docker made this root
    assert (
        seen["uid"] == os.getuid() and seen["gid"] == os.getgid()
    )  # --user: the submitting user's ids
    assert seen["mrihpc_path"] == str(run.code / "mrihpc")  # the run's snapshot, not an install
    assert (
        seen["python_executable"] == "/opt/venv/bin/python" and seen["torch"] == "2.13.0+cpu"
    )  # the image's
    assert seen["image"] == DOCKER_IMAGE and seen["image_id"].startswith("sha256:")
    return seen


def test_a_sweep_runs_inside_a_stock_image_that_lacks_mrihpc(
    slurm_cluster, docker_engine, tmp_path, write_spec, capsys
):
    spec = merge(
        SLURM_TINY,
        name="stock",
        container=in_docker(docker_engine),
        sweep={"grid": {"optim.lr": [1e-3, 2e-3]}},
    )
    run = _submit(spec, tmp_path, write_spec, capsys)
    for point in (0, 1):
        assert _wait(run, point, lambda s: s.get("state") in ("done", "failed"))["state"] == "done"
        seen = _ran_inside(run, point)
    # the site folder: what the image lacked, installed from the wheelhouse; torch stays the image's
    site = json.loads((Path(seen["site"]) / "site.json").read_text())
    installed = {p.split("==")[0] for p in site["installed"]}
    assert {"numpy", "submitit", "pydantic", "h5py", "scikit-image", "monai"} <= installed
    assert not installed & {"torch", "networkx", "sympy"}  # the image has them: never replaced
    assert "torch==2.13.0+cpu" in seen["packages"]
    manifest = read_json(run.manifest)
    assert manifest["container"]["python_version"] == f"{sys.version_info[0]}.{sys.version_info[1]}"
    assert manifest["code"]["sha256"] == seen["code_sha256"]
    _no_containers_left(docker_engine)
    # every file the containers wrote is the submitting user's
    owners = {p.stat().st_uid for p in run.root.rglob("*")}
    assert owners == {os.getuid()}, owners
    assert main(["status", str(run.root)]) == 0
    assert main(["results", str(run.root), "--provenance"]) == 0
    out = capsys.readouterr().out
    assert "2 points: 2 done" in out and "val_ssim" in out
    assert DOCKER_IMAGE in out and seen["image_id"][7:19] in out and "2.13.0+cpu" in out


def test_requeue_in_the_container_checkpoints_resumes_and_removes_each_container(
    slurm_cluster, docker_engine, tmp_path, write_spec, capsys
):
    slow = merge(
        SLURM_TINY,
        train={**TINY["train"], "epochs": 6},
        data={**TINY["data"], "synthetic": {**TINY["data"]["synthetic"], "volumes": 10}},
    )
    reference = _submit(merge(slow, name="host"), tmp_path / "a", write_spec, capsys)
    run = _submit(
        merge(slow, name="requeued", container=in_docker(docker_engine)),
        tmp_path / "b",
        write_spec,
        capsys,
    )
    job = read_json(run.manifest)["submissions"][0]["jobs"]["0"]["job_id"]
    _wait(run, 0, lambda s: s.get("state") == "running" and (s.get("epoch") or 0) >= 2)
    first = _containers(docker_engine)
    assert len(first) == 1 and first[0].endswith("-0-0")  # named by job, rank and attempt
    subprocess.run(["scontrol", "requeue", job], check=True)  # preemption by hand
    done = _wait(run, 0, lambda s: s.get("state") == "done", timeout=400)
    _wait(reference, 0, lambda s: s.get("state") == "done")
    assert done["attempts"] == 2
    log = "".join(p.read_text(errors="replace") for p in (run.root / "logs").glob("*.out"))
    assert "[mrihpc] resumed from epoch" in log  # from its checkpoint, not from scratch
    _no_containers_left(docker_engine)
    _ran_inside(run, 0)
    # resumed at a step boundary: the weights of the uninterrupted run on the host
    ours, theirs = (
        checkpoint.load(r.point(0).last_checkpoint)["nets"]["model"] for r in (run, reference)
    )
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs)


def test_a_wrapper_standing_for_docker_run(
    slurm_cluster, docker_engine, tmp_path, write_spec, capsys
):
    """A site's run-nvidia-docker.sh takes `docker run`'s arguments; this one is a real wrapper
    over the real engine (it can add no GPUs here), and logs how it was called."""
    wrapper = tmp_path / "run-nvidia-docker.sh"
    wrapper.write_text(
        f'#!/bin/bash\necho "$*" >> {tmp_path}/wrapper.log\n'
        f'exec docker --host {docker_engine} run "$@"\n'
    )
    wrapper.chmod(0o755)
    spec = merge(
        SLURM_TINY,
        name="wrapped",
        container=in_docker(docker_engine, wrapper=str(wrapper), wrapper_kind="run"),
    )
    spec["container"]["docker"].pop("host")  # the wrapper knows its daemon
    run = _submit(spec, tmp_path, write_spec, capsys)
    assert _wait(run, 0, lambda s: s.get("state") in ("done", "failed"))["state"] == "done"
    _ran_inside(run, 0)
    calls = (tmp_path / "wrapper.log").read_text().splitlines()
    assert (
        len(calls) == 1
        and calls[0].startswith("--rm --init --name mrihpc-")
        and " run " not in f" {calls[0]} "
    )
    _no_containers_left(docker_engine)


def test_an_edit_after_submit_does_not_reach_a_queued_point(slurm_cluster, tmp_path, write_spec):
    """Submit from a copy of the package (the user's working tree), held in the queue; break the
    copy; release: the point runs the snapshot taken at submit and finishes."""
    tree = tmp_path / "tree"
    shutil.copytree(REPO / "mrihpc", tree / "mrihpc", ignore=shutil.ignore_patterns("__pycache__"))
    spec = write_spec(
        merge(SLURM_TINY, name="held", cluster={**SLURM_TINY["cluster"], "sbatch": {"hold": True}})
    )
    env = {**os.environ, "PYTHONPATH": str(tree)}
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "mrihpc.login.cli",
            "submit",
            str(spec),
            "--runs",
            str(tmp_path / "runs"),
        ],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    run = RunPaths(sorted((tmp_path / "runs").glob("*/*"))[-1])
    assert read_json(run.manifest)["code"]["source"] == str(tree / "mrihpc")
    runner = tree / "mrihpc" / "node" / "runner.py"
    runner.write_text(
        'raise RuntimeError("the edited working tree ran")\n'
    )  # what a queued point must never see
    subprocess.run(
        ["scontrol", "release", read_json(run.manifest)["submissions"][0]["array_id"]], check=True
    )
    assert _wait(run, 0, lambda s: s.get("state") in ("done", "failed"))["state"] == "done"
    assert read_json(run.point(0).root / "provenance.json")["mrihpc_path"] == str(
        run.code / "mrihpc"
    )


def test_a_node_without_the_docker_socket_fails_the_point_with_that_reason(
    slurm_cluster, tmp_path, write_spec, capsys
):
    """The login node only warns (docker lives on the nodes); the node checks and records why."""
    gone = tmp_path / "no-daemon" / "docker.sock"
    spec = merge(
        SLURM_TINY,
        name="no-socket",
        container={**in_docker(f"unix://{gone}"), "python_version": "3.11"},
    )
    run = _submit(spec, tmp_path, write_spec, capsys)
    status = _wait(run, 0, lambda s: s.get("state") == "failed", timeout=120)
    assert status["error"] == f"no docker socket {gone} on {status['host']}"
    assert main(["status", str(run.root)]) == 0
    assert f"no docker socket {gone}" in capsys.readouterr().out
