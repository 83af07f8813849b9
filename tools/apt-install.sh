#!/usr/bin/env bash
# Install Debian packages (those not yet installed) without starting any system daemon.
#   bash tools/apt-install.sh PKG...
set -euo pipefail
missing=()
for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
[[ ${#missing[@]} -eq 0 ]] && exit 0
if [[ $(id -u) -ne 0 ]]; then echo "apt-install: installing ${missing[*]} needs root" >&2; exit 1; fi
# no systemd here: keep the packages' postinst scripts from starting system-wide daemons
policy=/usr/sbin/policy-rc.d
created=0
if [[ ! -e $policy ]]; then printf '#!/bin/sh\nexit 101\n' >"$policy"; chmod +x "$policy"; created=1; fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
[[ $created -eq 1 ]] && rm -f "$policy"
exit 0
