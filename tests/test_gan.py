"""The GAN steps (seeds 000 and 002) under DDP: every network of a knee GAN, a cGAN and a CycleGAN
step ends with identical weights on 2 gloo ranks, equal to a 1-process run on the same global
batch; the discriminator is run unsynced in the generator's step, which DDP accepts (no unused-
parameter error, no hang). Also: the discriminators emit logits, and kl_div is refused with its
reason. (The fp16 scaler of a 2-optimiser step is checked in test_gpu.py.)"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
import torch.distributed as torch_dist
import torch.multiprocessing as mp

from conftest import REPO, merge
from test_visdom import free_port
from mrihpc import workloads
from mrihpc.node.distributed import World
from mrihpc.specfile import validate_dict
from mrihpc.node.train import Trainer

SGD = {"name": "sgd", "lr": 0.01}
TRAIN = {
    "epochs": 1,
    "batch_size": 4,
    "workers": 0,
    "precision": "fp32",
    "seed": 0,
    "threads": 1,
    "steps_per_epoch": 3,
}
SPECS = {
    "cgan": {
        "name": "ddp-cgan",
        "task": "synthesis",
        "data": {"synthetic": {"subjects": 12, "incomplete": 0, "size": 32}, "samples": 2},
        "model": {
            "mode": "cgan",
            "G": {"widths": [8, 16, 32, 32]},
            "D": {"widths": [8, 16, 16], "kernel": 3, "bias": True},
        },
        "loss": {"adv": 1.0, "l1": 10.0},
        "optim": SGD,
        "train": TRAIN,
    },
    "knee_gan": {
        "name": "ddp-knee-gan",
        "task": "knee_gan",
        "data": {
            "format": "nc2019",
            "synthetic": {"volumes": 4, "slices": 6, "shape": [64, 64], "recon_shape": [32, 32]},
            "skip_slices": 0,
            "mask": {"accelerations": [4], "center_fractions": [0.08]},
        },
        # instance norm: batch statistics over 2 per rank would differ from 4 in one process;
        # 1 output: the magnitude of 2 near-zero outputs has a direction float-level noise flips
        "model": {
            "G": {
                "preset": "nc2019",
                "channels": 8,
                "depth": 2,
                "norm": "instance",
                "out_channels": 1,
            },
            # avg: a max over patch logits turns float-level differences between batch
            # sizes into a different winning patch, i.e. another gradient path
            "D": {"widths": [8, 16, 16], "pool": "avg"},
        },
        "loss": {"adv": 1.0, "l1": 10.0},
        "optim": SGD,
        "train": TRAIN,
    },
}
SPECS["cyclegan"] = merge(
    SPECS["cgan"],
    name="ddp-cyclegan",
    model={**SPECS["cgan"]["model"], "mode": "cyclegan"},
    loss={"adv": 1.0, "cycle": 10.0, "identity": 1.0},
)


class Quiet:
    def log(self, record, step):
        pass


def _train(raw: dict, world: World, folder) -> dict[str, dict[str, torch.Tensor]]:
    spec = validate_dict(copy.deepcopy(raw), "ddp")
    task = workloads.resolve(workloads.get(spec.task).task)(spec, world)
    trainer = Trainer(spec, task, world, folder, Quiet())
    trainer.fit()
    return {
        name: {k: v.detach().clone() for k, v in trainer._raw(net).state_dict().items()}
        for name, net in trainer.nets.items()
    }


def _rank(rank: int, raw: dict, port: int, folder: str) -> None:
    torch.set_num_threads(1)
    torch_dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2
    )
    try:
        weights = _train(raw, World(rank=rank, size=2), Path(folder) / "ck")
        torch.save(weights, f"{folder}/rank{rank}.pt")
        torch_dist.barrier()  # neither rank closes its sockets while the other still tears down
    finally:
        torch_dist.destroy_process_group()


@pytest.mark.parametrize("mode", ["knee_gan", "cgan", "cyclegan"])
def test_every_network_of_a_gan_step_trains_identically_under_ddp(mode, tmp_path):
    raw = SPECS[mode]
    single = _train(raw, World(), tmp_path / "single")
    mp.spawn(_rank, args=(raw, free_port(), str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    names = {
        "knee_gan": {"G", "D"},
        "cgan": {"G", "D"},
        "cyclegan": {"G", "G_back", "D", "D_back"},
    }[mode]
    assert set(single) == names == set(ranks[0]) == set(ranks[1])
    initial = _initial(raw)
    for net in names:
        for key, value in single[net].items():
            assert torch.equal(ranks[0][net][key], ranks[1][net][key]), (
                f"{net}.{key} differs between ranks"
            )
            gap = float((ranks[0][net][key].double() - value.double()).abs().max())
            assert gap <= 1e-5, f"{net}.{key}: DDP differs from 1 process by {gap}"
        moved = [
            k
            for k, v in single[net].items()
            if v.is_floating_point() and not torch.equal(v, initial[net][k])
        ]
        assert moved, f"{net} did not train"


def _initial(raw: dict) -> dict:
    """The networks as the Trainer initialises them (seeded), to show each one moved."""
    spec = validate_dict(copy.deepcopy(raw), "ddp")
    torch.manual_seed(spec.train.seed)
    nets = workloads.resolve(workloads.get(spec.task).task)(spec, World()).networks()
    return {k: v.state_dict() for k, v in nets.items()}


def test_kl_div_is_refused_as_an_adversarial_loss_with_the_reason(write_spec, capsys):
    from mrihpc.login.cli import main

    for task in ("knee_gan", "synthesis"):
        raw = merge(
            SPECS["knee_gan" if task == "knee_gan" else "cgan"], loss={"kl_div": 1.0, "l1": 1.0}
        )
        import yaml

        assert main(["validate", str(write_spec(yaml.safe_dump(raw)))]) != 0
        err = capsys.readouterr().err
        assert (
            "loss.kl_div: is degenerate as an adversarial loss" in err and "kl_div(p, 0) = 0" in err
        ), err


def test_the_discriminators_emit_logits_over_the_whole_image():
    from mrihpc.models.discriminator import ConvDiscriminator

    d = ConvDiscriminator(2, (64, 128, 256, 512), 3, True, "none", "avg")
    assert (
        sum(p.numel() for p in d.parameters()) == 1_558_593
    )  # seed 002's blocks, a k4 head on (image, T1)
    x = torch.zeros(1, 2, 64, 64, requires_grad=True)
    d(x).sum().backward()
    support = x.grad.abs().sum(dim=(0, 1)) > 0
    assert support[
        48:, 48:
    ].any()  # the bottom-right corner counts (the seed's head saw rows/cols 0-15 only)
    with (
        torch.no_grad()
    ):  # a head that says "5" everywhere: a logit comes out, never squashed to (0, 1)
        d.head.weight.zero_()
        d.head.bias.fill_(5.0)
    assert float(d(torch.rand(1, 2, 64, 64)).detach()) == 5.0


def test_optimisers_come_from_the_declaration_the_spec_is_checked_against():
    """The Trainer's optimisers are the descriptor's (the names ``optim:`` is validated against),
    one per network of that name; a network without its optimiser is refused, not left untrained."""
    import torch

    from mrihpc.node.distributed import World
    from mrihpc.node.task import Task
    from mrihpc.specfile import load_spec

    world = World(0, 0, 1, torch.device("cpu"))
    gan, _ = load_spec(str(REPO / "jobs" / "knee_gan_demo.yaml"))
    assert Task(gan, world).optimizers(["G", "D"]) == {"G": ["G"], "D": ["D"]}
    with pytest.raises(ValueError, match="builds networks G but declares optimisers G, D"):
        Task(gan, world).optimizers(["G"])
    pix2pix, _ = load_spec(str(REPO / "jobs" / "ixi_pix2pix_demo.yaml"), ["model.mode=generator"])
    assert Task(pix2pix, world).optimizers(["G"]) == {"G": ["G"]}
    knee, _ = load_spec(str(REPO / "jobs" / "quickstart.yaml"))
    assert Task(knee, world).optimizers(["model"]) == {"main": ["model"]}
