"""``sweep:`` -> concrete points with stable indices, readable names and derived seeds.

grid (cartesian product) x zip (paired lists) x points (explicit override sets) x folds.
The order is fixed by the spec alone, so the same spec always gives the same points.
"""

from __future__ import annotations

import itertools
from typing import Any

from mrihpc.points import Point, point_config  # noqa: F401 - part of the sweep API
from mrihpc.seeding import seed_sequence_word
from mrihpc.spec import JobSpec
from mrihpc.specfile import SpecError, valid_key_path, validate_dict

# Short names for the coordinates people sweep most (the point name reads "lr=3e-4,acc=8").
ALIASES = {
    "accelerations": "acc",
    "center_fractions": "cf",
    "batch_size": "bs",
    "weight_decay": "wd",
    "channels": "ch",
    "restart_epochs": "T0",
}


def format_value(value: Any) -> str:
    """Compact text for a coordinate value: 0.0003 -> 3e-4, [8] -> 8, [4, 8] -> 4+8."""
    if isinstance(value, (list, tuple)):
        return "+".join(format_value(v) for v in value)
    if isinstance(value, float):
        if value != 0 and not 1e-2 <= abs(value) < 1e5:
            mantissa, exp = f"{value:.3e}".split("e")
            return f"{mantissa.rstrip('0').rstrip('.')}e{int(exp)}"
        return f"{value:.4g}"
    if isinstance(value, dict):  # {ce: 1} -> ce; {name: sgd, lr: 0.01} -> sgd+lr:0.01
        head = [str(value["name"])] if "name" in value else []
        weights = not head  # a loss: a term of weight 1 reads as its bare name
        return "+".join(
            head
            + [
                k if weights and v == 1 else f"{ALIASES.get(k, k)}:{format_value(v)}"
                for k, v in value.items()
                if k != "name"
            ]
        )
    return str(value)


def short_names(keys: list[str]) -> dict[str, str]:
    """key.path -> shortest unambiguous suffix (aliased), e.g. optim.lr -> lr."""
    out = {}
    for key in keys:
        parts = key.split(".")
        for n in range(1, len(parts) + 1):
            candidate = ".".join(parts[-n:])
            clashes = [k for k in keys if k != key and ".".join(k.split(".")[-n:]) == candidate]
            if not clashes:
                break
        if candidate == "name" and len(parts) > 1:  # optim.name -> optim, model.name -> model
            candidate = parts[-2]
        out[key] = ALIASES.get(candidate, candidate)
    return out


def point_seed(base_seed: int, index: int) -> int:
    """A seed for point ``index`` that differs between points and never changes for a spec."""
    return (
        seed_sequence_word([base_seed & 0xFFFFFFFF, index]) & 0x7FFFFFFF
    )  # NumPy's SeedSequence, without NumPy


def _axes(spec: JobSpec) -> list[list[dict[str, Any]]]:
    """The sweep as a list of axes; each axis is a list of override dicts."""
    sweep, axes = spec.sweep, []
    for key, values in sweep.grid.items():
        axes.append([{key: v} for v in values])
    if sweep.zip:
        keys = list(sweep.zip)
        axes.append([dict(zip(keys, row)) for row in zip(*sweep.zip.values())])
    if sweep.points:
        axes.append([dict(p) for p in sweep.points])
    if sweep.folds:
        axes.append([{"data.folds": sweep.folds, "data.fold": k} for k in range(sweep.folds)])
    return axes


#: keys every point of one array job shares: one sbatch script, one container, one requeue limit
FIXED_PER_ARRAY = ("name", "task", "cluster", "container", "train.max_requeues", "sweep")


def _why_not(key: str, spec: JobSpec) -> str | None:
    fixed = next((f for f in FIXED_PER_ARRAY if key == f or key.startswith(f + ".")), None)
    if fixed:
        return (
            f"{fixed} cannot vary between the points of one array job (they share one sbatch "
            "script, container and requeue limit); write one spec per value instead"
        )
    return valid_key_path(key, type(spec))


def check_keys(spec: JobSpec, source: str) -> None:
    """Every sweep key must name a field that may vary per point; raises SpecError listing the bad
    ones."""
    problems = []
    for section in ("grid", "zip"):
        for key in getattr(spec.sweep, section):
            if why := _why_not(key, spec):
                problems.append(f"{source}: sweep.{section}.{key}: {why}")
    for i, overrides in enumerate(spec.sweep.points):
        for key in overrides:
            if why := _why_not(key, spec):
                problems.append(f"{source}: sweep.points[{i}].{key}: {why}")
    problems += adaptive_problems(spec, source)
    if problems:
        raise SpecError(problems)


def adaptive_problems(spec: JobSpec, source: str) -> list[str]:
    """What makes ``sweep.adaptive`` unusable: a metric the task does not report, rungs that
    cannot halve, points that would not share the rungs' epochs."""
    from mrihpc import workloads

    a, where = spec.sweep.adaptive, f"{source}: sweep.adaptive"
    if a is None:
        return []
    problems = []
    metrics = workloads.get(spec.task).metrics
    if a.metric is not None and a.metric not in metrics:
        problems.append(
            f"{where}.metric: {a.metric!r} is not a validation metric of {spec.task}; "
            f"allowed: {', '.join(sorted(metrics))}"
        )
    if a.max_epochs is not None and a.max_epochs != spec.train.epochs:
        problems.append(
            f"{where}.max_epochs: {a.max_epochs} differs from train.epochs "
            f"({spec.train.epochs}); the last rung trains to train.epochs, as the full run "
            "would: set one of them, or both alike"
        )
    if a.min_epochs >= spec.train.epochs:
        problems.append(
            f"{where}.min_epochs: {a.min_epochs} leaves no rung to promote to: it must "
            f"be below train.epochs ({spec.train.epochs})"
        )
    swept = [*spec.sweep.grid, *spec.sweep.zip, *(k for p in spec.sweep.points for k in p)]
    if "train.epochs" in swept:
        problems.append(
            f"{where}: train.epochs cannot vary between points: the rungs set every point's epochs"
        )
    if (configurations := count_points(spec) // (spec.sweep.folds or 1)) < 2:
        problems.append(
            f"{where}: successive halving needs at least 2 configurations to choose "
            f"between; the sweep has {configurations}"
        )
    return problems


def count_points(spec: JobSpec) -> int:
    """How many points the sweep expands to, without expanding it."""
    s, n = spec.sweep, 1
    for values in s.grid.values():
        n *= len(values)
    n *= len(next(iter(s.zip.values()))) if s.zip else 1
    n *= len(s.points) or 1
    return n * (s.folds or 1)


def expand(spec: JobSpec, source: str = "<spec>") -> list[Point]:
    """All points of the sweep, in a fixed order (a spec without a sweep is one point)."""
    check_keys(spec, source)
    if (n := count_points(spec)) > spec.sweep.max_points:
        raise SpecError(
            [
                f"{source}: sweep: {n:,} points exceed sweep.max_points "
                f"({spec.sweep.max_points:,}); set sweep.max_points to run that many"
            ]
        )
    axes = _axes(spec)
    combos = [{k: v for o in combo for k, v in o.items()} for combo in itertools.product(*axes)]
    names = short_names(
        list(dict.fromkeys(k for axis in axes for o in axis for k in o if k != "data.folds"))
    )
    points = []
    for index, overrides in enumerate(combos):
        label = ",".join(
            f"{names[k]}={format_value(v)}" for k, v in overrides.items() if k in names
        )
        points.append(
            Point(index, label or spec.name, overrides, point_seed(spec.train.seed, index))
        )
    return points


def expand_and_validate(spec: JobSpec, raw: dict, source: str) -> list[tuple[Point, JobSpec]]:
    """Expand the sweep and validate every point's concrete spec; all problems in one error.

    Every point is validated, but a point re-validates only the sections its overrides touch
    (on a copy of the spec, which is valid already), then the task's cross-section checks; a
    point that fails there is validated whole, for the full message. 1,000 points cost a few
    small section validations each instead of 1,000 whole specs."""
    points, problems, out = expand(spec, source), [], []
    base = spec.model_copy(update={"sweep": type(spec.sweep)()})
    for point in points:
        data = point_config(raw, point)
        try:
            out.append((point, _fast(base, data, point) or validate_dict(data, source)))
        except SpecError as e:
            problems += [
                f"{line} (in sweep point {point.index}: {point.name})" for line in e.problems
            ]
    if problems:
        raise SpecError(problems)
    return out


def _fast(base: JobSpec, data: dict, point: Point) -> JobSpec | None:
    """``base`` with the touched sections of ``data`` validated onto a copy; None when anything is
    off (validate_dict then reports it) or a section outside the task's own may have changed."""
    from mrihpc import workloads

    w = workloads.get(base.task)
    if w.check_raw(data):
        return None
    data = w.with_defaults(data)
    spec = base.model_copy()
    validator = type(base).__pydantic_validator__
    try:
        for section in dict.fromkeys([*(k.split(".")[0] for k in point.overrides), "train"]):
            if section not in type(base).model_fields or section in ("name", "task"):
                return None
            validator.validate_assignment(spec, section, data[section])
    except ValueError:  # pydantic's ValidationError, and our validators' errors
        return None
    hook = w.check_spec
    return None if hook and workloads.resolve(hook)(spec) else spec
