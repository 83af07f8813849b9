"""IXI T1 -> T2 synthesis (seed 002): paired .pt images -> pix2pix U-Net, alone, as a cGAN or in a
CycleGAN."""
