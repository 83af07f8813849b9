"""Knee GAN (seed 000): the knee U-Net as generator against a conv-stack discriminator."""
