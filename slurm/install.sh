#!/usr/bin/env bash
# Install the Debian packages of the test cluster without starting any system daemon.
set -euo pipefail
exec bash "$(dirname "$0")/../tools/apt-install.sh" slurm-wlm slurmdbd munge mariadb-server
