"""Parameter counts per network, as every seed printed them: for the point's log and status.json
(from the networks the Trainer built) and for ``mrihpc validate --params`` (the spec's networks
built on the meta device: no memory, no weights drawn)."""

from __future__ import annotations

import torch
from torch import nn

from mrihpc import workloads
from mrihpc.node.distributed import World


def count(nets: dict[str, nn.Module]) -> dict[str, int]:
    """{network: number of parameters}, trainable or not, each shared tensor counted once."""
    out = {}
    for name, net in nets.items():
        net = getattr(net, "_orig_mod", net)  # under torch.compile
        net = getattr(net, "module", net)  # under DistributedDataParallel
        out[name] = sum(p.numel() for p in {id(p): p for p in net.parameters()}.values())
    return out


def of_spec(spec) -> dict[str, int]:
    """The counts of the networks a point of ``spec`` trains, without training or reading data."""
    task = workloads.resolve(workloads.get(spec.task).task)(spec, World())
    with torch.device("meta"):
        return count(task.networks())


def describe(counts: dict[str, int]) -> str:
    """``G 13,611,073 + D 1,558,017 = 15,169,090`` (one network: ``model 7,756,097``)."""
    parts = " + ".join(f"{name} {n:,}" for name, n in counts.items())
    return parts if len(counts) == 1 else f"{parts} = {sum(counts.values()):,}"
