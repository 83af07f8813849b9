"""Knee k-space reconstruction (seed 000): the ``data`` section and the workload's descriptor.

Light on purpose (pydantic only): the login node imports it to validate a spec.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional

from pydantic import Field, field_validator, model_validator

from mrihpc import registry
from mrihpc.data.cache import dataset_folder
from mrihpc.spec import DataSection, ModelSpec, Section, _registered
from mrihpc.workloads import Datasets, SynthTwin, Workload


class MaskSpec(Section):
    kind: str = "random"
    """Column mask family: random or equispaced (fastMRI semantics)."""
    accelerations: list[int] = [4]
    """Acceleration factors; one (acceleration, centre fraction) pair is drawn per sample."""
    center_fractions: list[float] = [0.08]
    """Fully sampled centre fraction paired with each acceleration (seed 000: 0.08 at 4x, 0.04 at
    8x)."""

    check_kind = _registered("kind", registry.MASKS, "mask kind")

    @field_validator("accelerations")
    @classmethod
    def _acc(cls, v: list[int]) -> list[int]:
        if not v or any(a < 1 for a in v):
            raise ValueError("needs at least one acceleration, each >= 1")
        return v

    @field_validator("center_fractions")
    @classmethod
    def _cf(cls, v: list[float]) -> list[float]:
        if not v or any(not 0 < f < 1 for f in v):
            raise ValueError("needs at least one centre fraction, each in (0, 1)")
        return v

    @model_validator(mode="after")
    def _paired(self) -> "MaskSpec":
        if len(self.accelerations) != len(self.center_fractions):
            raise ValueError(
                f"accelerations ({len(self.accelerations)}) and center_fractions "
                f"({len(self.center_fractions)}) must have the same length"
            )
        return self


class SyntheticSpec(Section):
    volumes: int = Field(8, ge=2)
    """Number of synthetic volumes (split into train / val / test like a real dataset)."""
    slices: int = Field(16, ge=1)
    """Slices per volume."""
    shape: tuple[int, int] = (640, 368)
    """Encoded k-space matrix (readout, phase), as fastMRI's single-coil knee (640, 368)."""
    recon_shape: tuple[int, int] = (320, 320)
    """Reconstructed image size, the header's reconSpace (fastMRI: 320 x 320)."""
    seed: int = 0
    """Seed of the phantom generator; the same seed gives byte-identical files."""

    @model_validator(mode="after")
    def _fits(self) -> "SyntheticSpec":
        if any(r > s or r < 16 for r, s in zip(self.recon_shape, self.shape)):
            raise ValueError(
                f"recon_shape {self.recon_shape} must be >= 16 and fit inside shape {self.shape}"
            )
        return self


class DataSpec(DataSection):
    format: str = "fastmri"
    """File layout: fastmri (kspace + reconstruction_esc + ismrmrd_header) or nc2019
    (coursework)."""
    root: Optional[str] = None
    """Folder holding train/ and val/ (and optionally test/) HDF5 files."""
    synthetic: Optional[SyntheticSpec] = None
    """Generate phantom data in the real layout instead of reading root (cached once)."""
    mask: MaskSpec = MaskSpec()
    """Undersampling mask."""
    skip_slices: int = Field(5, ge=0)
    """Leading slices of each volume left out of training and validation (seed 000: 5, mostly
    noise)."""
    crop: Optional[tuple[int, int]] = None
    """Centre crop (H, W) of the image; default the header's reconSpace matrix (320 x 320)."""
    normalize: Literal["zero_filled_max", "instance"] = "zero_filled_max"
    """zero_filled_max divides by the zero-filled image's max (seed 000); instance uses its mean /
    std (fastMRI)."""
    transform_on: Literal["host", "device"] = "host"
    """Where masking, inverse FFT, crop and normalisation run: host (in the DataLoader workers, per
    slice) or device (batched on the training GPU; the workers only read k-space, draw masks and
    pass on the sampled columns).
    device when the loader cannot keep up with the GPU; the results are the same."""
    max_volumes: Optional[int] = Field(None, ge=1)
    """Use at most this many volumes per split (quick experiments)."""
    folds: Optional[int] = Field(None, ge=2)
    """K-fold cross-validation over the training volumes; set by sweep.folds."""
    fold: Optional[int] = Field(None, ge=0)
    """Which fold is held out for validation; set by sweep.folds."""

    check_format = _registered("format", registry.DATA_FORMATS, "data format")

    @model_validator(mode="after")
    def _source(self) -> "DataSpec":
        if (self.root is None) == (self.synthetic is None):
            raise ValueError(
                "give exactly one of data.root (a folder) or data.synthetic (phantoms)"
            )
        if self.fold is not None and (self.folds is None or self.fold >= self.folds):
            raise ValueError(f"fold {self.fold} needs folds > {self.fold}")
        return self


def check_spec(spec) -> list[str]:
    """A crop the U-Net can take and SSIM can score: each side at least 2 ** depth (its pools halve
    it) and 7 (SSIM's window)."""
    depth = getattr(spec.model, "depth", None) or getattr(
        getattr(spec.model, "G", None), "depth", 0
    )
    if spec.data.crop and min(spec.data.crop) < max(2**depth, 7):
        return [
            f"data.crop: {list(spec.data.crop)}; allowed: each side >= {max(2**depth, 7)} (2 ** "
            f"model depth {depth}, and SSIM's 7 x 7 window)"
        ]
    return []


def check_data(spec, source: str) -> list[str]:
    """Problems with the data a spec points at (run at submit, before anything is queued)."""
    if spec.data.root is None:
        return []
    root = Path(spec.data.root)
    if not root.is_dir():
        return [f"{source}: data.root: folder {root} does not exist"]
    if not (root / "train").is_dir():
        return [
            f"{source}: data.root: {root} has no train/ folder; expected train/ and val/ "
            "(optionally test/)"
        ]
    from mrihpc.data import DataError
    from mrihpc.workloads.knee.files import split_files, volumes_of

    # every header, once (the index is cached for the nodes): a bad file is named before queueing
    try:
        for files in split_files(spec.data):
            volumes_of(files, spec.data)
    except DataError as e:
        return [f"{source}: data.root: {e}"]
    return []


def prepare_data(spec) -> None:
    """Generate the synthetic dataset once on the submitting host, so array tasks only read it."""
    params = spec.data.synthetic.model_dump() if spec.data.synthetic is not None else None
    if params is not None and not dataset_folder(spec.data.format, params).is_dir():
        from mrihpc.workloads.knee.kspace.synth import ensure_synthetic

        ensure_synthetic(params, spec.data.format)


TWIN = SynthTwin(
    kind="knee",
    help="fastMRI / coursework HDF5 volumes (k-space, reference, ISMRMRD header) of knee phantoms",
    arguments=(
        (("--volumes",), {"type": int, "default": 8}),
        (("--slices",), {"type": int, "default": 16}),
        (("--shape",), {"type": int, "nargs": 2, "default": [640, 368], "metavar": ("H", "W")}),
        (
            ("--recon-shape",),
            {"type": int, "nargs": 2, "default": [320, 320], "metavar": ("H", "W")},
        ),
        (("--layout",), {"choices": ["fastmri", "nc2019"], "default": "fastmri"}),
    ),
    write="mrihpc.workloads.knee.kspace.synth:write_twin",
)

WORKLOAD = Workload(
    name="reconstruction",
    title="Reconstruction",
    data=DataSpec,
    model=ModelSpec,
    losses={
        "l1": "mrihpc.losses:l1_loss",
        "mse": "mrihpc.losses:mse_loss",
        "ssim": "mrihpc.losses:ssim_loss",
    },
    metrics={"ssim": "max", "psnr": "max", "nmse": "min", "loss": "min"},
    default_metric="ssim",
    default_loss={"l1": 1.0},
    task="mrihpc.workloads.knee.task:ReconstructionTask",
    datasets=Datasets(
        train=("epoch_dependent", "slotted", "collated"), scored=("scored", "slotted", "collated")
    ),  # k-space slices: per-epoch masks, fixed shapes once cropped, their own collate
    predict="mrihpc.workloads.knee.predict:predict",
    check_data="mrihpc.workloads.knee.spec:check_data",
    check_spec="mrihpc.workloads.knee.spec:check_spec",
    prepare_data="mrihpc.workloads.knee.spec:prepare_data",
    synth="mrihpc.workloads.knee.spec:TWIN",
)
