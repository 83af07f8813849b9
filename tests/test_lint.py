"""The linter and the formatter, as CI runs them: ruff with pyproject.toml's rules (pyflakes,
the syntax and statement checks, whitespace) and ``ruff format --check`` at width 100, over the
package, tests, benchmarks and tools."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from conftest import REPO

#: lines over the 100-character target that the formatter leaves (long strings and comments);
#: lower it as they are wrapped (E501 is enforced once it reaches 0)
LONG_LINES_AT_MOST = 319


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


def test_long_lines_do_not_grow():
    files = subprocess.run(
        ["git", "ls-files", "*.py"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split()
    long = [
        f"{f}:{n}"
        for f in files
        for n, line in enumerate((REPO / f).read_text().splitlines(), 1)
        if len(line) > 100
    ]
    assert len(long) <= LONG_LINES_AT_MOST, (
        f"{len(long)} lines over 100 characters, at most {LONG_LINES_AT_MOST}"
    )
