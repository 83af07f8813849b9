"""The names of shared components a spec may use: models, optimisers, masks, data formats.

The spec validates names against these tables without importing torch; the node imports
the object behind a name only when it builds it. A name added here is a name the spec
accepts, so add one only together with its implementation. Workloads (tasks, their losses
and metrics) are registered in ``mrihpc.workloads``.
"""

from __future__ import annotations

import importlib
from typing import Any

#: data.format -> the file layout it reads (both read by mrihpc.workloads.knee.kspace.fastmri)
DATA_FORMATS = {
    "fastmri": "fastMRI single-coil: kspace, reconstruction_esc, ismrmrd_header, attrs",
    "nc2019": "coursework: train kspace only; test kspace_4af / kspace_8af",
}

#: model.name -> "module:function" building the network from the shared ModelSpec (a U-Net's
#: fields; knee reconstruction and segmentation use it). A workload whose networks are its own
#: (cine's cascade, sinogram's denoiser, the GANs' generators and discriminators) declares them
#: in its own model section and builds them in its Task: no workload's networks are listed here
MODELS = {
    "unet": "mrihpc.models.unet:build_unet",
}

#: optim.name -> torch.optim class name
OPTIMIZERS = {
    "adam": "torch.optim:Adam",
    "adamw": "torch.optim:AdamW",
    "sgd": "torch.optim:SGD",
    "rmsprop": "torch.optim:RMSprop",
    "adagrad": "torch.optim:Adagrad",
}

#: data.mask.kind -> "module:Class" of its mask function
MASKS = {
    "random": "mrihpc.workloads.knee.kspace.masks:RandomMask",
    "equispaced": "mrihpc.workloads.knee.kspace.masks:EquispacedMask",
}


def load(target: str) -> Any:
    """Import and return the object at ``"module:attribute"`` (every registry's entries)."""
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def resolve(table: dict[str, str], name: str) -> Any:
    """Import and return the object registered under ``name`` in ``table``."""
    return load(table[name])
