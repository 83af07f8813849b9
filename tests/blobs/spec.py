"""The ``blobs`` workload's spec sections and its descriptor: light (pydantic only), since the
login node imports it to validate a spec."""

from __future__ import annotations

from pydantic import Field

from mrihpc.spec import ModelSpec, Section
from mrihpc.workloads import Datasets, Workload


class BlobsData(Section):
    root: str
    """Folder with train/, val/ and test/, each holding ``<name>.npy`` images ``(H, W)`` in [0,
    1]."""
    noise: float = Field(0.1, gt=0, le=1)
    """Standard deviation of the Gaussian noise added to each image (fixed per image outside
    training)."""


WORKLOAD = Workload(
    name="blobs",
    title="Blobs",
    data=BlobsData,
    model=ModelSpec,  # the shared U-Net section
    losses={"mse": "mrihpc.losses:mse_loss", "l1": "mrihpc.losses:l1_loss"},
    metrics={"psnr": "max", "ssim": "max", "nmse": "min", "loss": "min"},
    default_metric="psnr",
    default_loss={"mse": 1.0},
    task="blobs.task:BlobsTask",
    datasets=Datasets(train=("epoch_dependent",)),  # noise drawn per epoch
    predict="blobs.predict:predict",
)
