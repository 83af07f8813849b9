#!/usr/bin/env bash
# A private Docker engine for the tests, and the stock-like image they run in.
#   bash tools/docker-engine.sh install          docker.io + debootstrap (Debian packages; root)
#   bash tools/docker-engine.sh start DIR        dockerd on unix://DIR/docker.sock; prints its PID
#   bash tools/docker-engine.sh image            the test image (built once, kept in the cache)
#   bash tools/docker-engine.sh stop DIR         stop that dockerd, undo its mount and cgroups
#
# The engine never touches the host's network (--bridge=none, no iptables, no masquerading) and
# its containers run with --network none. No registry is reachable here, so the image is made
# locally: a debootstrap'ed Debian with Python (its rootfs tar cached), imported, then a layer
# with the CPU torch wheel pip already finds on this machine, installed with --network none.
# It stands for a stock NGC PyTorch image: Python and torch (and what torch itself needs), NO
# mrihpc and none of its other dependencies (no numpy, submitit, pydantic, h5py, ...).
#
# The image lives in the engine's data root, under $MRIHPC_TEST_CACHE (default
# ~/.cache/mrihpc-test), outside the repository, so later runs start in about a second; with the
# cache empty the first build takes 3-5 minutes.
set -euo pipefail
CACHE=${MRIHPC_TEST_CACHE:-$HOME/.cache/mrihpc-test}
DATA=$CACHE/docker-data
IMAGE=${MRIHPC_TEST_IMAGE:-mrihpc-test/stock-torch:2.13.0}
BASE=mrihpc-test/debian-python:bookworm
MIRROR=${MIRROR:-$(sed -n "s/^URIs: *//p" /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -1)}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
DOCKER=/usr/bin/docker

install() {
  # apt-install.sh keeps the package from starting a dockerd with the default (host-network) settings
  bash "$(dirname "$0")/apt-install.sh" docker.io debootstrap
}

start() {
  local dir=${1:?start DIR}
  mkdir -p "$dir/exec" "$DATA"
  # one engine per data root: a second one could not lock it. One still running on it is left by a
  # test session that was killed before its teardown: stop it (its folder is the exec root's parent)
  local pid old
  for pid in $(pgrep -f -- "^dockerd --data-root $DATA " || true); do
    old=$(tr '\0' '\n' < "/proc/$pid/cmdline" | sed -n '/^--exec-root$/{n;p}')
    echo "stopping the engine left on $DATA by an earlier run (pid $pid)" >&2
    stop "$(dirname "$old")"
  done
  dockerd --data-root "$DATA" --exec-root "$dir/exec" --pidfile "$dir/dockerd.pid" -H "unix://$dir/docker.sock" \
    --bridge=none --iptables=false --ip6tables=false --ip-masq=false \
    --exec-opt native.cgroupdriver=cgroupfs > "$dir/dockerd.log" 2>&1 &
  local pid=$!
  for _ in $(seq 120); do
    DOCKER_HOST=unix://$dir/docker.sock $DOCKER info >/dev/null 2>&1 && { echo "$pid"; return; }
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.5
  done
  echo "dockerd did not start; its log: $dir/dockerd.log" >&2
  tail -20 "$dir/dockerd.log" >&2
  return 1
}

image() {
  : "${DOCKER_HOST:?set DOCKER_HOST to the socket of the engine}"
  if $DOCKER image inspect "$IMAGE" >/dev/null 2>&1; then return; fi
  local work; work=$(mktemp -d "$CACHE/build.XXXX")
  local rootfs=$CACHE/debian-bookworm-python.tar
  if ! $DOCKER image inspect "$BASE" >/dev/null 2>&1; then
    if [[ ! -s $rootfs ]]; then
      echo "debootstrap (Debian bookworm + python3) from $MIRROR ..." >&2
      debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates \
        bookworm "$work/rootfs" "$MIRROR" > "$work/debootstrap.log" || { tail -20 "$work/debootstrap.log" >&2; return 1; }
      tar -C "$work/rootfs" -cf "$rootfs.tmp" . && mv "$rootfs.tmp" "$rootfs"
      rm -rf "$work/rootfs"
    fi
    $DOCKER import -c 'ENV LANG=C.UTF-8' "$rootfs" "$BASE" >/dev/null
  fi
  mkdir -p "$work/ctx/wheels"
  # torch and only what torch itself requires, from the wheel pip finds on this machine
  python3 -m pip download -q --disable-pip-version-check --python-version 3.11 --only-binary=:all: \
    torch==2.13.0 -d "$work/ctx/wheels"
  cat > "$work/ctx/Dockerfile" <<EOF
FROM $BASE
ENV PATH=/opt/venv/bin:\$PATH PIP_DISABLE_PIP_VERSION_CHECK=1
RUN --mount=type=bind,source=wheels,target=/wheels \\
    python3 -m venv /opt/venv && pip install --no-cache-dir --no-index --find-links /wheels torch==2.13.0
EOF
  DOCKER_BUILDKIT=1 $DOCKER build --network none --progress plain -t "$IMAGE" "$work/ctx" > "$work/build.log" 2>&1 \
    || { tail -30 "$work/build.log" >&2; return 1; }
  rm -rf "$work"
}

stop() {
  local dir=${1:?stop DIR}
  local pid; pid=$(cat "$dir/dockerd.pid" 2>/dev/null || true)
  if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then
    DOCKER_HOST=unix://$dir/docker.sock $DOCKER ps -aq 2>/dev/null | xargs -r env DOCKER_HOST="unix://$dir/docker.sock" $DOCKER rm -f >/dev/null 2>&1 || true
    kill -TERM "$pid"
    for _ in $(seq 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
  fi
  # dockerd leaves its network-namespace mount and empty cgroup folders behind
  if mountpoint -q "$dir/exec/netns/default" 2>/dev/null; then umount "$dir/exec/netns/default" || true; fi
  for d in /sys/fs/cgroup/*/docker /sys/fs/cgroup/docker; do
    [[ -d $d ]] && find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null
  done
  return 0
}

case "${1:-}" in
  install) install ;;
  start) start "${2:-}" ;;
  image) image ;;
  stop) stop "${2:-}" ;;
  *) echo "usage: $0 install | start DIR | image | stop DIR" >&2; exit 2 ;;
esac
