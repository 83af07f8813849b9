"""One point of a sweep and its concrete spec dict: no spec models, no validation, so both the
sweep's expansion (``sweep``) and the reading of a point's spec (``specfile.point_raw``) use it."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Point:
    """One concrete run of a sweep."""

    index: int
    """Position in the sweep; also the array task's point index."""
    name: str
    """Readable coordinates, e.g. ``lr=3e-4,acc=8,fold=1``."""
    overrides: dict[str, Any] = field(default_factory=dict)
    """key.path -> value applied on top of the spec."""
    seed: int = 0
    """train.seed of this point, derived from the spec seed and the index."""

    def to_json(self) -> dict:
        return {
            "index": self.index,
            "name": self.name,
            "overrides": self.overrides,
            "seed": self.seed,
        }


def point_config(raw: dict, point: Point) -> dict:
    """The concrete spec dict of one point: overrides applied, its seed set, no sweep left.
    Copy-on-write: only the mappings along an overridden path are copied (``raw`` is shared,
    never changed), so 10,000 points cost no deep copies of the spec."""
    data = {k: v for k, v in raw.items() if k != "sweep"}
    for key, value in [*point.overrides.items(), ("train.seed", point.seed)]:
        _set_copied(data, key.split("."), value)
    return data


def _set_copied(data: dict, parts: list[str], value: Any) -> None:
    for part in parts[:-1]:
        child = data.get(part)
        data[part] = dict(child) if isinstance(child, dict) else {}
        data = data[part]
    data[parts[-1]] = copy.deepcopy(value)
