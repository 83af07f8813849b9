"""Time limits and preemption: signals become a flag read at step boundaries.

Slurm sends USR2 ``signal_delay_s`` before the time limit (``--signal=USR2@N``; USR1 is
taken by NCCL) and SIGTERM when it preempts or requeues a job. Either way the trainer
finishes the step it is in, rank 0 writes an atomic ``last.pt`` holding the position inside
the epoch, and every rank leaves together. For USR2 we then hand over to the handler
submitit installed, which requeues only this array task (and counts timeouts against
``train.max_requeues``); after SIGTERM Slurm requeues the job itself.
"""

from __future__ import annotations

import os
import signal
from typing import Any, Optional

import torch
import torch.distributed as torch_dist

from mrihpc.node.distributed import World


class Interrupted(Exception):
    """Training stopped at a step boundary because a signal asked it to."""


def checkpoint_signal() -> signal.Signals:
    import submitit

    return getattr(signal, "SIG" + submitit.JobEnvironment.USR_SIG)


class StopSignals:
    """Install with ``install()``; ``requested(world, nonfinite)`` is True on every rank once any
    rank received a signal, and ``nonfinite`` holds the longest run of non-finite training losses
    any rank reported (both agreed by one all-reduce, so no rank waits alone in a collective and
    every rank stops, or fails, at the same step)."""

    def __init__(self, every: int = 1) -> None:
        self.signum: Optional[int] = None
        self.previous: dict[int, Any] = {}
        self.every, self.calls, self.agreed = every, 0, False
        self.nonfinite = 0  # agreed: the longest run of non-finite losses a rank reported
        self.worst = 0  # this rank's longest run since its last report
        self.pending: Optional[tuple[Any, torch.Tensor]] = None

    def install(self) -> "StopSignals":
        for sig in (checkpoint_signal(), signal.SIGTERM):
            self.previous[sig] = signal.getsignal(sig)
            signal.signal(sig, self._note)
        return self

    def uninstall(self) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)

    def _note(self, signum: int, frame: Any) -> None:
        self.signum = signum

    @property
    def reason(self) -> str:
        if self.signum is None:
            return ""
        return f"received {signal.Signals(self.signum).name}: " + (
            "time limit or preemption warning"
            if self.signum == checkpoint_signal()
            else "preempted or requeued"
        )

    def requested(self, world: World, nonfinite: int = 0) -> bool:
        """Called once per step on every rank, with this rank's count of non-finite training
        losses in a row. One process: the flag, and ``self.nonfinite = nonfinite``. Under DDP,
        every ``every`` steps: read the all-reduce started ``every`` steps ago (long finished, so
        reading it costs no wait) and start the next one without waiting. It carries the largest
        over ranks of the signal flag and of each rank's longest run since its last report, so a
        run is seen however short, and every rank reads the same values at the same step: all
        stop (or fail) together, at most 2 x ``every`` steps after a signal or a run."""
        if not world.distributed:
            self.nonfinite = nonfinite
            return self.signum is not None
        self.worst = max(self.worst, nonfinite)
        self.calls += 1
        if self.calls % self.every:
            return self.agreed
        if self.pending is not None:
            work, flags = self.pending
            work.wait()
            self.agreed, self.nonfinite = bool(flags[0]), int(flags[1])
        flags = torch.tensor(
            [int(self.signum is not None), self.worst],
            device=world.device if world.device.type == "cuda" else "cpu",
        )
        self.worst = nonfinite  # a run that goes on counts on into the next report
        self.pending = (
            torch_dist.all_reduce(flags, op=torch_dist.ReduceOp.MAX, async_op=True),
            flags,
        )
        return self.agreed

    def settle(self) -> None:
        """Wait for the all-reduce still in flight (every rank started it at the same step, so it
        completes): a process group destroyed with one outstanding aborts the process."""
        if self.pending is not None:
            self.pending[0].wait()
            self.pending = None

    def leave(self, main: bool) -> None:
        """After the checkpoint: rank 0 (``main``) lets submitit requeue this task (USR2), or just
        exits (SIGTERM: Slurm requeues it). Another rank exits 0, its part done: a non-zero exit
        would have srun (``--kill-on-bad-exit``) terminate rank 0, which may still be writing the
        checkpoint, and kill it ``KillWait`` seconds later, before it requeues. Never returns."""
        if not main:
            raise SystemExit(0)
        handler = self.previous.get(checkpoint_signal())
        if os.environ.get("MRIHPC_REQUEUE_BY") == "host":
            pass  # in a container without Slurm's tools: the script that entered it requeues on 140
        elif self.signum == checkpoint_signal() and callable(handler):
            handler(self.signum, None)  # submitit: checkpoint(), scontrol requeue <this task>, exit
        raise SystemExit(128 + (self.signum or signal.SIGTERM))
