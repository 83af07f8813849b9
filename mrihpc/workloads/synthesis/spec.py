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

from typing import Literal, Optional

from pydantic import Field, model_validator

from mrihpc.spec import Section
from mrihpc.workloads import Workload
from mrihpc.workloads.knee_gan.spec import KL_DIV, DiscriminatorSpec


class IxiSynthetic(Section):
    subjects: int = Field(60, ge=5)
    """Subjects with both contrasts."""
    incomplete: int = Field(2, ge=0)
    """Extra subjects with only the source contrast (the reader reports and skips them)."""
    size: int = Field(64, ge=32)
    seed: int = 0


class IxiData(Section):
    root: Optional[str] = None
    """Folder of '<id> - <contrast>.pt' files."""
    synthetic: Optional[IxiSynthetic] = None
    """Brain phantoms with one anatomy and two contrast mappings, in the same naming (cached)."""
    source: str = "T1"
    """Input contrast (as in the file names)."""
    target: str = "T2"
    test_fraction: float = Field(0.2, gt=0, lt=1)
    """Subjects held out (seed: 116 of 577) after sorting the ids and a seeded shuffle."""
    split_seed: int = 0
    """Seed of that shuffle (separate from train.seed, so a seed sweep keeps one split)."""
    value_range: Optional[tuple[float, float]] = None
    """Intensity range mapped to [-1, 1] for the Tanh generator; default measured over the training files."""
    train_scored: Optional[int] = Field(None, ge=1)
    """Training subjects scored at each validation for the train_* columns (default all)."""
    samples: int = Field(5, ge=1)
    """Test subjects in the per-epoch sample grid (the same ones every epoch)."""

    @model_validator(mode="after")
    def _source(self) -> "IxiData":
        if (self.root is None) == (self.synthetic is None):
            raise ValueError("give exactly one of data.root (a folder of '<id> - <contrast>.pt') or data.synthetic")
        if self.source == self.target:
            raise ValueError(f"source and target are both {self.source!r}")
        if self.value_range is not None and self.value_range[0] >= self.value_range[1]:
            raise ValueError(f"value_range {list(self.value_range)}: low must be below high")
        return self


class GeneratorSpec(Section):
    """The pix2pix-style U-Net (mrihpc/models/pix2pix.py): 13,611,073 parameters at the defaults."""

    widths: list[int] = [64, 128, 256, 512, 512]
    norm: Literal["instance", "batch", "none"] = "instance"


class SynthesisModel(Section):
    mode: Literal["generator", "cgan", "cyclegan"] = "cgan"
    G: GeneratorSpec = GeneratorSpec()
    """Generator(s): T1 -> T2 (and T2 -> T1 in a CycleGAN)."""
    D: DiscriminatorSpec = DiscriminatorSpec(widths=[64, 128, 256, 512], kernel=3, bias=True, pool="avg")
    """Discriminator(s): seed 002's blocks with a k4 head over the whole image (1,558,017 parameters;
    the cGAN's sees (image, T1): 2 channels). Its patch map is averaged when larger than 1 x 1."""


_MODE_LOSSES = {"generator": {"l1", "mse", "ssim"}, "cgan": {"adv", "l1", "mse", "ssim"},
                "cyclegan": {"adv", "cycle", "identity", "l1", "mse", "ssim"}}


def check_spec(spec) -> list[str]:
    mode, names = spec.model.mode, set(spec.loss)
    problems = [f"loss.{n}: not a term of mode {mode}; allowed: {', '.join(sorted(_MODE_LOSSES[mode]))}"
                for n in sorted(names - _MODE_LOSSES[mode])]
    if mode in ("cgan", "cyclegan") and not spec.loss.get("adv"):
        problems.append(f"loss: mode {mode} needs an adv term (the adversarial loss), e.g. {{adv: 1.0, l1: 1.0}}")
    if mode == "cyclegan" and not spec.loss.get("cycle"):
        problems.append("loss: mode cyclegan needs a cycle term, e.g. {adv: 1.0, cycle: 10.0}")
    size = 2 ** len(spec.model.G.widths)
    if spec.data.synthetic is not None and spec.data.synthetic.size % size:
        problems.append(f"data.synthetic.size: {spec.data.synthetic.size} is not a multiple of {size} (2 ** G levels)")
    return problems


def check_data(spec, source: str) -> list[str]:
    from mrihpc.workloads.synthesis.data import DataError, pair_files

    if spec.data.root is None:
        return []
    try:
        pair_files(spec.data)
    except DataError as e:
        return [f"{source}: data.root: {e}"]
    return []


WORKLOAD = Workload(
    name="synthesis", title="Synthesis", data=IxiData, model=SynthesisModel,
    losses={"adv": "mrihpc.losses:adversarial", "l1": "mrihpc.losses:l1_loss", "mse": "mrihpc.losses:mse_loss",
            "ssim": "mrihpc.losses:ssim_loss", "cycle": "mrihpc.losses:cycle_l1", "identity": "mrihpc.losses:identity_l1"},
    metrics={"ssim": "max", "psnr": "max", "mae": "min", "loss": "min"},
    default_metric="ssim", default_loss={"l1": 1.0},
    task="mrihpc.workloads.synthesis.task:SynthesisTask",
    predict="mrihpc.workloads.synthesis.predict:predict",
    check_data="mrihpc.workloads.synthesis.spec:check_data",
    check_spec="mrihpc.workloads.synthesis.spec:check_spec",
    optimizers=("G", "D", "G_back", "D_back"),
    optimizer_fallbacks={"G_back": "G", "D_back": "D"},
    rejected_losses={"kl_div": KL_DIV, "kldiv": KL_DIV},
)
