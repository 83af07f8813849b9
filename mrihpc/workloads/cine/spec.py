"""Cine reconstruction (seed 001): the ``data`` and ``model`` sections and the descriptor."""

from __future__ import annotations

from typing import Any, ClassVar, Literal, Optional

from pydantic import Field, model_validator

from mrihpc.data import SSIM_WINDOW
from mrihpc.spec import BATCHNORM_UNET, DataSection, MAX_WIDTH, ModelSpec, Section
from mrihpc.workloads import Datasets, SynthTwin, Workload


class CineMask(Section):
    """Variable-density Cartesian undersampling, one mask per frame (Schlemper's cartesian_mask)."""

    acceleration: int = Field(6, ge=1)
    """Acceleration: round(X / acceleration) lines are kept per frame (6: 32 of 192)."""
    sample_n: int = Field(10, ge=0)
    """Fully sampled centre lines."""
    fresh_per_epoch: bool = False
    """Draw new training masks every epoch; false keeps one per case and frame, as the seed did.
    Validation masks are always fixed per case."""


#: the smallest T, X and Y the metrics are defined for (the SSIM's 7-tap window on every axis)
MIN_SIDE = SSIM_WINDOW


def mask_problem(acceleration: int, sample_n: int, lines: int) -> str | None:
    """Why ``data.mask`` cannot sample ``lines`` phase-encode lines, or None."""
    kept = lines // acceleration
    if kept < 1:
        return f"acceleration {acceleration} keeps no line of {lines}; allowed: 1-{lines}"
    if sample_n > kept:
        return (
            f"sample_n {sample_n} centre lines exceed the {kept} of {lines} lines acceleration "
            f"{acceleration} keeps; allowed: sample_n <= {kept}, or a lower acceleration"
        )
    return None


class CineSynthetic(Section):
    cases: int = Field(28, ge=7)
    """Cases (split 4 : 1 : 2)."""
    frames: int = Field(20, ge=MIN_SIDE)
    """Frames per case (at least 7: the 3-D SSIM's window spans 7 frames)."""
    size: int = Field(192, ge=32)
    """Image side (X = Y)."""
    seed: int = 0


class CineData(DataSection):
    root: Optional[str] = None
    """The .npz file holding one array [N, T, X, Y], real or complex (the course's cine.npz)."""
    key: str = "dataset"
    """Name of the array inside the .npz."""
    synthetic: Optional[CineSynthetic] = None
    """A beating-heart phantom set in the same layout instead of root (cached once)."""
    mask: CineMask = CineMask()
    """Undersampling."""
    split: tuple[int, int, int] = (4, 1, 2)
    """Train : validation : test proportions of the cases (seed: 114 / 29 / 57 of 200)."""
    max_cases: Optional[int] = Field(None, ge=7)
    """Use at most this many cases (quick experiments)."""

    @model_validator(mode="after")
    def _source(self) -> "CineData":
        if (self.root is None) == (self.synthetic is None):
            raise ValueError(
                "give exactly one of data.root (a .npz file) or data.synthetic (phantoms)"
            )
        if min(self.split) < 1:
            raise ValueError(f"split {self.split}: every part needs a share >= 1")
        if self.synthetic is not None:
            why = mask_problem(self.mask.acceleration, self.mask.sample_n, self.synthetic.size)
            if why:
                raise ValueError(f"mask: {why}")
        return self


class RefinerSpec(Section):
    width: int = Field(64, ge=1, le=MAX_WIDTH)
    """Feature channels of the residual blocks."""
    blocks: int = Field(2, ge=0)
    """Residual blocks (0: no refiner)."""


class CineUNet(ModelSpec):
    """One of the cine model's U-Nets; ``preset: cine`` is seed 001's."""

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        **ModelSpec.PRESETS,
        # Seed 001's U-Nets (same topology, 64 features; 20 frames in and out: 31,048,660
        # parameters)
        "cine": dict(BATCHNORM_UNET, channels=64, depth=4),
    }


class CineModel(Section):
    """Two U-Nets (real and imaginary frames as channels, no shared weights), their magnitude,
    an optional data-consistency step, then a residual refiner over the frames."""

    unet: CineUNet = CineUNet(preset="cine")
    """Each U-Net; in/out channels are set to the number of frames."""
    refiner: RefinerSpec = RefinerSpec()
    data_consistency: bool = False
    """Put the measured k-space lines back into the U-Nets' complex image before the refiner."""
    out_activation: Literal["none", "sigmoid"] = "none"
    """Activation on the final magnitude (none: the seed's sigmoid on signed outputs was a bug)."""


def check_data(spec, source: str) -> list[str]:
    from pathlib import Path

    if spec.data.root is None:
        return []
    path = Path(spec.data.root)
    if not path.is_file():
        return [
            f"{source}: data.root: {path} is not a file; expected the .npz holding [N, T, X, Y]"
        ]
    return []


def prepare_data(spec) -> None:
    from mrihpc.data import DataError
    from mrihpc.workloads.cine.data import meta, source_array

    folder = source_array(
        spec.data
    )  # converts the .npz (or writes the phantoms) into the cache once
    why = mask_problem(
        spec.data.mask.acceleration, spec.data.mask.sample_n, meta(folder)["shape"][2]
    )
    if why and spec.data.root is not None:
        raise DataError(
            f"{spec.data.root}: {spec.data.key} has {meta(folder)['shape'][2]} lines (X); "
            f"data.mask: {why}"
        )


TWIN = SynthTwin(
    kind="cine",
    help="cine.npz holding [N, T, X, Y] magnitude frames of beating-heart phantoms",
    arguments=(
        (("--cases",), {"type": int, "default": 200}),
        (("--frames",), {"type": int, "default": 20}),
        (("--size",), {"type": int, "default": 192}),
    ),
    write="mrihpc.workloads.cine.synth:write_twin",
)

WORKLOAD = Workload(
    name="cine",
    title="Cine",
    data=CineData,
    model=CineModel,
    losses={
        "mse": "mrihpc.losses:mse_loss",
        "l1": "mrihpc.losses:l1_loss",
        "ssim": "mrihpc.losses:ssim_loss",
    },
    metrics={"ssim": "max", "psnr": "max", "psnr1": "max", "mse": "min", "loss": "min"},
    default_metric="ssim",
    default_loss={"mse": 1.0},
    task="mrihpc.workloads.cine.task:CineTask",
    datasets=Datasets(train=("epoch_dependent",)),  # undersampling masks drawn per epoch
    predict="mrihpc.workloads.cine.predict:predict",
    check_data="mrihpc.workloads.cine.spec:check_data",
    prepare_data="mrihpc.workloads.cine.spec:prepare_data",
    report_std=("psnr1", "psnr", "ssim", "mse"),  # the seed reports mean +/- std over cases
    synth="mrihpc.workloads.cine.spec:TWIN",
)
