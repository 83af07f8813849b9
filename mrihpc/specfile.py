"""YAML file -> validated JobSpec: ``extends:``, ``-o`` overrides, and every problem at once.

Every user mistake becomes one line ``file: key.path: what is wrong; allowed: ...`` in a
SpecError; the CLI prints them and exits non-zero, never with a traceback.
"""

from __future__ import annotations

import copy
import difflib
import stat
import types
import typing
from pathlib import Path
from typing import Any, Iterable, Optional

import yaml
from pydantic import BaseModel, ValidationError

from mrihpc import workloads
from mrihpc.errors import SpecError
from mrihpc.spec import JobSpec
from mrihpc.workloads import job_spec_class


# libyaml's safe loader when PyYAML has it: a 10,000-value sweep list parses ten times faster
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

#: a spec file larger than this is refused unread (``extends: /dev/zero`` would read forever)
MAX_SPEC_BYTES = 4 << 20
#: values a spec may hold once its aliases are expanded: far above a 10,000-point sweep list
#: (about 30,000 values), far below what an alias bomb (``&a [*b, *b, ...]`` nested) expands to
MAX_SPEC_VALUES = 1_000_000


class _StrictLoader(_LOADER):  # type: ignore[misc, valid-type]
    """The safe loader, refusing a key given twice in one mapping (YAML would keep the last)."""

    def construct_mapping(self, node, deep=False):
        first_line: dict = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # ``<<: *base`` merges are meant to be overridden
            key = self.construct_object(key_node, deep=True)
            try:
                line = first_line.setdefault(key, key_node.start_mark.line + 1)
            except TypeError:
                continue  # unhashable key: the constructor below says so
            if line != key_node.start_mark.line + 1:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"key {key!r} given twice (lines {line} and {key_node.start_mark.line + 1}); "
                    "keep one",
                    key_node.start_mark,
                )
        return super().construct_mapping(node, deep=deep)


def expanded_size(data: Any, limit: int) -> Optional[str]:
    """None when ``data`` holds at most ``limit`` values with every alias expanded, else why not.

    Counts through shared sub-trees once each (memoised by identity), so a bomb that would
    expand to 10^9 values is measured in as many steps as it has distinct nodes."""
    sizes: dict[int, int] = {}
    open_: set[int] = set()

    def size(obj: Any) -> int:
        if not isinstance(obj, (dict, list)):
            return 1
        key = id(obj)
        if key in sizes:
            return sizes[key]
        if key in open_:
            raise ValueError("an alias refers to a mapping or list that contains it")
        open_.add(key)
        items = [x for kv in obj.items() for x in kv] if isinstance(obj, dict) else obj
        total = 1
        for item in items:
            total += size(item)
            if total > limit:
                break
        open_.discard(key)
        sizes[key] = total
        return total

    try:
        total = size(data)
    except ValueError as e:
        return str(e)
    except RecursionError:
        return "nested too deeply"
    if total > limit:
        return (
            f"expands to more than {limit:,} values (aliases repeated inside aliases?); "
            f"a spec holds at most {limit:,}"
        )
    return None


def read_yaml(path: Path) -> dict:
    """Parse one YAML file into a dict, or raise SpecError naming the file and line.

    Only a regular file of at most MAX_SPEC_BYTES is read; a key given twice, an alias that
    contains itself, and more than MAX_SPEC_VALUES values once aliases expand are refused."""
    try:
        info = path.stat()
        if stat.S_ISDIR(info.st_mode):
            raise IsADirectoryError
        if not stat.S_ISREG(info.st_mode):
            raise SpecError(
                [f"{path}: not a regular file (a device, pipe or socket); a spec is a YAML file"]
            )
        if info.st_size > MAX_SPEC_BYTES:
            raise SpecError(
                [f"{path}: {info.st_size:,} bytes; a spec file holds at most {MAX_SPEC_BYTES:,}"]
            )
        with open(path, "rb") as f:
            text = f.read(MAX_SPEC_BYTES + 1)
        if len(text) > MAX_SPEC_BYTES:  # grew since the stat
            raise SpecError(
                [
                    f"{path}: over {MAX_SPEC_BYTES:,} bytes; a spec file holds at most "
                    f"{MAX_SPEC_BYTES:,}"
                ]
            )
        data = yaml.load(text.decode("utf-8"), Loader=_StrictLoader)
    except FileNotFoundError:
        raise SpecError([f"{path}: no such file"]) from None
    except IsADirectoryError:
        raise SpecError([f"{path}: is a folder; expected a YAML spec file"]) from None
    except PermissionError:
        raise SpecError([f"{path}: not readable (permission denied)"]) from None
    except UnicodeDecodeError as e:
        raise SpecError(
            [
                f"{path}: not UTF-8 text (byte {e.start}: {e.object[e.start : e.start + 1]!r}); "
                "a spec is a UTF-8 YAML file (binary, or saved as UTF-16?)"
            ]
        ) from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else "?"
        raise SpecError([f"{path}: {where}: not valid YAML: {getattr(e, 'problem', e)}"]) from None
    except RecursionError:
        raise SpecError([f"{path}: nested too deeply to read"]) from None
    if not isinstance(data, dict):
        raise SpecError(
            [f"{path}: the top level must be a mapping of keys, got {type(data).__name__}"]
        )
    why = expanded_size(data, MAX_SPEC_VALUES)
    if why:
        raise SpecError([f"{path}: {why}"])
    return data


#: sections a child spec replaces whole instead of merging: a sweep is one design, not a sum
REPLACED_SECTIONS = ("sweep",)


def deep_merge(base: dict, override: dict, top: bool = True) -> dict:
    """``override`` on top of ``base``; nested mappings merge (except ``sweep``, which a child
    replaces whole), everything else replaces."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if top and key in REPLACED_SECTIONS:
            out[key] = copy.deepcopy(value)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value, top=False)
        else:
            out[key] = copy.deepcopy(value)
    return out


def load_raw(path: Path, _seen: tuple[Path, ...] = ()) -> dict:
    """The spec file as a dict with its ``extends:`` chain merged in (paths relative to it)."""
    path = Path(path).resolve()
    if path in _seen:
        raise SpecError(
            [f"{path}: extends: cycle through {' -> '.join(map(str, _seen + (path,)))}"]
        )
    data = read_yaml(path)
    sweep = data.get("sweep")
    empty = [
        a
        for a in ("grid", "zip", "points")
        if isinstance(sweep, dict) and a in sweep and sweep[a] in ({}, [], None)
    ]
    if (
        empty
    ):  # written but empty: a slip, not "one point" (a child's sweep: replaces its parent's whole)
        raise SpecError(
            [
                f"{path}: sweep.{a}: empty; give it at least one entry, or leave sweep.{a} out for "
                "no sweep along it"
                for a in empty
            ]
        )
    parent = data.pop("extends", None)
    if parent is None:
        return data
    if not isinstance(parent, str):
        raise SpecError([f"{path}: extends: must be a file name, got {parent!r}"])
    try:
        base = load_raw(path.parent / parent, _seen + (path,))
    except SpecError as e:
        raise SpecError([f"{path}: extends: {line}" for line in e.problems]) from None
    return deep_merge(base, data)


def set_path(data: dict, dotted: str, value: Any) -> None:
    """Set ``data[a][b][c] = value`` for ``dotted = "a.b.c"``, creating mappings on the way."""
    *parents, last = dotted.split(".")
    node = data
    for key in parents:
        if not isinstance(node.get(key), dict):
            node[key] = {}
        node = node[key]
    node[last] = value


def parse_overrides(overrides: Iterable[str]) -> list[tuple[str, Any]]:
    """``["optim.lr=3e-4"]`` -> ``[("optim.lr", 0.0003)]``; values are YAML scalars."""
    pairs, problems = [], []
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            problems.append(f"-o {item}: expected key.path=value")
            continue
        try:
            value = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError as e:
            problems.append(f"-o {item}: value is not valid YAML: {e}")
            continue
        # YAML 1.1 reads "3e-4" as a string; users mean a number.
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                pass
        pairs.append((key.strip(), value))
    if problems:
        raise SpecError(problems)
    return pairs


def _is_model(t: Any) -> bool:
    return isinstance(t, type) and issubclass(t, BaseModel)


def _model_at(loc: tuple, root: type[BaseModel]) -> Optional[type[BaseModel]]:
    """The pydantic class whose fields live at ``loc`` in the spec tree ``root``, if any."""
    model: Any = root
    for key in loc:
        if _is_model(model) and key in model.model_fields:
            model = _unwrap(model.model_fields[key].annotation)
        elif _per_name(model):  # optim.<name>.lr, or the "all" entry
            model = typing.get_args(model)[1]
        else:
            return None
    return model if _is_model(model) else None


def _unwrap(annotation: Any) -> Any:
    """Optional[X] -> X; anything else unchanged."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def _per_name(annotation: Any) -> bool:
    """dict[str, Section]: a section given once for all or once per name (optim, schedule)."""
    return typing.get_origin(annotation) is dict and _is_model(typing.get_args(annotation)[1])


def _as_written(loc: tuple, raw: dict) -> tuple:
    """The key path as the user wrote it: ``optim.all.lr`` -> ``optim.lr`` when optim was one
    mapping."""
    if (
        len(loc) > 1
        and loc[0] in ("optim", "schedule")
        and loc[1] == "all"
        and "all" not in (raw.get(loc[0]) if isinstance(raw.get(loc[0]), dict) else {})
    ):
        return loc[:1] + loc[2:]
    return loc


def format_errors(
    error: ValidationError, source: str, root: type[BaseModel] = JobSpec, raw: Optional[dict] = None
) -> list[str]:
    """pydantic's errors as ``source: key.path: message`` lines, with suggestions for typos."""
    lines = []
    task = getattr(root, "model_fields", {}).get("task")
    for err in error.errors():
        loc = tuple(str(p) for p in err["loc"])
        path = ".".join(_as_written(loc, raw or {})) or "(top level)"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            section = _model_at(loc[:-1], root)
            known = sorted(section.model_fields) if section else []
            close = difflib.get_close_matches(loc[-1], known, n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            owner = (
                f" for task {raw['task']}" if raw and task and loc[0] in ("data", "model") else ""
            )
            msg = f"unknown key{owner}; {hint}allowed: {', '.join(known)}"
        elif err["type"] == "missing":
            msg = "required key is missing"
        elif err["type"] not in ("value_error", "assertion_error"):
            msg = f"{msg}; got {err.get('input')!r}"
        lines.append(f"{source}: {path}: {msg}")
    return lines


def valid_key_path(dotted: str, root: type[BaseModel] = JobSpec) -> Optional[str]:
    """None when ``dotted`` names a field of the spec tree ``root``, else why not (with
    suggestions)."""
    model: Any = root
    keys = dotted.split(".")
    for i, key in enumerate(keys):
        if _per_name(model):  # optim.lr (for all) or optim.G.lr (one optimiser)
            model = typing.get_args(model)[1]
            if key not in model.model_fields and i < len(keys) - 1:
                continue  # an optimiser's name; its settings follow
        if not _is_model(model):
            # inside a free mapping (loss, cluster.sbatch): any key is fine; below a scalar is not
            return (
                None
                if typing.get_origin(model) is dict
                else f"{'.'.join(dotted.split('.')[:i])} has no sub-keys"
            )
        if key not in model.model_fields:
            close = difflib.get_close_matches(key, model.model_fields, n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            return f"no such key {key!r}; {hint}allowed: {', '.join(sorted(model.model_fields))}"
        model = _unwrap(model.model_fields[key].annotation)
    return None


def spec_class_of(raw: dict) -> Optional[type[JobSpec]]:
    """The JobSpec class of the task ``raw`` names; None when it names no registered task."""
    task = raw.get("task")
    return job_spec_class(task) if isinstance(task, str) and task in workloads.WORKLOADS else None


def validate_dict(raw: dict, source: str) -> JobSpec:
    """Validate a merged spec dict against its task's sections, raising SpecError with every
    problem."""
    cls, problems = spec_class_of(raw), []
    if cls is None:
        task = raw.get("task")
        why = "required key is missing" if task is None else f"unknown task {task!r}"
        problems.append(f"{source}: task: {why}; allowed: {', '.join(workloads.names())}")
        cls = JobSpec  # still report every other problem of the common sections
        raw = {k: v for k, v in raw.items() if k != "task"} | {"task": "?"}
    else:
        w = workloads.get(raw["task"])
        problems += [f"{source}: {line}" for line in w.check_raw(raw)]
        raw = w.with_defaults(raw)
    try:
        spec = cls.model_validate(raw)
    except ValidationError as e:
        problems += format_errors(e, source, cls, raw)
    else:
        hook = workloads.get(spec.task).check_spec if cls is not JobSpec else None
        problems += [
            f"{source}: {line}" for line in (workloads.resolve(hook)(spec) if hook else [])
        ]
    if problems:
        raise SpecError(problems)
    return spec


def load_point_spec(paths) -> JobSpec:
    """The concrete spec of one point (``PointPaths``): its ``config.yaml`` once the point has
    started (or a user edited it), else derived from the run's spec.yaml and the point's
    overrides in manifest.json (the run directory holds no per-point file until then)."""
    return job_spec_from_raw(point_raw(paths))


def job_spec_from_raw(raw: dict) -> JobSpec:
    return job_spec_class(raw["task"]).model_validate(workloads.get(raw["task"]).with_defaults(raw))


def point_raw(paths) -> dict:
    """The point's spec dict: config.yaml when there is one, else spec.yaml + its overrides."""
    if paths.config.is_file():
        return yaml.safe_load(paths.config.read_text())
    import json

    from mrihpc.points import Point, point_config

    run_root = paths.root.parent.parent
    index = int(paths.root.name)
    manifest = json.loads((run_root / "manifest.json").read_text())
    entry = next((p for p in manifest["points"] if p["index"] == index), None)
    if entry is None:
        raise KeyError(f"{run_root}: no point {index}")
    raw = yaml.load((run_root / "spec.yaml").read_text(), Loader=_LOADER)
    raw.pop("extends", None)  # spec.yaml is the merged spec
    point = Point(index, entry["name"], entry.get("overrides", {}), entry["seed"])
    return job_spec_from_raw(point_config(raw, point)).model_dump(mode="json")


def load_spec(path: Path | str, overrides: Iterable[str] = ()) -> tuple[JobSpec, dict]:
    """Load, merge ``extends``, apply ``-o`` overrides and validate. Returns (spec, raw dict)."""
    raw = load_raw(Path(path))
    try:
        pairs = parse_overrides(overrides)
    except SpecError as e:
        raise SpecError([f"{path}: {line}" for line in e.problems]) from None
    problems = []
    for key, value in pairs:  # the task first: it decides which keys the others may name
        if key == "task":
            set_path(raw, key, value)
    root = spec_class_of(raw) or JobSpec
    for key, value in pairs:
        why = valid_key_path(key, root)
        if why:
            problems.append(f"{path}: -o {key}: {why}")
        else:
            set_path(raw, key, value)
    if problems:
        raise SpecError(problems)
    return validate_dict(raw, str(path)), raw
