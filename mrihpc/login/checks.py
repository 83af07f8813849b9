"""Everything before anything is queued: the spec loaded, overridden, validated and expanded
(every point), its data, container and cluster checked, with every problem in one SpecError;
then the synthetic data made once and the points listed."""

from __future__ import annotations

import shutil
import sys
from typing import Optional, Sequence

from mrihpc import workloads
from mrihpc.login import container
from mrihpc.login.launch import resolve_executor
from mrihpc.spec import JobSpec
from mrihpc.sweep import Point


def check_data(spec: JobSpec, source: str) -> list[str]:
    """Problems with the data a spec points at (run at submit, before anything is queued)."""
    hook = workloads.get(spec.task).check_data
    return workloads.resolve(hook)(spec, source) if hook else []


def prepare(
    source: str,
    overrides: Sequence[str] = (),
    executor: Optional[str] = None,
    check_paths: bool = True,
) -> tuple[JobSpec, dict, list[tuple[Point, JobSpec]], str]:
    """Load, override, validate and expand a spec; every problem in one SpecError."""
    from mrihpc.specfile import SpecError, load_spec
    from mrihpc.sweep import expand_and_validate

    overrides = list(overrides) + ([f"cluster.executor={executor}"] if executor else [])
    spec, raw = load_spec(source, overrides)
    points = expand_and_validate(spec, raw, source)
    problems = []
    for _, point_spec in points:
        problems += [
            p for p in (check_data(point_spec, source) if check_paths else []) if p not in problems
        ]
        ranks = point_spec.cluster.nodes * point_spec.cluster.num_tasks_per_node
        if point_spec.train.batch_size % ranks:
            msg = (
                f"{source}: train.batch_size: {point_spec.train.batch_size} is not divisible "
                f"by the {ranks} ranks (nodes x tasks_per_node)"
            )
            problems += [msg] if msg not in problems else []
    executor_name = resolve_executor(spec.cluster.executor)
    for _, point_spec in points:
        for problem in container.check(point_spec, executor_name, check_paths):
            problems += [f"{source}: {problem}"] if f"{source}: {problem}" not in problems else []
    if spec.container.runtime != "none" and executor_name == "debug":
        problems.append(
            f"{source}: container.runtime: {spec.container.runtime} cannot run with the debug "
            "executor (it runs points in this process); use local or slurm"
        )
    if spec.container.runtime == "pyxis" and executor_name != "slurm":
        problems.append(
            f"{source}: container.runtime: pyxis is a plugin of srun: it needs "
            "cluster.executor slurm"
        )
    missing = (
        [c for c in ("sbatch", "srun") if shutil.which(c) is None]
        if executor_name == "slurm"
        else []
    )
    if (
        missing and check_paths
    ):  # submitit submits with sbatch and needs srun here to build the job's srun line
        problems.append(
            f"{source}: cluster.executor: slurm needs {' and '.join(missing)} on PATH, not found "
            f"here; submit from a Slurm login node, or use cluster.executor local"
        )
    if (
        executor_name == "slurm" and check_paths and not missing
    ):  # a real submit: ask the cluster once
        from mrihpc.login import cluster_check

        found, notes = cluster_check.check(spec, source, len(points))
        problems += found
        for note in notes:
            print(f"note: {note}", file=sys.stderr)
    if problems:
        raise SpecError(problems)
    for note in container.warnings(spec, executor_name) if check_paths else []:
        print(f"warning: {source}: {note}", file=sys.stderr)
    return spec, raw, points, executor_name


def prepare_data(specs: Sequence[JobSpec]) -> None:
    """Generate the synthetic data of each distinct ``data`` section of the points once, on the
    submitting host, so array tasks only read it (a sweep over ``data.synthetic`` would otherwise
    make its datasets inside GPU jobs, the points of each waiting on one lock)."""
    seen = set()
    for spec in specs:
        key = (spec.task, spec.data.model_dump_json() if spec.data is not None else "")
        hook = workloads.get(spec.task).prepare_data
        if hook and key not in seen:
            seen.add(key)
            workloads.resolve(hook)(spec)


def points_table(points: Sequence[tuple[Point, JobSpec]], head: int = 30, tail: int = 5) -> str:
    """The points and their coordinates; a long sweep shows its first and last rows (the run's
    manifest.json lists every point)."""
    from mrihpc.login.results import table

    shown = list(points) if len(points) <= head + tail + 1 else [*points[:head], *points[-tail:]]
    rows = [
        {
            "point": p.index,
            "name": p.name,
            "seed": p.seed,
            **{k: v for k, v in p.overrides.items() if k != "data.folds"},
        }
        for p, _ in shown
    ]
    text = table(rows, list(dict.fromkeys(k for r in rows for k in r)))
    if len(shown) < len(points):
        lines = text.splitlines()
        lines.insert(head + 1, f"... {len(points) - head - tail:,} more points ...")
        text = "\n".join(lines)
    return text
