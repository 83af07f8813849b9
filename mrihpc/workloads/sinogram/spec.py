"""Sinogram denoising / inpainting (seed 003): the ``data`` and ``model`` sections and the
descriptor.

Data layout (``data.train_dir``, ``data.val_dir``, optional ``data.test_dir``): headerless raw
files ``<case><clean_suffix>`` (the clean sinogram) and, for denoising, ``<case><noisy_suffix>``
beside it, each ``[TOF, Slice, W, L]`` of ``data.dtype`` (C order). Inpainting reads the
bad-detector-block mask from ``data.mask_file``: a ``.npy`` of ``[W, L]`` or ``[Slice, W, L]``,
1 where the detector pair works and 0 where it is missing.
"""

from __future__ import annotations

from typing import Literal, Optional, Union

from pydantic import Field, model_validator

from mrihpc.spec import DataSection, Section
from mrihpc.workloads import Datasets, SynthTwin, Workload


class SinoSynthetic(Section):
    """Phantom sinograms (scikit-image's Radon transform), Poisson noise and a bad-block mask."""

    train_files: int = Field(4, ge=1)
    val_files: int = Field(1, ge=1)
    test_files: int = Field(1, ge=1)
    tof: int = Field(2, ge=1)
    """TOF bins per file (each a differently blurred view of the same object)."""
    slices: int = Field(8, ge=1)
    angles: int = Field(50, ge=4)
    """W: projection angles (the seed's 50)."""
    bins: int = Field(64, ge=8)
    """L: radial bins (the phantom's side)."""
    counts: float = Field(100.0, gt=0)
    """Expected counts in the brightest bin; fewer counts, more Poisson noise."""
    bad_blocks: int = Field(3, ge=0)
    """Bad detector blocks on the ring (for the inpainting mask)."""
    seed: int = 0


class SinoAugment(Section):
    """Paired augmentation; off by default: rotating or zooming a sinogram has no physical
    meaning."""

    rotate_deg: float = Field(0.0, ge=0, le=180)
    """Largest rotation either way (the seed: 10 at probability 0.7)."""
    rotate_p: float = Field(0.7, ge=0, le=1)
    zoom_max: float = Field(1.0, ge=1, le=4)
    """Largest zoom factor, from 1.1 (the seed: 1.5 at probability 0.5); 1 is off."""
    zoom_p: float = Field(0.5, ge=0, le=1)


class SinoData(DataSection):
    train_dir: Optional[str] = None
    val_dir: Optional[str] = None
    test_dir: Optional[str] = None
    """Folder predicted by ``mrihpc predict --split test`` (default: val_dir)."""
    synthetic: Optional[SinoSynthetic] = None
    """Phantom sinograms in the same layout instead of the folders (generated once, cached)."""
    shape: Optional[tuple[int, int, int, int]] = None
    """[TOF, Slice, W, L] of every file (required with the folders: raw files carry no header)."""
    dtype: Literal["uint16", "float32"] = "uint16"
    """Element type of the raw files."""
    mode: Literal["denoise", "inpaint"] = "denoise"
    """denoise: input the noisy sinogram; inpaint: input the clean one times the bad-block mask."""
    mask_file: Optional[str] = None
    """inpaint: the .npy mask, [W, L] or [Slice, W, L], 1 = measured, 0 = missing."""
    clean_suffix: str = Field("_clean.raw", min_length=1)
    noisy_suffix: str = Field("_noisy.raw", min_length=1)
    channels: int = Field(5, ge=1)
    """Input channels: this many neighbouring slices centred on the target slice (odd; edges
    repeat)."""
    neighbours: Literal["slice", "tof"] = "slice"
    """The axis the neighbouring channels come from."""
    scale: Union[Literal["input_max", "dataset_max"], float] = "input_max"
    """One divisor for input and target: each file's input maximum, the maximum over the training
    inputs, or a constant (the seed divided input and target by their own maxima: two scales)."""
    pad_multiple: int = Field(4, ge=4)
    """W and L are wrap-padded up to a multiple of this (a multiple of 4, the model's two
    levels)."""
    epoch_size: int = Field(2000, ge=1)
    """Training samples per epoch, drawn (seeded) across all files and slices."""
    val_samples: int = Field(64, ge=1)
    """Fixed validation slices drawn (seeded) from the validation files."""
    augment: SinoAugment = SinoAugment()
    output_dtype: Literal["input", "float32"] = "input"
    """Element type of the predicted raw files: the input's (uint16 rounded and clipped) or
    float32."""

    @model_validator(mode="after")
    def _source(self) -> "SinoData":
        if self.synthetic is None and (
            self.train_dir is None or self.val_dir is None or self.shape is None
        ):
            raise ValueError(
                "give data.synthetic, or data.train_dir, data.val_dir and data.shape "
                "[TOF, Slice, W, L]"
            )
        if self.synthetic is not None and (
            self.train_dir or self.val_dir or self.test_dir or self.shape
        ):
            raise ValueError(
                "data.synthetic makes its own folders and shape; drop train_dir / "
                "val_dir / test_dir / shape"
            )
        if self.mode == "inpaint" and self.synthetic is None and self.mask_file is None:
            raise ValueError("mode inpaint needs data.mask_file (a .npy bad-block mask)")
        if self.channels % 2 == 0:
            raise ValueError(
                f"channels {self.channels}: must be odd (neighbours centred on the target slice)"
            )
        if self.pad_multiple % 4:
            raise ValueError(
                f"pad_multiple {self.pad_multiple}: must be a multiple of 4 (the model's "
                "two stride-2 levels)"
            )
        if self.shape is not None and (min(self.shape) < 1 or min(self.shape[2:]) < 7):
            raise ValueError(
                f"shape {list(self.shape)}: every dimension must be >= 1, and W, L >= 7 "
                "(SSIM's window)"
            )
        if self.mode == "denoise" and self.clean_suffix == self.noisy_suffix:
            raise ValueError(
                f"clean_suffix and noisy_suffix are both {self.clean_suffix!r}: a case "
                "needs two files"
            )
        if isinstance(self.scale, float) and self.scale <= 0:
            raise ValueError(f"scale {self.scale}: a constant divisor must be > 0")
        return self


class SinoModel(Section):
    """Seed 003's denoising U-Net (mrihpc/models/denoise_unet.py); in_channels = data.channels."""

    width: int = Field(64, ge=1)
    """Channels of the first level (x2, x4 below)."""
    norm: Literal["batch", "instance", "none"] = "batch"
    upsample: Literal["transpose", "nearest", "area"] = "transpose"
    decoder_norm: bool = False
    """Norm in the decoder's convs (the seed's are commented out)."""
    res_blocks: int = Field(0, ge=0)
    """ResNet basic blocks before the head (the seed: 5 'improved quality a little')."""
    out_activation: Literal["softplus", "none"] = "softplus"
    """Softplus(beta 5): non-negative counts."""
    residual: bool = False
    """Predict a correction added to the input's centre channel (residual learning, as DnCNN)
    instead of the slice itself; the head's last conv starts at zero, so the untrained model is
    the identity on the centre slice. The seed's model is not residual."""


def check_spec(spec) -> list[str]:
    hole = [m for m in ("psnr_hole", "ssim_hole", "nmse_hole") if spec.train.metric == m]
    if hole and spec.data.mode != "inpaint":
        return [
            f"train.metric: {hole[0]} is scored inside the bad-block mask, which only "
            "mode inpaint has"
        ]
    return []


def check_data(spec, source: str) -> list[str]:
    from mrihpc.workloads.sinogram.data import check_folders

    return [f"{source}: {p}" for p in check_folders(spec.data)]


def prepare_data(spec) -> None:
    from mrihpc.workloads.sinogram.data import resolve_layout

    resolve_layout(spec.data)  # writes the phantom sinograms into the cache once


TWIN = SynthTwin(
    kind="sinogram",
    help="raw uint16 [TOF, Slice, W, L] clean / noisy sinogram pairs and a bad-block mask.npy",
    arguments=(
        (("--train",), {"type": int, "default": 4, "help": "training files"}),
        (("--val",), {"type": int, "default": 1}),
        (("--test",), {"type": int, "default": 1}),
        (("--tof",), {"type": int, "default": 2}),
        (("--slices",), {"type": int, "default": 8}),
        (("--angles",), {"type": int, "default": 50, "help": "projection angles W"}),
        (("--size",), {"type": int, "default": 64, "help": "radial bins L"}),
        (
            ("--counts",),
            {"type": float, "default": 100.0, "help": "expected counts in the brightest bin"},
        ),
        (
            ("--bad-blocks",),
            {"type": int, "default": 3, "help": "dead detector blocks in the mask"},
        ),
    ),
    write="mrihpc.workloads.sinogram.synth:write_twin",
)

WORKLOAD = Workload(
    name="sinogram",
    title="Sinogram",
    data=SinoData,
    model=SinoModel,
    losses={
        "l1": "mrihpc.losses:l1_loss",
        "mse": "mrihpc.losses:mse_loss",
        "msssim": "mrihpc.losses:msssim_loss",
    },
    metrics={
        "psnr": "max",
        "ssim": "max",
        "nmse": "min",
        "psnr_hole": "max",
        "ssim_hole": "max",
        "nmse_hole": "min",
        "loss": "min",
    },
    default_metric="psnr",
    default_loss={"l1": 1.0},
    task="mrihpc.workloads.sinogram.task:SinogramTask",
    datasets=Datasets(train=("epoch_dependent",)),  # augmentation drawn per epoch
    predict="mrihpc.workloads.sinogram.predict:predict",
    check_data="mrihpc.workloads.sinogram.spec:check_data",
    prepare_data="mrihpc.workloads.sinogram.spec:prepare_data",
    check_spec="mrihpc.workloads.sinogram.spec:check_spec",
    data_paths=("train_dir", "val_dir", "test_dir", "mask_file"),
    synth="mrihpc.workloads.sinogram.spec:TWIN",
)
