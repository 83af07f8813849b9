"""Knee GAN predictions: the generator's magnitudes in fastMRI's HDF5 layout, like the U-Net's."""
from __future__ import annotations

from pathlib import Path

from mrihpc.models.unet import build_unet
from mrihpc.node import checkpoint
from mrihpc.paths import PointPaths
from mrihpc.specfile import load_point_spec
from mrihpc.workloads.knee.predict import write_predictions
from mrihpc.workloads.knee_gan.task import MagnitudeOf


def predict(paths: PointPaths, split: str = "val", which: str = "best") -> list[Path]:
    spec = load_point_spec(paths)
    generator = build_unet(spec.model.G)
    generator.load_state_dict(checkpoint.trained_nets(paths.best_checkpoint, paths.last_checkpoint, which)["G"])
    return write_predictions(spec, MagnitudeOf(generator).eval(), paths, split, which)
