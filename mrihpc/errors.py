"""The spec's error, in a module of its own: every login-node verb catches it, and most never load
a spec, so catching it must not import pydantic and the spec models (0.13 s on a 2-core VM)."""

from __future__ import annotations


class SpecError(Exception):
    """One or more problems in a spec; ``problems`` holds one line each."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems
