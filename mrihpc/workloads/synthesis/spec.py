"""IXI T1 -> T2 synthesis (seed 002): the ``data`` and ``model`` sections and the descriptor.

Layout: one folder of ``.pt`` tensors, two per subject, ``<id> - <contrast>.pt`` (the IXI
size64 set: ``sub-IXI002 - T1.pt`` and ``sub-IXI002 - T2.pt``, 64 x 64 each).

``model.mode`` picks the training: ``generator`` (the U-Net on ``l1`` alone), ``cgan`` (G first:
``adv`` + ``l1``; then D on 0.5 (real + detached fake), D conditioned on T1), ``cyclegan`` (G: T1 ->
T2 and G_back: T2 -> T1, D and D_back, ``adv`` + ``cycle`` (+ ``identity``) per direction, four
optimisers). The weights of ``loss:`` are the lambdas (the seed: 1 each; pix2pix uses l1 100,
CycleGAN cycle 10).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional

from pydantic import Field, field_validator, model_validator

from mrihpc.spec import check_widths, DataSection, Section
from mrihpc.workloads import Datasets, SynthTwin, Workload
from mrihpc.workloads.knee_gan.spec import KL_DIV, DiscriminatorSpec


class IxiSynthetic(Section):
    subjects: int = Field(60, ge=5)
    """Subjects with both contrasts."""
    incomplete: int = Field(2, ge=0)
    """Extra subjects with only the source contrast (the reader reports and skips them)."""
    size: int = Field(64, ge=32)
    seed: int = 0


class IxiData(DataSection):
    root: Optional[str] = None
    """Folder of '<id> - <contrast>.pt' files."""
    synthetic: Optional[IxiSynthetic] = None
    """Brain phantoms with one anatomy and two contrast mappings, in the same naming (cached)."""
    source: str = "T1"
    """Input contrast (as in the file names)."""
    target: str = "T2"
    test_fraction: float = Field(0.2, gt=0, lt=1)
    """Subjects held out for the test (seed: 116 of 577) after sorting the ids and a seeded shuffle;
    scored once when training ends (test_*, test_last_*), never used to choose a model."""
    val_fraction: float = Field(0.1, gt=0, lt=1)
    """Subjects of the training part that validate instead (val_*, best.pt): 58 of 577, leaving 403
    to train. The seed had none and chose its model on the test subjects."""
    split_seed: int = 0
    """Seed of that shuffle (separate from train.seed, so a seed sweep keeps one split)."""
    value_range: Optional[tuple[float, float]] = None
    """Intensity range mapped to [-1, 1] for the Tanh generator; default measured over the training
    files."""
    train_scored: Optional[int] = Field(None, ge=1)
    """Training subjects scored at each validation for the train_* columns (default all)."""
    samples: int = Field(5, ge=1)
    """Test subjects in the per-epoch sample grid (the same ones every epoch)."""

    @model_validator(mode="after")
    def _source(self) -> "IxiData":
        if (self.root is None) == (self.synthetic is None):
            raise ValueError(
                "give exactly one of data.root (a folder of '<id> - <contrast>.pt') or "
                "data.synthetic"
            )
        if self.source == self.target:
            raise ValueError(f"source and target are both {self.source!r}")
        if self.value_range is not None and self.value_range[0] >= self.value_range[1]:
            raise ValueError(f"value_range {list(self.value_range)}: low must be below high")
        return self


class GeneratorSpec(Section):
    """The pix2pix-style U-Net (mrihpc/models/pix2pix.py): 13,611,073 parameters at the defaults."""

    widths: list[int] = [64, 128, 256, 512, 512]
    """Channels per level; the image side must be a multiple of 2 ** levels."""
    norm: Literal["instance", "batch", "none"] = "instance"

    @field_validator("widths")
    @classmethod
    def _widths(cls, v: list[int]) -> list[int]:
        return check_widths(v)


class SynthesisModel(Section):
    mode: Literal["generator", "cgan", "cyclegan"] = "cgan"
    G: GeneratorSpec = GeneratorSpec()
    """Generator(s): T1 -> T2 (and T2 -> T1 in a CycleGAN)."""
    D: DiscriminatorSpec = DiscriminatorSpec(
        widths=[64, 128, 256, 512], kernel=3, bias=True, pool="avg"
    )
    """Discriminator(s): seed 002's blocks with a k4 head over the whole image (1,558,017
    parameters; the cGAN's sees (image, T1): 2 channels). Its patch map is averaged when larger than
    1 x 1."""


#: the optimisers each mode trains (one per network)
MODE_OPTIMIZERS = {
    "generator": ("G",),
    "cgan": ("G", "D"),
    "cyclegan": ("G", "D", "G_back", "D_back"),
}


def optimizers_of(model: dict) -> tuple[str, ...]:
    """The optimisers of a model section as written (``mode`` defaults to cgan)."""
    return MODE_OPTIMIZERS.get(model.get("mode", "cgan"), MODE_OPTIMIZERS["cyclegan"])


_MODE_LOSSES = {
    "generator": {"l1", "mse", "ssim"},
    "cgan": {"adv", "l1", "mse", "ssim"},
    "cyclegan": {"adv", "cycle", "identity", "l1", "mse", "ssim"},
}


def check_spec(spec) -> list[str]:
    mode, names = spec.model.mode, set(spec.loss)
    problems = [
        f"loss.{n}: not a term of mode {mode}; allowed: {', '.join(sorted(_MODE_LOSSES[mode]))}"
        for n in sorted(names - _MODE_LOSSES[mode])
    ]
    if mode in ("cgan", "cyclegan") and not spec.loss.get("adv"):
        problems.append(
            f"loss: mode {mode} needs an adv term (the adversarial loss), e.g. {{adv: "
            "1.0, l1: 1.0}"
        )
    if mode == "cyclegan" and not spec.loss.get("cycle"):
        problems.append("loss: mode cyclegan needs a cycle term, e.g. {adv: 1.0, cycle: 10.0}")
    size = 2 ** len(spec.model.G.widths)
    if spec.data.synthetic is not None and spec.data.synthetic.size % size:
        problems.append(
            f"data.synthetic.size: {spec.data.synthetic.size} is not a multiple of {size} "
            "(2 ** G levels)"
        )
    return problems


def check_data(spec, source: str) -> list[str]:
    """Every image of every complete pair read once (a few seconds for IXI's 577 subjects): a bad
    file is named before queueing; the split must leave a training batch and a test subject."""
    from mrihpc.data import DataError

    if spec.data.root is None:
        return []
    root = Path(spec.data.root)
    try:  # a sweep's points share their data: read it once per submit (unless a file changed)
        files = tuple(
            (e.name, e.stat().st_size, e.stat().st_mtime_ns)
            for e in sorted(root.iterdir())
            if e.is_file()
        )
    except OSError:
        files = ()  # pair_files names the missing folder
    key = (spec.data.model_dump_json(), spec.train.batch_size, len(spec.model.G.widths), files)
    if key not in _CHECKED:
        try:
            _CHECKED[key] = _read_all(spec.data, spec.train.batch_size, len(spec.model.G.widths))
        except DataError as e:
            _CHECKED[key] = str(e)
    return [f"{source}: data.root: {_CHECKED[key]}"] if _CHECKED[key] else []


_CHECKED: dict[tuple, str] = {}


def _read_all(data: IxiData, batch: int, levels: int) -> str:
    """The first problem of the data (a DataError from the reader), or ''."""
    from mrihpc.workloads.synthesis.data import load_image, pair_files, split_subjects

    pairs, _ = pair_files(data)
    split = split_subjects(list(pairs), data.test_fraction, data.split_seed, data.val_fraction)
    if len(split["train"]) < batch or not split["val"] or not split["test"]:
        return (
            f"{data.root}: {len(pairs)} complete subject(s) give {len(split['train'])} training, "
            f"{len(split['val'])} validation and {len(split['test'])} test subject(s) at "
            f"data.val_fraction {data.val_fraction}, data.test_fraction {data.test_fraction}; "
            f"allowed: at least train.batch_size ({batch}) training, 1 validation and 1 test "
            "subject"
        )
    shapes: dict[tuple, Path] = {}
    for pair in pairs.values():
        for path in pair:
            shapes.setdefault(tuple(load_image(path).shape), path)
    if len(shapes) > 1:
        (a, first), (b, other) = list(shapes.items())[:2]
        return (
            f"{other}: size {list(b)}, but {first} is {list(a)}; allowed: one size for every image"
        )
    ((size, first),) = shapes.items()
    if any(side % 2**levels for side in size):
        return (
            f"{first}: size {list(size)}; allowed: sides divisible by {2**levels} (2 ** G "
            "levels, model.G.widths)"
        )
    return ""


TWIN = SynthTwin(
    kind="ixi",
    help="IXI-named '<id> - T1.pt' / '<id> - T2.pt' brain phantoms",
    arguments=(
        (("--subjects",), {"type": int, "default": 577, "help": "subjects with both contrasts"}),
        (("--incomplete",), {"type": int, "default": 2, "help": "further subjects with T1 only"}),
        (("--size",), {"type": int, "default": 64}),
    ),
    write="mrihpc.workloads.synthesis.synth:write_twin",
)

WORKLOAD = Workload(
    name="synthesis",
    title="Synthesis",
    data=IxiData,
    model=SynthesisModel,
    losses={
        "adv": "mrihpc.losses:adversarial",
        "l1": "mrihpc.losses:l1_loss",
        "mse": "mrihpc.losses:mse_loss",
        "ssim": "mrihpc.losses:ssim_loss",
        "cycle": "mrihpc.losses:cycle_l1",
        "identity": "mrihpc.losses:identity_l1",
    },
    metrics={"ssim": "max", "psnr": "max", "mae": "min", "loss": "min"},
    default_metric="ssim",
    default_loss={"l1": 1.0},
    task="mrihpc.workloads.synthesis.task:SynthesisTask",
    datasets=Datasets(),  # fixed pairs: nothing drawn per epoch
    predict="mrihpc.workloads.synthesis.predict:predict",
    check_data="mrihpc.workloads.synthesis.spec:check_data",
    check_spec="mrihpc.workloads.synthesis.spec:check_spec",
    optimizers=("G", "D", "G_back", "D_back"),
    optimizers_of="mrihpc.workloads.synthesis.spec:optimizers_of",
    optimizer_fallbacks={"G_back": "G", "D_back": "D"},
    rejected_losses={"kl_div": KL_DIV, "kldiv": KL_DIV},
    synth="mrihpc.workloads.synthesis.spec:TWIN",
)
