"""Knee k-space reconstruction (seed 000): fastMRI / coursework HDF5 -> U-Net -> HDF5."""
