"""Cardiac MR segmentation (seed 004): the ``data`` and ``model`` sections and the descriptor.

Light on purpose (pydantic and numpy): the login node imports it to validate a spec and to
check the PNG folders before anything is queued.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal, Optional

from pydantic import Field, model_validator

from mrihpc.data.cache import dataset_folder
from mrihpc.spec import BATCHNORM_UNET, DataSection, ModelSpec, Section
from mrihpc.workloads import Datasets, SynthTwin, Workload


class AugmentSpec(Section):
    """Paired augmentation: one RNG per (seed, epoch, image) moves image and mask together;
    the mask is resampled nearest-neighbour so no label is invented."""

    rotate_deg: float = Field(5.0, ge=0, le=180)
    """Rotation drawn uniformly from [-rotate_deg, rotate_deg] (seed 004: 5)."""
    flip_lr: float = Field(0.5, ge=0, le=1)
    """Probability of a left-right flip."""
    flip_ud: float = Field(0.5, ge=0, le=1)
    """Probability of a top-bottom flip."""


class SyntheticSpec(Section):
    """Phantoms of the three structures in the real layout (``mrihpc data synth acdc``)."""

    train: int = Field(60, ge=1)
    """Training images (with masks)."""
    val: int = Field(12, ge=1)
    """Validation images (with masks)."""
    test: int = Field(8, ge=0)
    """Test images (no masks)."""
    size: int = Field(96, ge=32, le=512)
    """Image side in pixels (ACDC-derived: 96)."""
    seed: int = 0
    """Seed of the phantom generator; the same seed gives byte-identical files."""


class SegmentationData(DataSection):
    root: Optional[str] = None
    """Folder with train/{image,mask}, val/{image,mask} and test/image (mask: <stem>_mask.png)."""
    synthetic: Optional[SyntheticSpec] = None
    """Generate phantom data in the real layout instead of reading root (cached once)."""
    classes: list[str] = ["background", "rv", "myo", "lv"]
    """Class names by label value (ACDC: 1 right ventricle, 2 myocardium, 3 left ventricle)."""
    mask_values: Literal["auto", "index", "scaled"] = "auto"
    """index: masks hold 0..K-1; scaled: 0..255 evenly (0/85/170/255 for 4 classes); auto: per
    file."""
    normalize: Literal["none", "unit", "instance"] = "unit"
    """Intensity: none (raw 0..255, as the seed feeds it), unit (/ dtype max) or instance (zero
    mean, unit std)."""
    augment: Optional[AugmentSpec] = None
    """Paired rotation and flips of the training images; off when absent."""
    max_images: Optional[int] = Field(None, ge=1)
    """Use at most this many images per split (quick experiments)."""

    @model_validator(mode="after")
    def _source(self) -> "SegmentationData":
        if (self.root is None) == (self.synthetic is None):
            raise ValueError(
                "give exactly one of data.root (a folder) or data.synthetic (phantoms)"
            )
        if len(self.classes) < 2 or len(set(self.classes)) != len(self.classes):
            raise ValueError(
                f"classes {self.classes}: need at least 2 distinct names (background first)"
            )
        return self


class SegmentationModel(ModelSpec):
    """The U-Net of seed 004 (``preset: acdc``; ``acdc_small``, the default, for CPU demos); its
    head emits one logit per class."""

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        **ModelSpec.PRESETS,
        # Seed 004's segmentation U-Net (mateuszbuda topology): 96 base features, BatchNorm,
        # max-pool, transposed-conv up with bias and no norm, 4 logits: 69,822,340 parameters.
        "acdc": dict(BATCHNORM_UNET, channels=96, depth=4, in_channels=1, out_channels=4),
        # The same topology at CPU-demo size (16 base features, 3 pools): 0.47 M parameters.
        "acdc_small": dict(BATCHNORM_UNET, channels=16, depth=3, in_channels=1, out_channels=4),
    }

    @model_validator(mode="before")
    @classmethod
    def _default_preset(cls, data):
        if isinstance(data, dict) and "preset" not in data:
            data = {"preset": "acdc_small", **data}
        return data


def check_spec(spec) -> list[str]:
    """The head must emit one logit per class."""
    k = len(spec.data.classes)
    if spec.model.out_channels != k:
        return [
            f"model.out_channels: {spec.model.out_channels}, but data.classes names {k} classes; "
            f"set model.out_channels: {k}"
        ]
    return []


def check_data(spec, source: str) -> list[str]:
    """Every problem with the PNG folders (pairs, mask values, sizes), before anything is queued."""
    from mrihpc.workloads.segmentation.data import DataError, check_folders

    if spec.data.root is None:
        return []
    try:
        check_folders(spec.data)
    except DataError as e:
        return [f"{source}: data.root: {line}" for line in str(e).splitlines()]
    from mrihpc.workloads.segmentation.data import scan

    train = len(scan(Path(spec.data.root), "train", True))
    if train < spec.train.batch_size:  # full batches only: fewer images would train no step at all
        return [
            f"{source}: data.root: {Path(spec.data.root) / 'train'}: {train} training image(s); "
            f"allowed: at least train.batch_size ({spec.train.batch_size})"
        ]
    return []


def prepare_data(spec) -> None:
    if (
        spec.data.synthetic is not None
        and not dataset_folder("acdc", spec.data.synthetic.model_dump()).is_dir()
    ):
        from mrihpc.workloads.segmentation.synth import ensure_synthetic

        ensure_synthetic(spec.data.synthetic)


TWIN = SynthTwin(
    kind="acdc",
    help="ACDC-layout PNG folders: {train,val}/{image,mask}, test/image, of cardiac phantoms",
    arguments=(
        (("--train",), {"type": int, "default": 60}),
        (("--val",), {"type": int, "default": 12}),
        (("--test",), {"type": int, "default": 8, "help": "test images (no masks)"}),
        (("--size",), {"type": int, "default": 96}),
    ),
    write="mrihpc.workloads.segmentation.synth:write_twin",
)

WORKLOAD = Workload(
    name="segmentation",
    title="Segmentation",
    data=SegmentationData,
    model=SegmentationModel,
    losses={
        "ce": "mrihpc.losses:cross_entropy",
        "dice": "mrihpc.losses:soft_dice",
        "focal": "mrihpc.losses:focal",
        "dice_ce": "mrihpc.losses:dice_ce",
        "bce": "mrihpc.losses:bce_onehot",
    },
    # per-class columns (dice_lv, hd95_rv, ...) take the direction of their base name
    metrics={"dice": "max", "hd95": "min", "loss": "min"},
    default_metric="dice",
    default_loss={"ce": 1.0},
    task="mrihpc.workloads.segmentation.task:SegmentationTask",
    datasets=Datasets(train=("epoch_dependent",)),  # augmentation drawn per epoch
    predict="mrihpc.workloads.segmentation.predict:predict",
    check_data="mrihpc.workloads.segmentation.spec:check_data",
    prepare_data="mrihpc.workloads.segmentation.spec:prepare_data",
    check_spec="mrihpc.workloads.segmentation.spec:check_spec",
    synth="mrihpc.workloads.segmentation.spec:TWIN",
)
