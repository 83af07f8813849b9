"""The typed JobSpec tree: one class per YAML section, each field documented where declared.

pydantic (not dataclasses) because it gives, for free, what we would otherwise hand-write:
every problem in one pass with its key path (``loc``), unknown keys rejected
(``extra="forbid"``) and range checks.
Loading YAML, ``extends:``, ``-o`` overrides and the error format live in ``specfile.py``.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal, Optional

from pydantic import (
    Field,
    create_model,
    field_serializer,
    field_validator,
    model_serializer,
    model_validator,
)

from mrihpc import registry
from mrihpc.section import (  # noqa: F401 - MAIL_TYPES, _registered, slurm_time_minutes re-exported
    MAIL_TYPES,
    NAME_PATTERN,
    Section,
    _registered,
    slurm_time_minutes,
)
from mrihpc.spec_cluster import ApptainerSpec, ClusterSpec, ContainerSpec, DockerSpec  # noqa: F401


#: U-Net recipes any workload's model section offers as ``preset:``; a workload's own section
#: adds its seed's (``ModelSpec.PRESETS`` in a subclass)
MODEL_PRESETS: dict[str, dict[str, Any]] = {
    # fastMRI's baseline U-Net: 7,756,097 parameters at chans 32, 4 pools.
    "fastmri": dict(
        channels=32,
        depth=4,
        norm="instance",
        activation="leaky_relu",
        pool="avg",
        upsample="transpose",
        conv_bias=False,
        dropout=0.0,
    ),
    # Seed 000's U-Net: 64 base features, BatchNorm, ReLU, max-pool, bilinear up.
    "nc2019": dict(
        channels=64,
        depth=4,
        norm="batch",
        activation="relu",
        pool="max",
        upsample="bilinear",
        conv_bias=True,
        dropout=0.0,
    ),
}

#: the U-Net of mateuszbuda/brain-segmentation-pytorch, which seeds 001 and 004 follow: BatchNorm,
#: ReLU, max-pool, transposed-conv up with bias and no norm; a workload's preset adds the widths
BATCHNORM_UNET: dict[str, Any] = dict(
    norm="batch",
    activation="relu",
    pool="max",
    upsample="transpose",
    conv_bias=False,
    up_norm_act=False,
    up_bias=True,
)


#: the widest layer a spec may ask for: far above any MRI network's (512), far below what
#: cannot be allocated (a width of 1e11 validated, then crashed the point)
MAX_WIDTH = 4096
#: epochs beyond this are a typo (1e23 ran until killed)
MAX_EPOCHS = 100_000


def check_widths(widths: list[int], levels: int = 8) -> list[int]:
    """A list of block widths: 1 to ``levels`` blocks, each 1 to MAX_WIDTH channels."""
    if not 1 <= len(widths) <= levels or not all(1 <= w <= MAX_WIDTH for w in widths):
        raise ValueError(f"{widths}: allowed: 1 to {levels} block widths, each 1-{MAX_WIDTH}")
    return widths


class ModelSpec(Section):
    #: preset name -> defaults of the fields below (a workload's subclass adds its own)
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = MODEL_PRESETS

    name: str = "unet"
    """Network architecture."""
    preset: Optional[str] = None
    """A named recipe (``PRESETS``: fastmri, nc2019, and the workload's own): defaults for every
    field below not given explicitly."""
    channels: int = Field(32, ge=1, le=MAX_WIDTH)
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
    """Norm and activation after a transposed-conv up-sampling (fastMRI); false for seeds
    001/004."""
    up_bias: bool = False
    """Bias in the transposed-conv up-sampling (seeds 001/004: true)."""
    skip_order: Literal["up_skip", "skip_up"] = "up_skip"
    """Channel order of the decoder's concatenation; matters only for loading another code's
    weights."""
    out_activation: Literal["none", "sigmoid", "tanh", "softplus"] = "none"
    """Activation on the output; none for logits (segmentation) and signed images."""

    check_name = _registered("name", registry.MODELS, "model")

    @model_validator(mode="before")
    @classmethod
    def _apply_preset(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("preset") is not None:
            preset = data["preset"]
            if preset not in cls.PRESETS:
                raise ValueError(f"unknown preset {preset!r}; allowed: {', '.join(cls.PRESETS)}")
            data = {**cls.PRESETS[preset], **data}
        return data

    @model_validator(mode="after")
    def _residual(self) -> "ModelSpec":
        if self.residual and self.in_channels != self.out_channels:
            raise ValueError("residual needs in_channels == out_channels")
        return self


class StageSpec(Section):
    """Copy the data to the node's local disk before training: once per node (the first task
    there copies, under a lock; the others wait and read the copy), again only when a source
    file's name, size or mtime changed. A copy that cannot be made (no space, no folder) is
    skipped with a warning and the point reads the shared path."""

    to: str = Field(..., min_length=1)
    """Folder on the node, ``$VARIABLES`` expanded there, e.g. ``$TMPDIR`` or ``/raid/$USER``."""
    when: Literal["auto", "never"] = "auto"
    """auto: stage when ``to`` expands on the node; never: read the shared path."""


class DataSection(Section):
    """Base of a workload's ``data:`` section: what every workload's data offers."""

    stage: Optional[StageSpec] = None
    """Node-local staging of the data's folders and files (the workload's ``data_paths``)."""


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
    kind: Literal["sgdr", "decay_restarts", "constant"] = "sgdr"
    """sgdr: warm-up then cosine annealing with warm restarts. constant: the lr as given after the
    warm-up, if any (seeds 000, 002 and 004 used no schedule); the restart and decay settings
    do not apply to it (a parent spec's may stay). decay_restarts (seed 003): the lr decays
    by ``decay`` per epoch and restarts with a fresh optimiser (its moments reset) at epochs L, 2L,
    3L + I, 4L + 3I, ...: periods L, L, L + I, L + 2I, ... (L restart_epochs, I
    restart_increment)."""
    warmup_epochs: float = Field(0.0, ge=0)
    """Linear warm-up from warmup_start_factor x lr to lr over this many epochs (fractions
    allowed)."""
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
    decay: float = Field(0.95, gt=0, le=1)
    """decay_restarts: lr factor per epoch within a period."""
    restart_increment: float = Field(0.0, ge=0)
    """decay_restarts: how much longer each period is than the one before, in epochs."""
    reset_optimizer: bool = True
    """decay_restarts: clear the optimiser's state (Adam moments) at each restart, as the seed
    re-creates it."""

    @model_validator(mode="after")
    def _kind(self) -> "ScheduleSpec":
        if self.kind == "decay_restarts" and (self.warmup_epochs or self.restart_mult != 1):
            raise ValueError(
                "kind decay_restarts has no warm-up and grows periods by restart_increment; "
                "leave warmup_epochs 0 and restart_mult 1"
            )
        return self


class TrainSpec(Section):
    epochs: int = Field(10, ge=1, le=MAX_EPOCHS)
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
    """Validation metric that selects best.pt; one of the task's metrics (default: the task's
    own)."""
    steps_per_epoch: Optional[int] = Field(None, ge=1)
    """Cap on optimiser steps per epoch (quick experiments)."""
    nonfinite_patience: int = Field(0, ge=0)
    """Non-finite training losses in a row tolerated before the point fails (0: the first stops it).
    Useful with fp16, whose scaler skips such steps; in fp32 a NaN step has already spoiled the
    weights."""
    max_requeues: int = Field(3, ge=0)
    """How often a point may be requeued after preemption or a time limit."""
    threads: Optional[int] = Field(None, ge=1)
    """torch intra-op threads per rank on CPU (default: torch's choice)."""
    compile: bool = False
    """torch.compile every network (after DDP wrapping); the first steps pay the compilation."""
    channels_last: bool = False
    """Networks and 4-D image batches in channels-last memory format (faster convolutions with
    tensor cores under autocast)."""
    stop_check_every: int = Field(10, ge=1)
    """Under DDP, steps between the ranks' agreements on a stop signal and on non-finite losses:
    each starts a non-blocking all-reduce whose result is read this many steps later, so no step
    waits on it (``train.nonfinite_patience`` is then checked up to twice this late)."""
    sync_batchnorm: Optional[bool] = None
    """SyncBatchNorm under DDP on GPUs: batch statistics over all ranks, needed at a few samples per
    GPU (default: on when there are several ranks on GPUs and the model has batch norm)."""


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
    post: Optional[bool] = None
    """Post each call from the points to the server. Every call is written to points/<i>/visdom.log
    either way; the login node's follower (`mrihpc visdom start`) streams those files into its
    server. Default: post with the local executor (the server is on this host), not under Slurm
    (compute nodes may have no route to the login node)."""

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


class AdaptiveSpec(Section):
    """Successive halving over the sweep's points, from Slurm arrays and no server: rung 0 trains
    every point for ``min_epochs``; a small promotion job after each rung keeps the best
    1/``eta`` (by the validation ``metric``) and queues the next rung, which resumes them from
    their last.pt for ``eta`` times the epochs, up to ``max_epochs`` (the points' train.epochs,
    so the schedule is the full run's, cut short)."""

    kind: Literal["successive_halving"] = "successive_halving"
    """successive_halving: synchronous rungs, each one array and one promotion job."""
    metric: Optional[str] = None
    """The validation metric that ranks a rung (the best ``val_<metric>`` of its epochs);
    default ``train.metric``."""
    min_epochs: int = Field(1, ge=1, le=MAX_EPOCHS)
    """Rung 0's epochs."""
    eta: int = Field(2, ge=2, le=100)
    """Each rung keeps the best 1/eta of the last (at least one configuration) and trains them
    eta times as long."""
    max_epochs: Optional[int] = Field(None, ge=1, le=MAX_EPOCHS)
    """The last rung's epochs; default ``train.epochs``, and if given it must equal it."""
    partition: Optional[str] = Field(None, pattern=r"^[A-Za-z0-9_.-]+$")
    """Where the promotion jobs run (1 CPU, no GPU); default ``cluster.partition``. A site whose
    GPU partitions refuse jobs without a GPU names a CPU partition here."""


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
    adaptive: Optional[AdaptiveSpec] = None
    """Successive halving instead of training every point to the end; off when absent."""

    @model_validator(mode="after")
    def _zip_lengths(self) -> "SweepSpec":
        lengths = {k: len(v) for k, v in self.zip.items()}
        if len(set(lengths.values())) > 1:
            raise ValueError(f"zip lists must have equal lengths, got {lengths}")
        for key, values in {**self.grid, **self.zip}.items():
            if not values:
                raise ValueError(f"{key}: empty list of values")
        return self

    @model_serializer(mode="wrap")
    def _without_empty_axes(self, handler) -> dict:
        """Dumps (config.yaml, provenance) leave out the axes not swept along: a spec file that
        writes an empty axis is refused (``specfile.load_raw``), and a dump must submit again."""

        def empty(k: str, v: Any) -> bool:
            return (k in ("grid", "zip", "points") and v in ({}, [])) or (
                k == "adaptive" and v is None
            )

        return {k: v for k, v in handler(self).items() if not empty(k, v)}


def per_name(section: type[Section]):
    """A validator for ``optim`` / ``schedule``: one mapping of ``section``'s fields applies to
    every optimiser (stored under ``"all"``); a mapping of optimiser names to such mappings gives
    each optimiser its own."""

    def wrap(cls, value: Any) -> Any:
        return value if keyed_by_name(value, section) else {"all": value}

    return classmethod(wrap)


def keyed_by_name(value: Any, section: type[Section]) -> bool:
    """True when ``value`` maps optimiser names to settings rather than giving one setting."""
    return (
        isinstance(value, dict)
        and bool(value)
        and all(isinstance(v, dict) for v in value.values())
        and not set(value) & set(section.model_fields)
    )


class JobSpec(Section):
    """The whole spec. ``data`` and ``model`` belong to the task: ``workloads.job_spec_class(task)``
    types them."""

    #: optimiser -> the one whose settings it takes when the spec gives none (the task's)
    OPTIMIZER_FALLBACKS: ClassVar[dict[str, str]] = {}

    name: str = Field(pattern=NAME_PATTERN)
    """Experiment name: the run folder runs/<name>/ and the Slurm job name."""
    task: str
    """Workload (required): reconstruction or segmentation (see mrihpc/workloads/)."""
    data: Any = None
    """The task's data section: where the data comes from and how it is read."""
    model: Any = None
    """The task's network, or its named networks."""
    loss: dict[str, float] = {}
    """Loss terms of the task and their weights, e.g. {l1: 1.0, ssim: 0.1}; default the task's
    own."""
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
        """The settings of optimiser ``name``: its own, else its fallback's (the task's), else the
        ones for all."""
        return self._for(self.optim, name)

    def schedule_for(self, name: str) -> ScheduleSpec:
        return self._for(self.schedule, name)

    def _for(self, table: dict, name: str) -> Any:
        if name in table:
            return table[name]
        fallback = self.OPTIMIZER_FALLBACKS.get(name)
        return table[fallback] if fallback in table else table["all"]


def typed_job_spec(
    title: str, data: type, model: type, optimizer_fallbacks: dict[str, str]
) -> type[JobSpec]:
    """JobSpec with ``data`` and ``model`` typed by a workload (``workloads.job_spec_class``
    builds and caches one per task: the registry is asked once, not per ``optim_for``)."""
    cls = create_model(
        f"{title}JobSpec",
        __base__=JobSpec,
        __doc__=JobSpec.__doc__,
        data=(data, ...),
        model=(model, model()),
    )
    cls.OPTIMIZER_FALLBACKS = dict(optimizer_fallbacks)
    return cls
