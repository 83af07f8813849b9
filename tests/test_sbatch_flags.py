"""sbatch-style flags on submit and resubmit, GPUs by --gres, and the docker script's wrapper kinds
and GPU switch (GPUs cannot reach a container here: the generated script is their test)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from conftest import REPO, scoped_env
from mrihpc.login.cli import main
from mrihpc.login.container import enter_script
from mrihpc.login.checks import prepare

KNEE = str(REPO / "jobs" / "knee_unet.yaml")


def test_sbatch_flags_map_onto_the_cluster_section_and_show_in_the_dry_run(capsys, tmp_path):
    assert (
        main(
            [
                "submit",
                KNEE,
                "--dry-run",
                "--runs",
                str(tmp_path),
                "-p",
                "dgx",
                "-t",
                "04:00:00",
                "-J",
                "recon",
                "-A",
                "mri",
                "--qos",
                "high",
                "--mail-user",
                "me@lab.org",
                "--mail-type",
                "END,FAIL",
                "-C",
                "a100",
                "-x",
                "dgx[03-04]",
                "-N",
                "2",
                "--gpus-per-node",
                "4",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    for line in (
        "--partition=dgx",
        "--time=240",
        "--job-name=recon",
        "--account=mri",
        "--qos=high",
        "--mail-user=me@lab.org",
        "--mail-type=END,FAIL",
        "--constraint=a100",
        "--exclude='dgx[03-04]'",
        "--nodes=2",
        "--gpus-per-node=4",
        "--ntasks-per-node=4",
    ):
        assert f"#SBATCH {line}\n" in out, line
    assert "--gpus-per-task=1" in out


def test_gres_asks_for_gpus_the_old_way_and_srun_binds_none(capsys, tmp_path):
    assert main(["submit", KNEE, "--dry-run", "--runs", str(tmp_path), "--gres", "gpu:8"]) == 0
    out = capsys.readouterr().out
    assert (
        "#SBATCH --gres=gpu:8\n" in out
        and "--gpus-per-node" not in out
        and "--gpus-per-task" not in out
    )
    assert "#SBATCH --ntasks-per-node=8\n" in out  # one rank per GPU, as with --gpus-per-node


@pytest.mark.parametrize(
    "flags,expected",
    [
        (["-t", "soon"], "cluster.time: not a Slurm time 'soon'"),
        (["-N", "0"], "cluster.nodes: Input should be greater than or equal to 1"),
        (["--gres", "gpu:a100:2"], "--gres gpu:a100:2: expected gpu:N"),
        (["-x", "n1;reboot"], "cluster.exclude: String should match pattern"),
        (["--mail-type", "SOMETIMES"], "cluster.mail_type: unknown mail type(s) SOMETIMES"),
    ],
)
def test_a_bad_flag_is_refused_naming_the_key(capsys, tmp_path, flags, expected):
    assert main(["submit", KNEE, "--dry-run", "--runs", str(tmp_path), *flags]) == 2
    assert expected in capsys.readouterr().err


def _docker(*overrides: str) -> str:
    spec, _, _, _ = prepare(
        KNEE,
        [
            "container.runtime=docker",
            "container.image=nvcr.io/nvidia/pytorch:24.05-py3",
            *overrides,
        ],
        check_paths=False,
    )
    with scoped_env("MRIHPC_CACHE", "/CACHE"):
        text = enter_script(spec, Path("/RUN"), "/CACHE/wheelhouse/cp310-abc")
    return re.sub(r" *\\\n *", " ", text)  # the long docker line unwrapped


def test_docker_wrapper_of_the_docker_form_is_called_like_docker():
    text = _docker("container.docker.wrapper=run-docker.sh")
    assert "run-docker.sh run --rm --init --name" in text
    assert 'run-docker.sh rm -f "$name"' in text and "command -v run-docker.sh" in text
    assert '--gpus "\\"device=$visible\\""' in text


def test_docker_wrapper_of_the_run_form_gets_docker_runs_arguments_and_gpus_its_way():
    text = _docker(
        "container.docker.wrapper=run-nvidia-docker.sh", "container.docker.wrapper_kind=run"
    )
    assert (
        "run-nvidia-docker.sh --rm --init --name" in text and "run-nvidia-docker.sh run" not in text
    )
    assert '-e "NVIDIA_VISIBLE_DEVICES=$visible"' in text and "--gpus" not in text
    # removed with the docker CLI when the node has one (the wrapper cannot `rm`)
    assert 'command -v docker >/dev/null && docker rm -f "$name"' in text
    assert (
        "python /RUN/code/mrihpc/node/bootstrap.py /CACHE/wheelhouse/cp310-abc /CACHE/sites --"
        in text
    )


def test_docker_gpus_false_passes_none_and_provision_false_runs_the_snapshot_directly():
    text = _docker(
        "container.docker.wrapper=site-docker",
        "container.docker.gpus=false",
        "container.provision=false",
    )
    assert "--gpus" not in text and "NVIDIA_VISIBLE_DEVICES" not in text and "step_gpus" not in text
    assert "-e PYTHONPATH=/RUN/code" in text and "bootstrap.py" not in text
    assert 'nvcr.io/nvidia/pytorch:24.05-py3 python "$@"' in text


def test_slurm_submit_without_docker_on_the_login_node_warns_and_the_node_checks(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("PATH", str(Path(sys.executable).parent))  # no docker, no sbatch here
    spec, _, _, _ = prepare(
        KNEE,
        [
            "container.runtime=docker",
            "container.image=nvcr.io/nvidia/pytorch:24.05-py3",
            "cluster.executor=slurm",
        ],
        check_paths=False,
    )
    from mrihpc.login.container import warnings

    (note,) = warnings(spec, "slurm")
    assert (
        "`docker` is not on PATH on this login node" in note
        and "set container.python_version" in note
    )
    assert (
        "command -v docker >/dev/null || { why='docker is not on PATH'\" on "
        '$(hostname)"; echo "[mrihpc] FAILED: $why"' in _docker()
    )
