"""Knee GAN (seed 000): the knee data section, a {G, D} model section and the descriptor.

``loss:`` is the generator's: ``adv`` (BCE-with-logits of D on the fakes) plus content terms
(``l1``, ``mse``, ``ssim``) against the fully sampled image; the discriminator's loss is fixed,
0.5 (BCE(D(real), 1) + BCE(D(fake), 0)). ``optim:`` / ``schedule:`` may be keyed by G and D.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from mrihpc.spec import ModelSpec, Section, check_widths
from mrihpc.workloads import Datasets, Workload
from mrihpc.workloads.knee.spec import DataSpec


class DiscriminatorSpec(Section):
    """A conv stack emitting logits (mrihpc/models/discriminator.py)."""

    widths: list[int] = [16, 32, 64]
    """Channels of the stride-2 blocks (seed 000: 16, 32, 64; seed 002: 64, 128, 256, 512)."""
    kernel: int = Field(4, ge=2, le=7)
    """Kernel of the stride-2 convs (seed 000: 4; seed 002: 3)."""
    bias: bool = False
    norm: Literal["none", "instance", "batch"] = "none"
    """Norm after every block but the first."""
    pool: Literal["max", "avg"] = "max"
    """How the head's patch logits become one per image: max (seed 000) or mean (a PatchGAN)."""

    @field_validator("widths")
    @classmethod
    def _widths(cls, v: list[int]) -> list[int]:
        return check_widths(v)


class KneeGanModel(Section):
    G: ModelSpec = ModelSpec(preset="nc2019", out_channels=2)
    """The generator: the knee U-Net (nc2019: 13,394,242 parameters with 2 outputs read as real /
    imaginary, whose magnitude is the image; or 1 output, the magnitude itself)."""
    D: DiscriminatorSpec = DiscriminatorSpec()
    """The discriminator on magnitude images (seed 000's: 42,240 parameters)."""

    @field_validator("G")
    @classmethod
    def _outputs(cls, v: ModelSpec) -> ModelSpec:
        if v.out_channels not in (1, 2) or v.in_channels != 1:
            raise ValueError(
                "the generator reads 1 channel (the zero-filled magnitude) and writes 1 "
                "(magnitude) or 2 (real, imaginary)"
            )
        return v


KL_DIV = (
    "is degenerate as an adversarial loss on sigmoid outputs (seed 000): kl_div(p, 1) = -p and "
    "kl_div(p, 0) = 0, so the discriminator never learns that fakes are fake; use adv "
    "(BCE-with-logits)"
)

WORKLOAD = Workload(
    name="knee_gan",
    title="KneeGan",
    data=DataSpec,
    model=KneeGanModel,
    losses={
        "adv": "mrihpc.losses:adversarial",
        "l1": "mrihpc.losses:l1_loss",
        "mse": "mrihpc.losses:mse_loss",
        "ssim": "mrihpc.losses:ssim_loss",
    },
    metrics={"ssim": "max", "psnr": "max", "nmse": "min", "loss": "min"},
    default_metric="ssim",
    default_loss={"adv": 1.0, "l1": 100.0},
    task="mrihpc.workloads.knee_gan.task:KneeGanTask",
    datasets=Datasets(
        train=("epoch_dependent", "slotted", "collated"), scored=("scored", "slotted", "collated")
    ),  # the knee workload's k-space slices
    predict="mrihpc.workloads.knee_gan.predict:predict",
    check_data="mrihpc.workloads.knee.spec:check_data",
    check_spec="mrihpc.workloads.knee.spec:check_spec",
    prepare_data="mrihpc.workloads.knee.spec:prepare_data",
    optimizers=("G", "D"),
    rejected_losses={"kl_div": KL_DIV, "kldiv": KL_DIV},
    synth="mrihpc.workloads.knee.spec:TWIN",  # the knee workload's data
)
