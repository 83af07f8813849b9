"""The workloads: one package each, found by the task name a spec gives.

A workload's package holds its spec sections, data reader, task (the training step and the
evaluation) and prediction writer. Its ``spec`` module is light (pydantic and numpy, never
torch): the login node imports it to validate a spec; the node imports the task behind the
strings of its ``Workload`` only when it trains. Adding a workload is one line in
``WORKLOADS``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from mrihpc.registry import load

#: task name -> "module:attribute" of its Workload descriptor (a light module)
WORKLOADS = {
    "reconstruction": "mrihpc.workloads.knee.spec:WORKLOAD",
    "segmentation": "mrihpc.workloads.segmentation.spec:WORKLOAD",
    "cine": "mrihpc.workloads.cine.spec:WORKLOAD",
    "sinogram": "mrihpc.workloads.sinogram.spec:WORKLOAD",
    "knee_gan": "mrihpc.workloads.knee_gan.spec:WORKLOAD",
    "synthesis": "mrihpc.workloads.synthesis.spec:WORKLOAD",
}


def resolve(target: str) -> Any:
    """Import and return the object at ``"module:attribute"`` of a descriptor."""
    return load(target)


@dataclass(frozen=True)
class SynthTwin:
    """A workload's synthetic twin as ``mrihpc data synth <kind> OUT [options]`` offers it."""

    kind: str
    """The verb's word for it (knee, acdc, ...); several tasks may share one twin."""
    help: str
    arguments: tuple[tuple[tuple[str, ...], dict], ...]
    """argparse ``(flags, keyword arguments)`` of its options."""
    write: str
    """"module:function" ``(out: Path, args) -> str``: writes the data, returns what it wrote."""


def twins() -> dict[str, SynthTwin]:
    """kind -> the synthetic twin, over every registered workload that has one."""
    out: dict[str, SynthTwin] = {}
    for name in WORKLOADS:
        w = get(name)
        if w.synth is not None:
            twin = resolve(w.synth)
            out.setdefault(twin.kind, twin)
    return out


#: what a dataset may be to the Trainer, by name (the protocols of ``node/datasets.py``), and the
#: sets it matters for: ``scored`` says which items form one volume (``volumes_index``: validation,
#: test and ``also_scored`` sets), ``epoch_dependent`` is told each epoch (``set_epoch``: the
#: training set), ``slotted`` has fixed item shapes (``slot_shapes``) and ``collated`` batches its
#: own items (``collate``): any set
DATASET_TRAITS = {
    "scored": ("scored",),
    "epoch_dependent": ("train",),
    "slotted": ("train", "scored"),
    "collated": ("train", "scored"),
}


@dataclass(frozen=True)
class Datasets:
    """The protocols a workload's datasets follow, declared by name (``DATASET_TRAITS``): the
    Trainer checks every set its Task builds against them at start, both ways (a declared one
    missing, or one it would use but not declared, is an error naming the set)."""

    train: tuple[str, ...] = ()
    """The training set's."""
    scored: tuple[str, ...] = ("scored",)
    """The validation, test and ``also_scored`` sets'; ``scored`` is always among them."""

    def __post_init__(self):
        for role in ("train", "scored"):
            allowed = [t for t, roles in DATASET_TRAITS.items() if role in roles]
            unknown = [t for t in getattr(self, role) if t not in allowed]
            if unknown:
                raise ValueError(
                    f"Datasets.{role}: {', '.join(unknown)} not a protocol of {role} sets; "
                    f"allowed: {', '.join(allowed)}"
                )
        if "scored" not in self.scored:
            raise ValueError("Datasets.scored: a validation set is always 'scored'")

    def unused(self, role: str) -> tuple[str, ...]:
        """The protocols the Trainer never asks of a ``role`` set (a training set may well offer
        ``volumes_index``: its class is often the validation set's)."""
        return tuple(t for t, roles in DATASET_TRAITS.items() if role not in roles)


@dataclass(frozen=True)
class Workload:
    """What a task is to the rest of mrihpc: its typed sections, names, and where its code lives."""

    name: str
    """The spec's ``task:``."""
    title: str
    """Class-name prefix of its JobSpec (``SegmentationJobSpec``)."""
    data: type
    """pydantic section class of ``data:``."""
    model: type
    """pydantic section class of ``model:`` (one network, or a section naming several)."""
    losses: dict[str, str]
    """loss term name -> "module:function" computing it from (outputs, batch)."""
    metrics: dict[str, str]
    """validation metric -> "max" or "min"; ``train.metric`` must be one of them."""
    default_metric: str
    default_loss: dict[str, float]
    task: str
    """"module:Class" of its Task."""
    predict: str
    """"module:function" ``(Trained, split) -> list[Path]`` writing predictions in its format under
    ``Trained.output_dir(split)``: the networks come built, loaded and on the device
    (``node.trained.load_trained``)."""
    check_data: Optional[str] = None
    """"module:function" ``(spec, source) -> list[str]``: problems with the data, on the login
    node."""
    prepare_data: Optional[str] = None
    """"module:function" ``(spec) -> None``: generate synthetic data once, before submission."""
    check_spec: Optional[str] = None
    """"module:function" ``(spec) -> list[str]``: ``key.path: why`` problems across sections."""
    datasets: Datasets = Datasets()
    """The protocols its train and scored sets follow (checked against the sets at start)."""
    optimizers: tuple[str, ...] = ("main",)
    """Names of the task's optimisers (``optim:`` and ``schedule:`` may be keyed by them), the one
    declaration of them: ``("main",)`` updates every network; otherwise each updates the network
    of its name, and the Trainer refuses a network without one (``Task.optimizers``)."""
    optimizers_of: Optional[str] = None
    """"module:function" ``(model dict as written) -> names``: the optimisers a spec's model
    builds, where that depends on it (synthesis's mode); default all of ``optimizers``."""
    optimizer_fallbacks: dict[str, str] = field(default_factory=dict)
    """optimiser -> the one whose settings it takes when ``optim:`` / ``schedule:`` name only that
    (a CycleGAN's backward generator G_back takes G's)."""
    rejected_losses: dict[str, str] = field(default_factory=dict)
    """loss names refused with a reason (a seed's mistake a user may reach for)."""
    report_std: tuple[str, ...] = ()
    """metrics whose standard deviation over the validation cases is reported too (val_<m>_std)."""
    data_paths: tuple[str, ...] = ("root",)
    """fields of ``data:`` holding host paths, mounted into containers at their own paths."""
    synth: Optional[str] = None
    """"module:attribute" of its ``SynthTwin`` (``mrihpc data synth``), in a light module."""

    def direction(self, column: str) -> str:
        """ "max" or "min" for a metric or a results column (val_dice_lv -> dice -> max)."""
        return metric_direction(self.metrics, column)

    def check_raw(self, raw: dict) -> list[str]:
        """Problems with the task-owned names of a spec dict, as ``key.path: why`` lines."""
        problems = []
        loss = raw.get("loss")
        if isinstance(loss, dict):
            for name in loss:
                if name in self.rejected_losses:
                    problems.append(f"loss.{name}: {self.rejected_losses[name]}")
                elif name not in self.losses:
                    problems.append(
                        f"loss.{name}: not a loss of task {self.name}; allowed: "
                        f"{', '.join(self.losses)}"
                    )
        metric = (
            (raw.get("train") or {}).get("metric") if isinstance(raw.get("train"), dict) else None
        )
        if metric is not None and metric not in self.metrics:
            problems.append(
                f"train.metric: {metric!r} is not a validation metric of task {self.name}; "
                f"allowed: {', '.join(self.metrics)}"
            )
        for section in ("optim", "schedule"):
            keyed = _keyed(raw.get(section), section)
            if keyed is None:
                continue
            unknown = [k for k in keyed if k != "all" and k not in self.optimizers]
            if unknown:
                problems.append(
                    f"{section}: {', '.join(unknown)} not an optimiser of task {self.name}; "
                    f"allowed: all, {', '.join(self.optimizers)} (or one mapping for all)"
                )
            elif "all" not in keyed and (
                missing := [
                    o
                    for o in self.built_optimizers(raw)
                    if o not in keyed and self.optimizer_fallbacks.get(o) not in keyed
                ]
            ):
                problems.append(
                    f"{section}: no settings for {', '.join(sorted(missing))}; add them "
                    "or an 'all' entry"
                )
        return problems

    def built_optimizers(self, raw: dict) -> tuple[str, ...]:
        """The optimisers a spec dict's model trains (settings are needed for these only)."""
        model = raw.get("model") if isinstance(raw.get("model"), dict) else {}
        return tuple(resolve(self.optimizers_of)(model)) if self.optimizers_of else self.optimizers

    def with_defaults(self, raw: dict) -> dict:
        """A copy of ``raw`` with the task's default loss and metric filled in."""
        out = dict(raw)
        if not out.get("loss"):
            out["loss"] = dict(self.default_loss)
        train = out.get("train")
        if train is None or isinstance(train, dict) and train.get("metric") is None:
            out["train"] = {**(train or {}), "metric": self.default_metric}
        return out


def metric_direction(metrics: dict[str, str], column: str) -> str:
    """ "max" or "min" for a metric or a results column, given a task's ``{metric: direction}``."""
    words = column.removeprefix("best_").removeprefix("val_").split("_")
    # the longest run of words that names a metric: train_base_seed_mae -> mae, dice_lv -> dice
    for n in range(len(words), 0, -1):
        for i in range(len(words) - n + 1):
            if "_".join(words[i : i + n]) in metrics:
                return metrics["_".join(words[i : i + n])]
    return "max"


def _keyed(value: Any, section: str) -> Optional[dict]:
    """``value`` when it is keyed by optimiser name, else None (one setting for all)."""
    from mrihpc.spec import OptimSpec, ScheduleSpec, keyed_by_name

    return (
        value if keyed_by_name(value, OptimSpec if section == "optim" else ScheduleSpec) else None
    )


_SPEC_CLASSES: dict[str, Any] = {}


def job_spec_class(task: str):
    """JobSpec with ``data`` and ``model`` typed by the workload ``task`` (cached per task)."""
    if task not in _SPEC_CLASSES:
        from mrihpc.spec import typed_job_spec  # spec models only when a spec is validated

        w = get(task)
        _SPEC_CLASSES[task] = typed_job_spec(w.title, w.data, w.model, w.optimizer_fallbacks)
    return _SPEC_CLASSES[task]


def names() -> list[str]:
    return list(WORKLOADS)


def get(name: str) -> Workload:
    """The Workload registered as ``name``; KeyError lists the known ones."""
    if name not in WORKLOADS:
        raise KeyError(f"unknown task {name!r}; allowed: {', '.join(WORKLOADS)}")
    return resolve(WORKLOADS[name])
