#!/usr/bin/env bash
# Set up mrihpc in ./.venv on a fresh machine.
#   bash tools/setup.sh          the package and its dependencies (CPU torch)
#   bash tools/setup.sh --test   also the test tools and the Debian packages of the tests:
#                                the cluster (Slurm, slurmdbd, MariaDB, munge) and Chromium
#                                (screenshots of the Visdom page); needs root
# Visdom's page assets come from npm packages (so the page works offline later); without
# npm, live plots still work but the page needs `mrihpc visdom assets` run somewhere online.
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
  bash tools/docker-engine.sh install
  bash tools/apt-install.sh chromium
  command -v npm >/dev/null || bash tools/apt-install.sh npm
else
  "${pip[@]}" -e .
fi
# An editable install is never byte-compiled, and where PYTHONDONTWRITEBYTECODE is set nothing
# ever writes the .pyc files: every login verb would compile the package again (0.05-0.2 s).
.venv/bin/python -m compileall -q mrihpc
if ! .venv/bin/python -c "from mrihpc.login.live import assets; raise SystemExit(bool(assets.missing()))"; then
  if command -v npm >/dev/null; then
    .venv/bin/mrihpc visdom assets
  else
    echo "note: no npm here, so Visdom's page assets are not installed (mrihpc visdom assets)" >&2
  fi
fi
echo "mrihpc set up in $here/.venv"
