"""What every GAN step shares: BCE-with-logits labels, the discriminator's loss, and running a
discriminator for the generator's loss without synchronising its gradients under DDP.

A generator's loss back-propagates through the discriminator, so the discriminator's
parameters get gradients in the generator's step. They are discarded (the discriminator's own
step zeroes them first), so under DDP they need no all-reduce: ``unsynced(D)`` runs the forward
in ``no_sync``, which is also what keeps DDP from waiting for gradients it will never use.
Nothing toggles ``requires_grad``: a DDP module whose parameters stop receiving gradients
between a forward and its backward fails its next iteration.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.parallel import DistributedDataParallel


def bce_logits(logits: torch.Tensor, real: bool) -> torch.Tensor:
    """Mean BCE-with-logits of ``logits`` ``(N, 1)`` against all-real (1) or all-fake (0) labels."""
    logits = logits.float()
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, 1.0 if real else 0.0))


def discriminator_step_loss(d: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """0.5 (BCE(D(real), 1) + BCE(D(fake), 0)), ``fake`` detached here. One forward over
    ``cat(real, fake)``: DDP sees one forward per backward (the discriminators have no batch norm,
    so the concatenation changes nothing else)."""
    logits = d(torch.cat([real, fake.detach()]))
    n = real.shape[0]
    return 0.5 * (bce_logits(logits[:n], True) + bce_logits(logits[n:], False))


@contextlib.contextmanager
def unsynced(*nets: nn.Module) -> Iterator[None]:
    """Forward passes whose gradients stay local to this rank (DDP ``no_sync``); plain modules
    pass."""
    with contextlib.ExitStack() as stack:
        for net in nets:
            net = getattr(
                net, "_orig_mod", net
            )  # under train.compile, DDP is inside the compiled wrapper
            if isinstance(net, DistributedDataParallel):
                stack.enter_context(net.no_sync())
        yield


def magnitude(out: torch.Tensor) -> torch.Tensor:
    """``(N, 2, H, W)`` real / imaginary -> ``(N, 1, H, W)`` magnitude; one channel passes
    through."""
    if out.shape[1] == 1:
        return out
    return torch.sqrt(
        out[:, :1].float() ** 2 + out[:, 1:2].float() ** 2 + 1e-12
    )  # eps: finite gradient at 0
