"""Knee GAN predictions: the generator's magnitudes in fastMRI's HDF5 layout, like the U-Net's."""

from __future__ import annotations

from pathlib import Path

from mrihpc.node.trained import Trained
from mrihpc.workloads.knee.predict import write_predictions
from mrihpc.workloads.knee_gan.task import MagnitudeOf


def predict(trained: Trained, split: str = "val") -> list[Path]:
    return write_predictions(trained, MagnitudeOf(trained.nets["G"]), split)
