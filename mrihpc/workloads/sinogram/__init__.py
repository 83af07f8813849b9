"""Sinogram denoising and inpainting (seed 003): raw uint16 [TOF, Slice, W, L] files -> denoising
U-Net."""
