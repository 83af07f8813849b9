"""The base of every spec section and the checks they share (names, Slurm times, control
characters); torch-free, imported by the login node and by each workload's sections."""

from __future__ import annotations

import re
import shlex
from typing import Any, Optional

from pydantic import BaseModel, ConfigDict, field_validator

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
# Slurm's --time formats: MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS
_TIME = re.compile(r"^(?:(\d+)-(\d+)(?::(\d+)(?::(\d+))?)?|(\d+)(?::(\d+)(?::(\d+))?)?)$")
MAIL_TYPES = (
    "NONE",
    "BEGIN",
    "END",
    "FAIL",
    "REQUEUE",
    "ALL",
    "INVALID_DEPEND",
    "STAGE_OUT",
    "TIME_LIMIT",
    "TIME_LIMIT_90",
    "TIME_LIMIT_80",
    "TIME_LIMIT_50",
    "ARRAY_TASKS",
)


def _one_of(value: str, table: dict, what: str) -> str:
    if value not in table:
        raise ValueError(f"unknown {what} {value!r}; allowed: {', '.join(sorted(table))}")
    return value


def _registered(field: str, table: dict, what: str):
    """A validator that accepts only the names registered in ``table``."""
    return field_validator(field)(classmethod(lambda cls, v: _one_of(v, table, what)))


def slurm_time_minutes(text: str) -> int:
    """Minutes in a Slurm time string (rounded up), e.g. ``"1-12"`` -> 2160.

    Raises ValueError for anything Slurm's --time would not accept.
    """
    m = _TIME.match(str(text).strip())
    if not m:
        raise ValueError(
            f"not a Slurm time {text!r}; allowed: MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS"
        )
    if m.group(1) is not None:  # D-HH[:MM[:SS]]
        days, hours, mins, secs = (int(g or 0) for g in m.group(1, 2, 3, 4))
    elif m.group(7) is not None:  # HH:MM:SS
        days, hours, mins, secs = 0, int(m.group(5)), int(m.group(6)), int(m.group(7))
    else:  # MM[:SS]
        days, hours, mins, secs = 0, 0, int(m.group(5)), int(m.group(6) or 0)
    if hours >= 24 and days or mins >= 60 and (hours or days) or secs >= 60:
        raise ValueError(f"field out of range in Slurm time {text!r}")
    total = ((days * 24 + hours) * 60 + mins) * 60 + secs
    if total <= 0:
        raise ValueError(f"Slurm time {text!r} must be positive")
    return -(-total // 60)


def _command_words(value: Optional[str]) -> Optional[str]:
    """A command given as words (``run-nvidia-docker.sh --x``): it must split like a shell line."""
    if value is None:
        return value
    try:
        words = shlex.split(value)
    except ValueError as e:
        raise ValueError(f"{value!r} does not split into words ({e})") from None
    if not words:
        raise ValueError("empty command")
    return value


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _control_characters(value: Any) -> Optional[str]:
    """The first string inside ``value`` (recursively) holding a control character, if any."""
    if isinstance(value, str):
        return value if _CONTROL.search(value) else None
    if isinstance(value, dict):
        value = [*value.keys(), *value.values()]
    if isinstance(value, (list, tuple)):
        return next((bad for v in value if (bad := _control_characters(v)) is not None), None)
    return None


class Section(BaseModel):
    """Base of every spec section: unknown keys, inf and NaN, and control characters (a newline
    would start a new line in a generated script) are refused."""

    # The attribute docstrings document each field where it is declared; pydantic is not asked to
    # read them (use_attribute_docstrings parses every class's source at import: 55 ms of each
    # login verb that loads a spec, for descriptions nothing reads).
    model_config = ConfigDict(extra="forbid", validate_default=True, allow_inf_nan=False)

    @field_validator("*")
    @classmethod
    def _printable(cls, value: Any) -> Any:
        bad = _control_characters(value)
        if bad is not None:
            raise ValueError(
                f"control character in {bad!r}; newlines, tabs and other control "
                "characters are not allowed"
            )
        return value
