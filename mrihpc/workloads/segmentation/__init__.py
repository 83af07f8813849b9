"""Cardiac MR segmentation (seed 004): ACDC-derived PNG image / mask folders -> U-Net logits -> PNG
masks."""
