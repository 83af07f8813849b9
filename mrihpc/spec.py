"""The typed JobSpec tree: one class per YAML section, each field documented where declared.

pydantic (not dataclasses) because it gives, for free, what we would otherwise hand-write:
every problem in one pass with its key path (``loc``), unknown keys rejected
(``extra="forbid"``), range checks, and the field docstrings as descriptions.
Loading YAML, ``extends:``, ``-o`` overrides and the error format live in ``specfile.py``.
"""
from __future__ import annotations

import re
import shlex
from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, create_model, field_serializer, field_validator, model_validator

from mrihpc import registry

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
# Slurm's --time formats: MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS
_TIME = re.compile(r"^(?:(\d+)-(\d+)(?::(\d+)(?::(\d+))?)?|(\d+)(?::(\d+)(?::(\d+))?)?)$")
MAIL_TYPES = ("NONE", "BEGIN", "END", "FAIL", "REQUEUE", "ALL", "INVALID_DEPEND", "STAGE_OUT",
              "TIME_LIMIT", "TIME_LIMIT_90", "TIME_LIMIT_80", "TIME_LIMIT_50", "ARRAY_TASKS")


def _one_of(value: str, table: dict, what: str) -> str:
    if value not in table:
        raise ValueError(f"unknown {what} {value!r}; allowed: {', '.join(sorted(table))}")
    return value


def _registered(field: str, table: dict, what: str):
    """A validator that accepts only the names registered in ``table``."""
    return field_validator(field)(classmethod(lambda cls, v: _one_of(v, table, what)))


def slurm_time_minutes(text: str) -> int:
    """Minutes in a Slurm time string (rounded up), e.g. ``"1-12"`` -> 2160.

    Raises ValueError for anything Slurm's --time would not accept.
    """
    m = _TIME.match(str(text).strip())
    if not m:
        raise ValueError(f"not a Slurm time {text!r}; allowed: MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS")
    if m.group(1) is not None:  # D-HH[:MM[:SS]]
        days, hours, mins, secs = (int(g or 0) for g in m.group(1, 2, 3, 4))
    elif m.group(7) is not None:  # HH:MM:SS
        days, hours, mins, secs = 0, int(m.group(5)), int(m.group(6)), int(m.group(7))
    else:  # MM[:SS]
        days, hours, mins, secs = 0, 0, int(m.group(5)), int(m.group(6) or 0)
    if hours >= 24 and days or mins >= 60 and (hours or days) or secs >= 60:
        raise ValueError(f"field out of range in Slurm time {text!r}")
    total = ((days * 24 + hours) * 60 + mins) * 60 + secs
    if total <= 0:
        raise ValueError(f"Slurm time {text!r} must be positive")
    return -(-total // 60)


def _command_words(value: Optional[str]) -> Optional[str]:
    """A command given as words (``run-nvidia-docker.sh --x``): it must split like a shell line."""
    if value is None:
        return value
    try:
        words = shlex.split(value)
    except ValueError as e:
        raise ValueError(f"{value!r} does not split into words ({e})") from None
    if not words:
        raise ValueError("empty command")
    return value


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _control_characters(value: Any) -> Optional[str]:
    """The first string inside ``value`` (recursively) holding a control character, if any."""
    if isinstance(value, str):
        return value if _CONTROL.search(value) else None
    if isinstance(value, dict):
        value = [*value.keys(), *value.values()]
    if isinstance(value, (list, tuple)):
        return next((bad for v in value if (bad := _control_characters(v)) is not None), None)
    return None


class Section(BaseModel):
    """Base of every spec section: unknown keys, inf and NaN, and control characters (a newline
    would start a new line in a generated script) are refused."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, validate_default=True,
                              allow_inf_nan=False)

    @field_validator("*")
    @classmethod
    def _printable(cls, value: Any) -> Any:
        bad = _control_characters(value)
        if bad is not None:
            raise ValueError(f"control character in {bad!r}; newlines, tabs and other control characters are not allowed")
        return value


MODEL_PRESETS: dict[str, dict[str, Any]] = {
    # fastMRI's baseline U-Net: 7,756,097 parameters at chans 32, 4 pools.
    "fastmri": dict(channels=32, depth=4, norm="instance", activation="leaky_relu", pool="avg",
                    upsample="transpose", conv_bias=False, dropout=0.0),
    # Seed 000's U-Net: 64 base features, BatchNorm, ReLU, max-pool, bilinear up.
    "nc2019": dict(channels=64, depth=4, norm="batch", activation="relu", pool="max",
                   upsample="bilinear", conv_bias=True, dropout=0.0),
    # Seed 004's segmentation U-Net (mateuszbuda topology): 96 base features, BatchNorm,
    # max-pool, transposed-conv up with bias and no norm, 4 logits: 69,822,340 parameters.
    "acdc": dict(channels=96, depth=4, norm="batch", activation="relu", pool="max", upsample="transpose",
                 conv_bias=False, up_norm_act=False, up_bias=True, in_channels=1, out_channels=4),
    # Seed 001's U-Nets (same topology, 64 features; 20 frames in and out: 31,048,660 parameters)
    "cine": dict(channels=64, depth=4, norm="batch", activation="relu", pool="max", upsample="transpose",
                 conv_bias=False, up_norm_act=False, up_bias=True),
    # The same topology at CPU-demo size (16 base features, 3 pools): 0.47 M parameters.
    "acdc_small": dict(channels=16, depth=3, norm="batch", activation="relu", pool="max", upsample="transpose",
                       conv_bias=False, up_norm_act=False, up_bias=True, in_channels=1, out_channels=4),
}


class ModelSpec(Section):
    name: str = "unet"
    """Network architecture."""
    preset: Optional[str] = None
    """fastmri or nc2019: defaults for every field below not given explicitly."""
    channels: int = Field(32, ge=1)
    """Base feature channels (doubled at each pool)."""
    depth: int = Field(4, ge=1, le=8)
    """Number of pooling levels."""
    norm: Literal["batch", "instance", "none"] = "instance"
    """Normalisation after each convolution."""
    activation: Literal["relu", "leaky_relu"] = "leaky_relu"
    """Activation after each normalisation (leaky slope 0.2)."""
    pool: Literal["max", "avg"] = "avg"
    """Down-sampling between levels."""
    upsample: Literal["bilinear", "transpose"] = "transpose"
    """Up-sampling: bilinear interpolation or a transposed convolution."""
    conv_bias: bool = False
    """Bias in the 3x3 convolutions."""
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    """Dropout2d probability after each activation."""
    residual: bool = False
    """Predict a correction added to the input (in_channels must equal out_channels)."""
    in_channels: int = Field(1, ge=1)
    """Input channels (1 for magnitude, 2 for real / imaginary)."""
    out_channels: int = Field(1, ge=1)
    """Output channels."""
    up_norm_act: bool = True
    """Norm and activation after a transposed-conv up-sampling (fastMRI); false for seeds 001/004."""
    up_bias: bool = False
    """Bias in the transposed-conv up-sampling (seeds 001/004: true)."""
    skip_order: Literal["up_skip", "skip_up"] = "up_skip"
    """Channel order of the decoder's concatenation; matters only for loading another code's weights."""
    out_activation: Literal["none", "sigmoid", "tanh", "softplus"] = "none"
    """Activation on the output; none for logits (segmentation) and signed images."""

    check_name = _registered("name", registry.MODELS, "model")

    @model_validator(mode="before")
    @classmethod
    def _apply_preset(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("preset") is not None:
            preset = data["preset"]
            if preset not in MODEL_PRESETS:
                raise ValueError(f"unknown preset {preset!r}; allowed: {', '.join(MODEL_PRESETS)}")
            data = {**MODEL_PRESETS[preset], **data}
        return data

    @model_validator(mode="after")
    def _residual(self) -> "ModelSpec":
        if self.residual and self.in_channels != self.out_channels:
            raise ValueError("residual needs in_channels == out_channels")
        return self


class OptimSpec(Section):
    name: str = "adam"
    """Optimiser: adam, adamw, sgd, rmsprop or adagrad."""
    lr: float = Field(1e-3, gt=0)
    """Peak learning rate (reached at the end of the warm-up)."""
    weight_decay: float = Field(0.0, ge=0)
    """L2 penalty (decoupled for adamw)."""
    momentum: float = Field(0.0, ge=0, lt=1)
    """Momentum for sgd and rmsprop."""
    nesterov: bool = False
    """Nesterov momentum for sgd (needs momentum > 0)."""
    betas: tuple[float, float] = (0.9, 0.999)
    """Adam / AdamW betas."""

    check_name = _registered("name", registry.OPTIMIZERS, "optimiser")

    @model_validator(mode="after")
    def _nesterov(self) -> "OptimSpec":
        if self.nesterov and (self.name != "sgd" or self.momentum <= 0):
            raise ValueError("nesterov needs name: sgd and momentum > 0")
        if any(not 0 <= b < 1 for b in self.betas):
            raise ValueError(f"betas {self.betas} must lie in [0, 1)")
        return self


class ScheduleSpec(Section):
    warmup_epochs: float = Field(0.0, ge=0)
    """Linear warm-up from warmup_start_factor x lr to lr over this many epochs (fractions allowed)."""
    warmup_start_factor: float = Field(0.01, gt=0, le=1)
    """Where the warm-up starts, as a fraction of lr (seed 001: 1e-3)."""
    restart_epochs: float = Field(10.0, gt=0)
    """First cosine period of SGDR, in epochs."""
    restart_mult: int = Field(1, ge=1)
    """Each period is this many times longer than the previous one."""
    min_lr: float = Field(0.0, ge=0)
    """Floor of the cosine."""
    interval: Literal["step", "epoch"] = "step"
    """Step the schedule after every optimiser step or once per epoch."""


class TrainSpec(Section):
    epochs: int = Field(10, ge=1)
    """Training epochs."""
    batch_size: int = Field(1, ge=1)
    """Global batch size, split evenly across ranks."""
    workers: int = Field(2, ge=0)
    """DataLoader worker processes per rank."""
    precision: Literal["fp32", "bf16", "fp16"] = "bf16"
    """Autocast dtype on GPU; always fp32 on CPU."""
    seed: int = 0
    """Base seed; each sweep point derives its own from it and its index."""
    grad_clip: Optional[float] = Field(None, gt=0)
    """Clip the global gradient norm to this value."""
    eval_every: int = Field(1, ge=1)
    """Validate every N epochs (and always after the last)."""
    metric: Optional[str] = None
    """Validation metric that selects best.pt; one of the task's metrics (default: the task's own)."""
    steps_per_epoch: Optional[int] = Field(None, ge=1)
    """Cap on optimiser steps per epoch (quick experiments)."""
    nonfinite_patience: int = Field(0, ge=0)
    """Non-finite training losses in a row tolerated before the point fails (0: the first stops it).
    Useful with fp16, whose scaler skips such steps; in fp32 a NaN step has already spoiled the weights."""
    max_requeues: int = Field(3, ge=0)
    """How often a point may be requeued after preemption or a time limit."""
    threads: Optional[int] = Field(None, ge=1)
    """torch intra-op threads per rank on CPU (default: torch's choice)."""
    sync_batchnorm: Optional[bool] = None
    """SyncBatchNorm under DDP on GPUs: batch statistics over all ranks, needed at a few samples per GPU
    (default: on when there are several ranks on GPUs and the model has batch norm)."""


class VisdomSpec(Section):
    server: str = "http://127.0.0.1"
    """Visdom server URL (without the port) as seen from the training processes."""
    port: int = Field(8097, ge=1, le=65535)
    """Visdom server port."""
    timeout_s: float = Field(2.0, gt=0, le=30)
    """Longest wait for one call; a slow or hung server never holds up training."""
    backoff_s: float = Field(30.0, ge=0, le=3600)
    """After a failed call, send nothing for this long (doubling while it keeps failing)."""
    flush_every: int = Field(5, ge=1)
    """Logged steps per append to the loss and lr windows (appends slow as windows grow)."""

    @property
    def url(self) -> str:
        server = self.server if "://" in self.server else f"http://{self.server}"
        return f"{server.rstrip('/')}:{self.port}"


class MemorySpec(Section):
    interval_s: float = Field(0.5, ge=0.1)
    """Seconds between memory samples (finer than 0.1 s costs measurable time)."""


class MonitorSpec(Section):
    visdom: Optional[VisdomSpec] = None
    """Live plots; off when absent."""
    memory: Optional[MemorySpec] = None
    """Memory profile to points/<i>/memory.dat; off when absent."""


class ClusterSpec(Section):
    executor: Literal["slurm", "local", "debug", "auto"] = "local"
    """slurm, local (subprocesses), debug (in this process) or auto (slurm when sbatch is on PATH)."""
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
    sbatch: dict[str, Any] = {}
    """Other sbatch options passed through verbatim, e.g. {reservation: foo}."""

    @field_validator("sbatch")
    @classmethod
    def _sbatch_keys(cls, v: dict[str, Any]) -> dict[str, Any]:
        bad = [k for k in v if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_-]*", str(k))]
        if bad:
            raise ValueError(f"option name(s) {bad} are not sbatch options; allowed: letters, digits, - and _")
        return v

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
            raise ValueError(f"unknown mail type(s) {', '.join(bad)}; allowed: {', '.join(MAIL_TYPES)}")
        return v

    @property
    def num_tasks_per_node(self) -> int:
        return self.tasks_per_node or max(1, self.gpus_per_node)


class DockerSpec(Section):
    host: Optional[str] = None
    """Docker daemon (DOCKER_HOST form); default the DGX per-user socket
    unix:///mnt/docker_socks/<user>/docker.sock when it exists, else docker's default."""
    wrapper: Optional[str] = None
    """A site command used in place of `docker` (called with `run ...`), e.g. run-nvidia-docker.sh."""
    shm_size: Optional[str] = Field(None, pattern=r"^[0-9]+[bkmgBKMG]?$")
    """--shm-size for the container (e.g. 32g); default --ipc=host (the host's shared memory)."""
    gpus: bool = True
    """Pass the task's GPUs with --gpus."""


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
    """Extra bind mounts host[:container[:ro]]; the run directory, data.root and the mrihpc
    cache are always mounted at their own paths."""
    workdir: Optional[str] = None
    """Working directory inside; default the run directory."""
    env: dict[str, str] = {}
    """Variables to set inside (Slurm's and the rendezvous variables always pass); names are POSIX names."""

    _python = field_validator("python")(classmethod(lambda cls, v: _command_words(v)))

    @field_validator("env")
    @classmethod
    def _env_names(cls, v: dict[str, str]) -> dict[str, str]:
        bad = [k for k in v if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", str(k))]
        if bad:
            raise ValueError(f"variable name(s) {bad} are not POSIX names; allowed: letters, digits and _, not first a digit")
        return v
    python: str = Field("python", min_length=1)
    """The image's Python command."""
    docker: DockerSpec = DockerSpec()
    """Docker settings."""
    apptainer: ApptainerSpec = ApptainerSpec()
    """Apptainer settings."""

    @model_validator(mode="after")
    def _image(self) -> "ContainerSpec":
        if self.runtime != "none" and not self.image:
            raise ValueError(f"runtime {self.runtime} needs container.image")
        if self.runtime == "none" and self.image:
            raise ValueError("container.image is set but container.runtime is none; pick pyxis, docker or apptainer")
        for m in self.mounts:
            parts = m.split(":")
            if not parts[0] or len(parts) > 3 or (len(parts) == 3 and parts[2] not in ("ro", "rw")):
                raise ValueError(f"mount {m!r}: expected host[:container[:ro|rw]]")
        return self


class SweepSpec(Section):
    grid: dict[str, list[Any]] = {}
    """key.path -> values; the cartesian product of all keys."""
    zip: dict[str, list[Any]] = {}
    """key.path -> values; lists of equal length walked together."""
    points: list[dict[str, Any]] = []
    """Explicit list of {key.path: value} override sets."""
    folds: Optional[int] = Field(None, ge=2)
    """K-fold cross-validation: every point runs once per held-out fold."""
    max_points: int = Field(10_000, ge=1)
    """Refuse a sweep of more points than this (counted before expanding); raise it on purpose."""

    @model_validator(mode="after")
    def _zip_lengths(self) -> "SweepSpec":
        lengths = {k: len(v) for k, v in self.zip.items()}
        if len(set(lengths.values())) > 1:
            raise ValueError(f"zip lists must have equal lengths, got {lengths}")
        for key, values in {**self.grid, **self.zip}.items():
            if not values:
                raise ValueError(f"{key}: empty list of values")
        return self


def per_name(section: type[Section]):
    """A validator for ``optim`` / ``schedule``: one mapping of ``section``'s fields applies to every
    optimiser (stored under ``"all"``); a mapping of optimiser names to such mappings gives each
    optimiser its own."""

    def wrap(cls, value: Any) -> Any:
        return value if keyed_by_name(value, section) else {"all": value}
    return classmethod(wrap)


def keyed_by_name(value: Any, section: type[Section]) -> bool:
    """True when ``value`` maps optimiser names to settings rather than giving one setting."""
    return (isinstance(value, dict) and bool(value) and all(isinstance(v, dict) for v in value.values())
            and not set(value) & set(section.model_fields))


class JobSpec(Section):
    """The whole spec. ``data`` and ``model`` belong to the task: ``job_spec_class(task)`` types them."""

    name: str = Field(pattern=NAME_PATTERN)
    """Experiment name: the run folder runs/<name>/ and the Slurm job name."""
    task: str
    """Workload (required): reconstruction or segmentation (see mrihpc/workloads/)."""
    data: Any = None
    """The task's data section: where the data comes from and how it is read."""
    model: Any = None
    """The task's network, or its named networks."""
    loss: dict[str, float] = {}
    """Loss terms of the task and their weights, e.g. {l1: 1.0, ssim: 0.1}; default the task's own."""
    optim: dict[str, OptimSpec] = {}
    """One optimiser setting for all, or one per optimiser name ({G: {...}, D: {...}})."""
    schedule: dict[str, ScheduleSpec] = {}
    """Warm-up plus cosine annealing with warm restarts; one for all, or one per optimiser name."""
    train: TrainSpec = TrainSpec()
    """Training loop."""
    monitor: MonitorSpec = MonitorSpec()
    """Live plots and memory profiling."""
    cluster: ClusterSpec = ClusterSpec()
    """Where and how the points run."""
    container: ContainerSpec = ContainerSpec()
    """Container the points run in."""
    sweep: SweepSpec = SweepSpec()
    """Points to run."""

    _optim = field_validator("optim", mode="before")(per_name(OptimSpec))
    _schedule = field_validator("schedule", mode="before")(per_name(ScheduleSpec))

    @field_serializer("optim", "schedule")
    def _flat(self, value: dict) -> Any:
        """Written back in the shape it was given: one mapping when it applies to all."""
        dumped = {k: v.model_dump(mode="json") for k, v in value.items()}
        return dumped["all"] if set(dumped) == {"all"} else dumped

    @field_validator("loss")
    @classmethod
    def _loss(cls, v: dict[str, float]) -> dict[str, float]:
        if any(w < 0 for w in v.values()) or (v and not any(w > 0 for w in v.values())):
            raise ValueError("weights must be >= 0 with at least one > 0")
        return v

    def optim_for(self, name: str) -> OptimSpec:
        """The settings of optimiser ``name``: its own, else the ones for all."""
        return self.optim.get(name) or self.optim["all"]

    def schedule_for(self, name: str) -> ScheduleSpec:
        return self.schedule.get(name) or self.schedule["all"]


_SPEC_CLASSES: dict[str, type[JobSpec]] = {}


def job_spec_class(task: str) -> type[JobSpec]:
    """JobSpec with ``data`` and ``model`` typed by the workload ``task`` (cached per task)."""
    if task not in _SPEC_CLASSES:
        from mrihpc import workloads

        w = workloads.get(task)
        _SPEC_CLASSES[task] = create_model(f"{w.title}JobSpec", __base__=JobSpec, __doc__=JobSpec.__doc__,
                                           data=(w.data, ...), model=(w.model, w.model()))
    return _SPEC_CLASSES[task]
