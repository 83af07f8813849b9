"""mrihpc: MRI deep-learning training from a YAML job spec to a Slurm array of GPU nodes."""

__version__ = "0.1.0"
