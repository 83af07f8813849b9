"""The linter and the formatter, as CI runs them: ruff with pyproject.toml's rules (pyflakes,
the syntax and statement checks, whitespace, lines of at most 100 characters, strings, comments
and docstrings included) and ``ruff format --check`` at width 100, over the package, tests,
benchmarks and tools."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from conftest import REPO


def _ruff() -> str:
    found = Path(sys.executable).with_name("ruff")
    return str(found) if found.is_file() else shutil.which("ruff") or "ruff"


def test_ruff_finds_nothing():
    out = subprocess.run(
        [_ruff(), "check", "--no-cache", "."], cwd=REPO, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]


def test_the_tree_is_formatted():
    """``ruff format`` (width 100) changes nothing: run it before committing."""
    out = subprocess.run(
        [_ruff(), "format", "--check", "--no-cache", "."], cwd=REPO, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
