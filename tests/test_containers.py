"""Containers: golden dry-run scripts per runtime, hadolint, validation at submit, the version
check, and real jobs through docker / apptainer on the test cluster.

No Docker engine, enroot or Apptainer can run on the test machine: the docker and apptainer
chains run through the stand-in executables in tests/standins/ (they record their arguments
and run the command after the image directly). pyxis is an srun plugin that cannot be loaded
here: its golden script is its test.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import REPO, TINY, merge, scoped_env, wait_status as _wait
from mrihpc.login.cli import main
from mrihpc.login.launch import dry_run_text
from mrihpc.login.checks import prepare
from mrihpc.node import checkpoint
from mrihpc import snapshot
from mrihpc.paths import RunPaths, read_json

GOLDEN = Path(__file__).parent / "golden"
STANDINS = Path(__file__).parent / "standins"
IMAGES = {
    "pyxis": "nvcr.io#nvidia/pytorch:24.05-py3",
    "docker": "nvcr.io/nvidia/pytorch:24.05-py3",
    "apptainer": "/images/pytorch-24.05.sif",
}


def render(runtime: str) -> str:
    spec, _, points, _ = prepare(
        str(REPO / "jobs" / "knee_unet.yaml"),
        [
            f"container.runtime={runtime}",
            f"container.image={IMAGES[runtime]}",
            "container.mounts=[/scratch/me:/scratch:ro]",
            "container.env={NCCL_DEBUG: WARN}",
        ],
        check_paths=False,
    )
    with scoped_env(
        "MRIHPC_CACHE", "/CACHE"
    ):  # the cache is mounted: a fixed path in the golden files
        text = dry_run_text(spec, Path("/RUN/logs"), len(points))
    return text.replace(sys.executable, "PYTHON")


@pytest.mark.parametrize("runtime", ["pyxis", "docker", "apptainer"])
def test_golden_dry_run_scripts(runtime):
    """Refresh after a deliberate change:
    `python -c 'from tests.test_containers import *; [(GOLDEN /
    f"container_{r}.sbatch").write_text(render(r)) for r in IMAGES]'`
    """
    text = render(runtime)
    assert text == (GOLDEN / f"container_{runtime}.sbatch").read_text()
    srun = next(line for line in text.splitlines() if line.startswith("srun "))
    if runtime == "pyxis":
        assert (
            f"'--container-image={IMAGES['pyxis']}'" in srun and "/scratch/me:/scratch:ro" in srun
        )
        assert "--container-workdir=/RUN" in srun and srun.endswith(
            " python -u -m submitit.core._submit /RUN/logs"
        )
        assert "export NCCL_DEBUG=WARN" in text
    else:
        assert srun.endswith("bash /RUN/container.sh -u -m submitit.core._submit /RUN/logs")
        assert "export MRIHPC_REQUEUE_BY=host" in text and "scontrol requeue" in text
    if runtime == "docker":
        assert (
            "--init" in text and "--ipc=host" in text and '--gpus "\\"device=$visible\\""' in text
        )
        assert "SLURM_|SUBMITIT_|MASTER_ADDR=" in text and "-e NCCL_DEBUG" in text
    if runtime == "apptainer":
        assert "apptainer exec --nv --pwd /RUN" in text and "--bind /scratch/me:/scratch:ro" in text


def test_dockerfile_passes_hadolint():
    hadolint = Path(sys.executable).parent / "hadolint"
    out = subprocess.run(
        [str(hadolint), str(REPO / "docker" / "Dockerfile")], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stdout + out.stderr
    text = (REPO / "docker" / "Dockerfile").read_text()
    assert "ARG NGC_TAG=" in text and "FROM nvcr.io/nvidia/pytorch:${NGC_TAG}" in text


@pytest.mark.parametrize(
    "container,cluster,expected",
    [
        (
            {"runtime": "docker", "image": "NVCR.io/Nvidia/PyTorch:24.05"},
            {},
            "container.image: 'NVCR.io/Nvidia/PyTorch:24.05' is not a Docker image reference",
        ),
        (
            {"runtime": "docker", "image": "nvcr.io/nvidia/pytorch:"},
            {},
            "is not a Docker image reference",
        ),
        (
            {"runtime": "pyxis", "image": "nvcr.io#nvidia/pytorch:24.05-py3"},
            {"executor": "local"},
            "pyxis is a plugin of srun: it needs cluster.executor slurm",
        ),
        (
            {"runtime": "apptainer", "image": "pytorch.img"},
            {},
            "apptainer needs a .sif file or docker://",
        ),
        (
            {"runtime": "apptainer", "image": "/nonexistent/pytorch.sif"},
            {},
            "container.image: /nonexistent/pytorch.sif does not exist on this host",
        ),
        (
            {
                "runtime": "docker",
                "image": "nvcr.io/nvidia/pytorch:24.05-py3",
                "mounts": ["/nonexistent/scratch:/scratch"],
            },
            {},
            "container.mounts[0]: /nonexistent/scratch does not exist on this host",
        ),
        (
            {
                "runtime": "docker",
                "image": "nvcr.io/nvidia/pytorch:24.05-py3",
                "mounts": ["/tmp:/x:rx"],
            },
            {},
            "expected host[:container[:ro|rw]]",
        ),
        (
            {
                "runtime": "docker",
                "image": "nvcr.io/nvidia/pytorch:24.05-py3",
                "docker": {"wrapper": "/nonexistent/run-nvidia-docker.sh"},
            },
            {},
            "container.runtime: docker needs `/nonexistent/run-nvidia-docker.sh`, which "
            "is not on PATH here",
        ),
        (
            {
                "runtime": "apptainer",
                "image": "docker://nvcr.io/nvidia/pytorch:24.05-py3",
                "apptainer": {"command": "no-such-apptainer"},
            },
            {},
            "container.runtime: apptainer needs `no-such-apptainer`",
        ),
        (
            {
                "runtime": "apptainer",
                "image": "docker://nvcr.io/nvidia/pytorch:24.05-py3",
                "apptainer": {"nv": False},
            },
            {"gpus_per_node": 2},
            "container.apptainer.nv: false, but cluster.gpus_per_node is 2",
        ),
        (
            {
                "runtime": "docker",
                "image": "nvcr.io/nvidia/pytorch:24.05-py3",
                "docker": {"gpus": False},
            },
            {"gpus_per_node": 1},
            "container.docker.gpus: false, but cluster.gpus_per_node is 1",
        ),
        (
            {"runtime": "none", "image": "nvcr.io/nvidia/pytorch:24.05-py3"},
            {},
            "container.runtime is none; pick pyxis, docker or apptainer",
        ),
        ({"runtime": "docker"}, {}, "runtime docker needs container.image"),
        ({"runtime": "podman", "image": "x"}, {}, "container.runtime"),
    ],
)
def test_container_validation_errors(write_spec, capsys, monkeypatch, container, cluster, expected):
    monkeypatch.setenv("PATH", f"{STANDINS}:{os.environ['PATH']}")
    spec = merge(TINY, container=container, cluster={**TINY["cluster"], **cluster})
    path = write_spec(spec)
    assert main(["validate", "--check-paths", str(path)]) == 2
    err = capsys.readouterr().err
    assert expected in err and str(path) in err, err


def test_a_task_runs_the_snapshot_taken_at_submit_and_refuses_another_or_a_changed_one(
    tmp_path, write_spec, monkeypatch
):
    from mrihpc.login import checks, launch
    from mrihpc.node.runner import run_point

    path = write_spec(TINY)
    spec, raw, points, _ = checks.prepare(str(path), [])
    run = launch.write_run_directory(tmp_path / "runs", spec, raw, str(path), points, "debug")
    code = read_json(run.manifest)["code"]
    package = Path(snapshot.__file__).parent
    assert code["path"] == str(run.code) and code["sha256"] == snapshot.digest(
        package
    ) == snapshot.digest(run.code / "mrihpc")
    assert (run.code / "mrihpc" / "node" / "runner.py").read_bytes() == (
        package / "node" / "runner.py"
    ).read_bytes()
    assert not os.access(run.code / "mrihpc" / "node" / "runner.py", os.W_OK) or os.getuid() == 0
    assert oct((run.code / "mrihpc" / "node" / "runner.py").stat().st_mode & 0o777) == "0o444"
    assert not any(run.code.rglob("__pycache__"))
    # a task started through the snapshot (MRIHPC_CODE set) that imported another mrihpc: refused
    monkeypatch.setenv(snapshot.CODE_ENV, str(run.code))
    with pytest.raises(snapshot.CodeMismatch, match="not the run's snapshot"):
        run_point(run.root, 0)
    status = read_json(run.point(0).status)
    assert status["state"] == "failed" and status["error"].startswith(
        "CodeMismatch: this task imported mrihpc from"
    )
    # the snapshot changed after submit: refused, naming the digests
    with pytest.raises(snapshot.CodeMismatch, match="changed after submit"):
        target = run.code / "mrihpc" / "node" / "runner.py"
        target.chmod(0o644)
        target.write_text(target.read_text() + "# edited\n")
        snapshot.check(read_json(run.manifest), run.code / "mrihpc")


# --- real jobs on the test cluster, through the stand-ins -------------------------------------
SLURM_TINY = merge(
    TINY, cluster={"executor": "slurm", "time": "10:00", "array_parallelism": 2, "cpus_per_task": 1}
)


@pytest.fixture
def standins(tmp_path, monkeypatch):
    """Stand-ins first on PATH (sbatch exports the environment to the job); their log."""
    log = tmp_path / "standin.log"
    monkeypatch.setenv("PATH", f"{STANDINS}:{os.environ['PATH']}")
    monkeypatch.setenv("MRIHPC_STANDIN_LOG", str(log))
    monkeypatch.setenv("MRIHPC_STANDIN_PYTHON", sys.executable)
    return log


def _submit(spec: dict, tmp_path, write_spec, capsys) -> RunPaths:
    runs = tmp_path / "runs"
    assert main(["submit", str(write_spec(spec)), "--runs", str(runs)]) == 0
    assert "submitted array job" in capsys.readouterr().out
    return RunPaths(sorted(runs.glob("*/*"))[-1])


@pytest.mark.slurm
def test_docker_job_on_slurm_gets_the_environment_and_the_preemption_signal(
    slurm_cluster, standins, tmp_path, write_spec, capsys
):
    slow = merge(
        SLURM_TINY,
        name="in-docker",
        train={**TINY["train"], "epochs": 6},
        data={**TINY["data"], "synthetic": {**TINY["data"]["synthetic"], "volumes": 10}},
        container={
            "runtime": "docker",
            "image": "nvcr.io/nvidia/pytorch:24.05-py3",
            "python_version": "3.11",
            "mounts": [f"{tmp_path}:{tmp_path}:ro"],
            "env": {"MRIHPC_PROBE": "inside"},
        },
    )
    run = _submit(slow, tmp_path, write_spec, capsys)
    job = read_json(run.manifest)["submissions"][0]["jobs"]["0"]["job_id"]
    first = _wait(run, 0, lambda s: s.get("state") == "running" and (s.get("epoch") or 0) >= 2)
    # Slurm's variables reached the process inside: it knows its job
    assert first["job_id"] == job and first["attempts"] == 1
    subprocess.run(
        ["scancel", "--signal=USR2", job], check=True
    )  # what Slurm sends before a time limit
    done = _wait(run, 0, lambda s: s.get("state") == "done", timeout=300)
    assert (
        done["attempts"] == 2 and done["epochs"] == 6
    )  # checkpointed, requeued from the host, resumed
    calls = [
        line
        for line in standins.read_text().splitlines()
        if line.startswith("docker ") and " run " in line
    ]
    assert len(calls) == 2 and all(
        " run --rm --init --name mrihpc-" in c and " --ipc=host " in c for c in calls
    )
    assert all("-e HOME=" in c for c in calls)
    deadline = time.time() + 30  # the script removes its container after python reported done
    while time.time() < deadline:
        removed = [
            line
            for line in standins.read_text().splitlines()
            if line.startswith("docker rm -f mrihpc-")
        ]
        if len(removed) == 2:
            break
        time.sleep(0.3)
    # named by job, rank and attempt (Slurm's restart count), each removed when its script ended
    assert [line.rsplit("-", 2)[1:] for line in removed] == [["0", "0"], ["0", "1"]], removed
    assert all(f"-v {tmp_path}:{tmp_path}:ro" in c and "-e MRIHPC_PROBE" in c for c in calls)
    assert "image nvcr.io/nvidia/pytorch:24.05-py3" in standins.read_text()
    err = Path(read_json(run.manifest)["submissions"][0]["jobs"]["0"]["stderr"]).read_text()
    assert f"[mrihpc] checkpointed after USR2: requeueing {job}" in err


@pytest.mark.slurm
def test_apptainer_job_on_slurm(slurm_cluster, standins, tmp_path, write_spec, capsys):
    image = tmp_path / "pytorch.sif"
    image.write_bytes(b"stand-in image")
    spec = merge(
        SLURM_TINY, name="in-apptainer", container={"runtime": "apptainer", "image": str(image)}
    )
    run = _submit(spec, tmp_path, write_spec, capsys)
    status = _wait(run, 0, lambda s: s.get("state") in ("done", "failed"))
    assert status["state"] == "done", status
    log = standins.read_text()
    assert f"apptainer exec --nv --pwd {run.root} --bind {run.root}:{run.root}:rw" in log
    assert f"image {image}" in log
    # provenance: the image file's sha256, taken once at submit (the stand-in runs the host's
    # Python)
    seen = read_json(run.point(0).root / "provenance.json")
    assert (
        seen["image"] == str(image)
        and seen["image_id"] == "sha256:" + hashlib.sha256(image.read_bytes()).hexdigest()
    )
    assert (
        seen["mrihpc_path"] == str(run.code / "mrihpc")
        and seen["code_sha256"] == read_json(run.manifest)["code"]["sha256"]
    )


@pytest.mark.slurm
def test_pyxis_job_preempted_with_two_workers_requeues_from_the_host_and_ends_bit_identical(
    slurm_cluster, tmp_path, write_spec, capsys, monkeypatch
):
    """pyxis through a stand-in srun whose tasks have no `scontrol` (as in an NGC image): USR2
    makes the process inside checkpoint at a step boundary and exit 140, the batch shell on the
    host requeues the task, and the point ends with the weights of an uninterrupted run."""
    log = tmp_path / "standin.log"
    monkeypatch.setenv("PATH", f"{STANDINS / 'pyxis'}:{os.environ['PATH']}")
    monkeypatch.setenv("MRIHPC_STANDIN_LOG", str(log))
    slow = merge(
        SLURM_TINY,
        train={**TINY["train"], "epochs": 6, "workers": 2},
        data={**TINY["data"], "synthetic": {**TINY["data"]["synthetic"], "volumes": 10}},
    )
    reference = _submit(merge(slow, name="bare"), tmp_path / "a", write_spec, capsys)
    run = _submit(
        merge(
            slow,
            name="in-pyxis",
            container={"runtime": "pyxis", "image": IMAGES["pyxis"], "python": sys.executable},
        ),
        tmp_path / "b",
        write_spec,
        capsys,
    )
    job = read_json(run.manifest)["submissions"][0]["jobs"]["0"]["job_id"]
    _wait(run, 0, lambda s: s.get("state") == "running" and (s.get("epoch") or 0) >= 2)
    subprocess.run(["scancel", "--signal=USR2", job], check=True)
    done = _wait(run, 0, lambda s: s.get("state") == "done", timeout=300)
    _wait(reference, 0, lambda s: s.get("state") == "done", timeout=300)
    assert done["attempts"] == 2
    ours, theirs = (
        checkpoint.load(r.point(0).last_checkpoint)["nets"]["model"] for r in (run, reference)
    )
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs)
    text = log.read_text()
    assert f"--container-image={IMAGES['pyxis']}" in text and "scontrol-inside" not in text
    err = "".join(p.read_text(errors="replace") for p in (run.root / "logs").glob("*.err"))
    assert (
        f"[mrihpc] checkpointed after USR2: requeueing {job}" in err
        and "killed by signal" not in err
    )


@pytest.mark.slurm
def test_max_requeues_is_honoured_in_a_container(
    slurm_cluster, standins, tmp_path, write_spec, capsys
):
    slow = merge(
        SLURM_TINY,
        name="no-requeue",
        train={**TINY["train"], "epochs": 6, "max_requeues": 0},
        data={**TINY["data"], "synthetic": {**TINY["data"]["synthetic"], "volumes": 10}},
        container={"runtime": "apptainer", "image": str(_sif(tmp_path))},
    )
    run = _submit(slow, tmp_path, write_spec, capsys)
    job = read_json(run.manifest)["submissions"][0]["jobs"]["0"]["job_id"]
    _wait(run, 0, lambda s: s.get("state") == "running" and (s.get("epoch") or 0) >= 1)
    subprocess.run(["scancel", "--signal=USR2", job], check=True)
    status = _wait(run, 0, lambda s: s.get("state") == "interrupted")
    time.sleep(3)
    assert (read_json(run.point(0).status) or {}).get("attempts") == 1 == status["attempts"]
    err = Path(read_json(run.manifest)["submissions"][0]["jobs"]["0"]["stderr"]).read_text()
    assert "not requeued: train.max_requeues (0) reached" in err


def _sif(tmp_path) -> Path:
    image = tmp_path / "pytorch.sif"
    image.write_bytes(b"stand-in image")
    return image
