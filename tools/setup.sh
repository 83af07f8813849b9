#!/usr/bin/env bash
# Set up mrihpc in ./.venv on a fresh machine.
#   bash tools/setup.sh          the package and its dependencies (CPU torch)
#   bash tools/setup.sh --test   also the test tools and the Debian packages of the test
#                                cluster (Slurm, slurmdbd, MariaDB, munge); needs root
# Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."
here=$PWD

python3 -m venv .venv
pip=(.venv/bin/python -m pip install -q --disable-pip-version-check)
# torch first, pinned to the CPU wheel: anything that pulls torch in later is then satisfied
# (NGC images bring their own torch, so setup.cfg only gives a lower bound).
.venv/bin/python -c "import torch" 2>/dev/null || "${pip[@]}" "torch==2.13.0"
# visdom builds from an sdist whose setup.py needs setuptools < 81
export PIP_CONSTRAINT="$here/tools/constraints.txt"
if [[ "${1:-}" == "--test" ]]; then
  "${pip[@]}" -e ".[test]"
  bash slurm/install.sh
else
  "${pip[@]}" -e .
fi
echo "mrihpc set up in $here/.venv"
