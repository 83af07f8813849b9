"""The ranks' one agreement per step on 2 gloo ranks: a stop signal and the longest run of
non-finite training losses travel in the same pipelined all-reduce (``StopSignals.requested``),
every rank reads the same values at the same step, a run shorter than the window between reports
is still seen, and the Trainer fails every rank of a diverging point at the same step."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
import torch
import torch.distributed as torch_dist
import torch.multiprocessing as mp

from conftest import TINY, merge
from test_visdom import free_port

EVERY = 4
STEPS = 24
#: rank 1's non-finite losses in a row, step by step: a run of 2 that ends between two reports
RUNS = {0: [0] * STEPS, 1: [0, 0, 0, 0, 0, 1, 2, 0] + [0] * (STEPS - 8)}
SIGNAL_AT = 9  # rank 0 notes SIGTERM before its 10th step


def _ranks(fn, folder: Path, *args) -> list:
    """``fn(rank, world, folder, *args)`` on 2 gloo ranks; each rank's JSON answer."""
    mp.spawn(_rank, args=(fn, free_port(), str(folder), args), nprocs=2, join=True)
    return [json.loads((folder / f"rank{r}.json").read_text()) for r in range(2)]


def _rank(rank: int, fn, port: int, folder: str, args: tuple) -> None:
    from mrihpc.node.distributed import World

    torch.set_num_threads(1)
    torch_dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2
    )
    try:
        out = fn(rank, World(rank=rank, size=2), Path(folder), *args)
        (Path(folder) / f"rank{rank}.json").write_text(json.dumps(out))
        torch_dist.barrier()  # neither rank closes its sockets while the other still tears down
    finally:
        torch_dist.destroy_process_group()


def _report(rank, world, folder) -> list:
    from mrihpc.node.preemption import StopSignals

    signals, seen = StopSignals(every=EVERY), []
    for step in range(STEPS):
        if rank == 0 and step == SIGNAL_AT:
            signals.signum = signal.SIGTERM  # as the installed handler notes it
        seen.append([signals.requested(world, RUNS[rank][step]), signals.nonfinite])
    signals.settle()
    return seen


@pytest.mark.timeout(120)
def test_a_signal_and_a_short_non_finite_run_reach_every_rank_at_the_same_step(tmp_path):
    first, second = _ranks(_report, tmp_path)
    assert first == second  # the same values at the same step on both ranks
    stops = [step for step, (stop, _) in enumerate(first) if stop]
    runs = [step for step, (_, run) in enumerate(first) if run == 2]
    # reported at the next multiple of EVERY, read EVERY steps later: within 2 x EVERY
    assert stops and SIGNAL_AT < stops[0] <= SIGNAL_AT + 2 * EVERY
    assert stops == list(range(stops[0], STEPS))  # once agreed, it stays
    assert runs and 6 < runs[0] <= 6 + 2 * EVERY  # rank 0 saw no non-finite loss itself
    assert max(run for _, run in first) == 2


def _diverge(rank, world, folder, raw) -> dict:
    from mrihpc.node.train import NonFiniteLoss, Trainer
    from mrihpc.specfile import validate_dict
    from mrihpc.workloads.knee.task import ReconstructionTask

    class Quiet:
        def log(self, record, step):
            pass

    spec = validate_dict(raw, "diverge")
    trainer = Trainer(spec, ReconstructionTask(spec, world), world, folder / f"ck{rank}", Quiet())
    try:
        trainer.fit()
    except NonFiniteLoss as e:
        return {"step": trainer.step, "error": str(e)}
    return {"step": trainer.step, "error": None}


@pytest.mark.timeout(180)
def test_a_diverging_ddp_point_fails_on_every_rank_at_the_same_step(tmp_path):
    raw = merge(
        TINY,
        optim={"name": "sgd", "lr": 1e30},
        train={
            **TINY["train"],
            "epochs": 1,
            "batch_size": 2,
            "steps_per_epoch": 12,
            "stop_check_every": 2,
            "nonfinite_patience": 1,
        },
    )
    first, second = _ranks(_diverge, tmp_path, raw)
    assert first["error"] and second["error"] and first["step"] == second["step"] < 12
    assert first["error"].startswith("training loss ")
    assert "non-finite in a row (the longest over 2 ranks)" in first["error"]
    assert "train.nonfinite_patience is 1" in first["error"]
