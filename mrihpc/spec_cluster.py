"""The ``cluster`` and ``container`` sections: where and how the points run (login node only)."""

from __future__ import annotations

import re
from typing import Any, Literal, Optional

from pydantic import Field, field_validator, model_validator

from mrihpc.section import MAIL_TYPES, Section, _command_words, slurm_time_minutes


def _names(mapping: dict, pattern: str, message: str) -> dict:
    """``mapping`` unchanged when every key matches ``pattern``; else ValueError listing the
    others."""
    bad = [k for k in mapping if not re.fullmatch(pattern, str(k))]
    if bad:
        raise ValueError(message.format(bad))
    return mapping


class ClusterSpec(Section):
    executor: Literal["slurm", "local", "debug", "auto"] = "local"
    """slurm, local (subprocesses), debug (in this process) or auto (slurm when sbatch is on
    PATH)."""
    partition: Optional[str] = None
    """Slurm partition."""
    account: Optional[str] = None
    """Slurm account to charge."""
    qos: Optional[str] = None
    """Slurm quality of service."""
    nodes: int = Field(1, ge=1)
    """Nodes per sweep point."""
    gpus_per_node: int = Field(0, ge=0, le=8)
    """GPUs per node (0-8)."""
    gpu_request: Literal["gpus", "gres"] = "gpus"
    """How the GPUs are asked for: gpus (--gpus-per-node, and srun --gpus-per-task=1) or gres
    (--gres=gpu:N, for sites on older Slurm or without GPU-binding options; every task of a node
    sees its GPUs and takes the one of its local rank)."""
    tasks_per_node: Optional[int] = Field(None, ge=1)
    """Processes per node; default one per GPU (one on CPU)."""
    cpus_per_task: Optional[int] = Field(None, ge=1)
    """CPU cores per process."""
    mem_gb: Optional[float] = Field(None, ge=0.1, le=100_000)
    """Memory per node in GB."""
    time: str = "01:00:00"
    """Time limit per point: MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM or D-HH:MM:SS."""
    constraint: Optional[str] = None
    """Slurm node features (--constraint)."""
    exclude: Optional[str] = Field(None, pattern=r"^[A-Za-z0-9_.,\[\]-]+$")
    """Nodes never to run on (--exclude), e.g. dgx[03-04],dgx07."""
    exclusive: bool = False
    """Whole nodes only."""
    array_parallelism: int = Field(4, ge=1)
    """At most this many points run at once (the %K of the array)."""
    job_name: Optional[str] = None
    """Slurm job name; default the spec's name."""
    mail_user: Optional[str] = None
    """Address for Slurm's mails."""
    mail_type: Optional[str] = None
    """Comma-separated Slurm mail events, e.g. END,FAIL."""
    setup: list[str] = []
    """Shell lines run before the task starts, e.g. 'module load cuda'."""
    signal_delay_s: int = Field(120, ge=0)
    """Seconds before the time limit at which USR2 asks the job to checkpoint."""
    max_array_size: Optional[int] = Field(None, ge=1)
    """Largest array Slurm accepts; default read from `scontrol show config`, else 1001."""
    requeue: bool = True
    """After a node failure, requeue the point (it resumes from its checkpoint); false leaves it
    node_fail, for `resubmit --failed`."""
    sbatch: dict[str, Any] = {}
    """Other sbatch options passed through verbatim, e.g. {reservation: foo}."""

    _sbatch_keys = field_validator("sbatch")(
        classmethod(
            lambda cls, v: _names(
                v,
                r"[A-Za-z][A-Za-z0-9_-]*",
                "option name(s) {} are not sbatch options; allowed: letters, digits, - and _",
            )
        )
    )

    @field_validator("time")
    @classmethod
    def _time(cls, v: str) -> str:
        slurm_time_minutes(v)
        return v

    @field_validator("mail_type")
    @classmethod
    def _mail(cls, v: Optional[str]) -> Optional[str]:
        bad = [t for t in (v or "").split(",") if t and t.strip().upper() not in MAIL_TYPES]
        if bad:
            raise ValueError(
                f"unknown mail type(s) {', '.join(bad)}; allowed: {', '.join(MAIL_TYPES)}"
            )
        return v

    @property
    def num_tasks_per_node(self) -> int:
        return self.tasks_per_node or max(1, self.gpus_per_node)


class DockerSpec(Section):
    host: Optional[str] = None
    """Docker daemon (DOCKER_HOST form); default the DGX per-user socket
    unix:///mnt/docker_socks/<user>/docker.sock when it exists, else docker's default."""
    wrapper: Optional[str] = None
    """A site command used in place of docker, e.g. run-docker.sh (wrapper_kind: docker) or
    run-nvidia-docker.sh (wrapper_kind: run)."""
    wrapper_kind: Literal["docker", "run"] = "docker"
    """What the wrapper stands for: `docker` (called as `<wrapper> run ...` and `<wrapper> rm -f`)
    or `docker run` (called as `<wrapper> --rm --name ... IMAGE ...`; the container is removed with
    `docker rm -f` when a docker CLI is on the node, and passes GPUs as NVIDIA_VISIBLE_DEVICES)."""
    network: Literal["host", "none", "bridge"] = "host"
    """--network: host (multi-node NCCL / gloo need it), none (a single-node point that needs no
    network at all) or bridge."""
    shm_size: Optional[str] = Field(None, pattern=r"^[0-9]+[bkmgBKMG]?$")
    """--shm-size for the container (e.g. 32g); default --ipc=host (the host's shared memory)."""
    gpus: bool = True
    """Pass the task's GPUs (--gpus device=..., or NVIDIA_VISIBLE_DEVICES for a `docker run`
    wrapper); false passes none (a wrapper that picks them itself)."""

    _wrapper = field_validator("wrapper")(classmethod(lambda cls, v: _command_words(v)))


class ApptainerSpec(Section):
    command: str = "apptainer"
    """apptainer or singularity."""
    nv: bool = True
    """--nv: NVIDIA GPUs and driver libraries inside."""


class ContainerSpec(Section):
    runtime: Literal["none", "pyxis", "docker", "apptainer"] = "none"
    """How a task enters its image: none (the host's Python), pyxis (srun --container-image),
    docker (docker run, e.g. on a DGX) or apptainer (apptainer exec)."""
    image: Optional[str] = None
    """Image: nvcr.io/nvidia/pytorch:24.05-py3 (docker, pyxis), an enroot .sqsh (pyxis),
    a .sif or docker:// URI (apptainer)."""
    mounts: list[str] = []
    """Extra bind mounts host[:container[:ro]]; the run directory, the task's data paths and the
    mrihpc cache are always mounted at their own paths."""
    workdir: Optional[str] = None
    """Working directory inside; default the run directory."""
    env: dict[str, str] = {}
    """Variables to set inside (Slurm's and the rendezvous variables always pass); names are POSIX
    names."""

    _python = field_validator("python")(classmethod(lambda cls, v: _command_words(v)))

    _env_names = field_validator("env")(
        classmethod(
            lambda cls, v: _names(
                v,
                r"[A-Za-z_][A-Za-z0-9_]*",
                "variable name(s) {} are not POSIX names; allowed: letters, digits and "
                "_, not first a digit",
            )
        )
    )
    python: str = Field("python", min_length=1)
    """The image's Python command."""
    python_version: Optional[str] = Field(None, pattern=r"^3\.[0-9]+$")
    """The image's Python as X.Y (the wheelhouse is made for it); default: asked from the image at
    submit, which needs the docker CLI and daemon on the submitting host."""
    provision: bool = True
    """docker: install what the image lacks of mrihpc's node dependencies (offline, from a
    wheelhouse made at submit, once per image and requirements into the shared cache); false for
    an image that already has them (docker/Dockerfile)."""
    docker: DockerSpec = DockerSpec()
    """Docker settings."""
    apptainer: ApptainerSpec = ApptainerSpec()
    """Apptainer settings."""

    @model_validator(mode="after")
    def _image(self) -> "ContainerSpec":
        if self.runtime != "none" and not self.image:
            raise ValueError(f"runtime {self.runtime} needs container.image")
        if self.runtime == "none" and self.image:
            raise ValueError(
                "container.image is set but container.runtime is none; pick pyxis, "
                "docker or apptainer"
            )
        for m in self.mounts:
            parts = m.split(":")
            if not parts[0] or len(parts) > 3 or (len(parts) == 3 and parts[2] not in ("ro", "rw")):
                raise ValueError(f"mount {m!r}: expected host[:container[:ro|rw]]")
        return self
