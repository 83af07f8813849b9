"""The node-side callable: what submitit pickles, and all it pickles.

``PointTask(run_dir, index)`` is a few hundred bytes; on the node the runner derives the
point's spec (spec.yaml + its overrides in manifest.json, written to
``points/<index>/config.yaml``). On USR2 (time limit or preemption) the trainer writes ``last.pt``
at the next step boundary and then hands over to submitit, which calls ``checkpoint`` and requeues
the same callable: it resumes from there.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Optional

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


class PredictTask:
    """Write the predictions of ``split`` with checkpoint ``which`` (best or last) in the points'
    workload's format, on the node, for point ``index``; None: the best point on validation, or
    with ``each_fold`` every fold of the best configuration (by its mean over the folds), decided
    here, once the sweep it waited for has ended."""

    def __init__(
        self,
        run_dir: str,
        index: Optional[int],
        split: str,
        which: str = "best",
        each_fold: bool = False,
    ):
        self.run_dir, self.index, self.split, self.which = str(run_dir), index, split, which
        self.each_fold = each_fold

    def __call__(self) -> list[str]:
        from mrihpc import workloads
        from mrihpc.node.trained import load_trained
        from mrihpc.paths import RunPaths
        from mrihpc.ranking import best_configuration, best_point

        run = RunPaths(Path(self.run_dir))
        if self.index is not None:
            indices = [self.index]
        else:
            indices = best_configuration(run) if self.each_fold else [best_point(run)]
        written = []
        for index in indices:
            with contextlib.redirect_stdout(sys.stderr):  # the task's notes; stdout lists the files
                trained = load_trained(run.root, index, which=self.which)
                predict = workloads.resolve(workloads.get(trained.spec.task).predict)
                mine = [str(p) for p in predict(trained, self.split)]
            # on stderr: the verb's stdout is the list of files, one per line, for scripts
            print(
                f"[mrihpc] point {index}: {len(mine)} prediction file(s) of {self.split} with "
                f"{self.which}.pt on {trained.device} under {trained.output_dir(self.split)}",
                file=sys.stderr,
                flush=True,
            )
            written += mine
        return written

    def __repr__(self) -> str:
        return (
            f"PredictTask({self.run_dir!r}, {self.index}, {self.split!r}, {self.which!r}, "
            f"each_fold={self.each_fold})"
        )
