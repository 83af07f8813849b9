"""The node-side callable: what submitit pickles, and all it pickles.

``PointTask(run_dir, index)`` is a few hundred bytes; on the node the runner derives the
point's spec (spec.yaml + its overrides in manifest.json, written to ``points/<index>/config.yaml``). On USR2 (time limit or
preemption) the trainer writes ``last.pt`` at the next step boundary and then hands over to
submitit, which calls ``checkpoint`` and requeues the same callable: it resumes from there.
"""
from __future__ import annotations

from pathlib import Path

from submitit.helpers import Checkpointable, DelayedSubmission


class PointTask(Checkpointable):
    """Run point ``index`` of the sweep in ``run_dir``; resumable by design."""

    def __init__(self, run_dir: str, index: int):
        self.run_dir = str(run_dir)
        self.index = int(index)

    def __call__(self) -> dict:
        from mrihpc.node.runner import run_point  # heavy imports (torch) only on the node

        return run_point(Path(self.run_dir), self.index)

    def checkpoint(self, *args, **kwargs) -> DelayedSubmission:
        return DelayedSubmission(PointTask(self.run_dir, self.index))

    def __repr__(self) -> str:
        return f"PointTask({self.run_dir!r}, {self.index})"
