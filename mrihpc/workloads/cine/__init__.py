"""Dynamic cardiac cine reconstruction (seed 001): npz cine -> undersampled k-space -> two U-Nets +
refiner."""
