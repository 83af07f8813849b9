"""YAML file -> validated JobSpec: ``extends:``, ``-o`` overrides, and every problem at once.

Every user mistake becomes one line ``file: key.path: what is wrong; allowed: ...`` in a
SpecError; the CLI prints them and exits non-zero, never with a traceback.
"""
from __future__ import annotations

import copy
import difflib
import types
import typing
from pathlib import Path
from typing import Any, Iterable, Optional

import yaml
from pydantic import BaseModel, ValidationError

from mrihpc.spec import JobSpec


class SpecError(Exception):
    """One or more problems in a spec; ``problems`` holds one line each."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


def read_yaml(path: Path) -> dict:
    """Parse one YAML file into a dict, or raise SpecError naming the file and line."""
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise SpecError([f"{path}: no such file"]) from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else "?"
        raise SpecError([f"{path}: {where}: not valid YAML: {getattr(e, 'problem', e)}"]) from None
    if not isinstance(data, dict):
        raise SpecError([f"{path}: the top level must be a mapping of keys, got {type(data).__name__}"])
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
        raise SpecError([f"{path}: extends: cycle through {' -> '.join(map(str, _seen + (path,)))}"])
    data = read_yaml(path)
    parent = data.pop("extends", None)
    if parent is None:
        return data
    if not isinstance(parent, str):
        raise SpecError([f"{path}: extends: must be a file name, got {parent!r}"])
    return deep_merge(load_raw(path.parent / parent, _seen + (path,)), data)


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


def _model_at(loc: tuple) -> Optional[type[BaseModel]]:
    """The pydantic class whose fields live at ``loc`` in the JobSpec tree, if any."""
    model: Any = JobSpec
    for key in loc:
        if not (isinstance(model, type) and issubclass(model, BaseModel)) or key not in model.model_fields:
            return None
        model = _unwrap(model.model_fields[key].annotation)
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


def _unwrap(annotation: Any) -> Any:
    """Optional[X] -> X; anything else unchanged."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def format_errors(error: ValidationError, source: str) -> list[str]:
    """pydantic's errors as ``source: key.path: message`` lines, with suggestions for typos."""
    lines = []
    for err in error.errors():
        loc = tuple(str(p) for p in err["loc"])
        path = ".".join(loc) or "(top level)"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            known = sorted(_model_at(loc[:-1]).model_fields) if _model_at(loc[:-1]) else []
            close = difflib.get_close_matches(loc[-1], known, n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            msg = f"unknown key; {hint}allowed: {', '.join(known)}"
        elif err["type"] == "missing":
            msg = "required key is missing"
        elif err["type"] not in ("value_error", "assertion_error"):
            msg = f"{msg}; got {err.get('input')!r}"
        lines.append(f"{source}: {path}: {msg}")
    return lines


def valid_key_path(dotted: str) -> Optional[str]:
    """None when ``dotted`` names a field of the JobSpec tree, else why not (with suggestions)."""
    model: Any = JobSpec
    for i, key in enumerate(dotted.split(".")):
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            # inside a free mapping (loss, cluster.sbatch): any key is fine; below a scalar is not
            return None if typing.get_origin(model) is dict else f"{'.'.join(dotted.split('.')[:i])} has no sub-keys"
        if key not in model.model_fields:
            close = difflib.get_close_matches(key, model.model_fields, n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            return f"no such key {key!r}; {hint}allowed: {', '.join(sorted(model.model_fields))}"
        model = _unwrap(model.model_fields[key].annotation)
    return None


def validate_dict(raw: dict, source: str) -> JobSpec:
    """Validate a merged spec dict, raising SpecError with every problem."""
    try:
        return JobSpec.model_validate(raw)
    except ValidationError as e:
        raise SpecError(format_errors(e, source)) from None


def load_spec(path: Path | str, overrides: Iterable[str] = ()) -> tuple[JobSpec, dict]:
    """Load, merge ``extends``, apply ``-o`` overrides and validate. Returns (spec, raw dict)."""
    raw = load_raw(Path(path))
    try:
        pairs = parse_overrides(overrides)
    except SpecError as e:
        raise SpecError([f"{path}: {line}" for line in e.problems]) from None
    problems = []
    for key, value in pairs:
        why = valid_key_path(key)
        if why:
            problems.append(f"{path}: -o {key}: {why}")
        else:
            set_path(raw, key, value)
    if problems:
        raise SpecError(problems)
    return validate_dict(raw, str(path)), raw
