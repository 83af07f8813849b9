#!/usr/bin/env bash
# Wheels of what a bare GPU machine lacks, for benchmarks/gpu_check.sh: the lent machines hold
# Python 3.12 with PyTorch, numpy, h5py, scikit-image and PyYAML but not submitit, pydantic,
# memory-profiler, visdom or MONAI, and reach no package index. Versions are the ones this
# checkout's .venv runs, so the GPU check tests what CI tests. Writes .whl/ (git-ignored).
#   bash tools/gpu_wheels.sh        (here, after tools/setup.sh --test; needs pip's index)
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-.venv/bin/python}
pins=()
for name in submitit pydantic pydantic-core annotated-types typing-inspection typing-extensions memory-profiler \
            monai pytorch-msssim visdom jsonpatch jsonpointer websocket-client tornado; do
  version=$("$py" -m pip show "$name" 2>/dev/null | sed -n 's/^Version: //p')
  [ -n "$version" ] || { echo "gpu_wheels: $name is not installed in $py's environment" >&2; exit 1; }
  pins+=("$name==$version")
done
rm -rf .whl && mkdir -p .whl
for pin in "${pins[@]}"; do  # pure-Python wheels where there are any; manylinux for pydantic-core and tornado
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform manylinux_2_5_x86_64 --platform manylinux1_x86_64 -d .whl "$pin" 2>/dev/null \
  || python3 -m pip wheel -q --no-deps -w .whl "$pin"  # sdist only (visdom): build its pure-Python wheel here
done
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
du -sh .whl >&2
ls .whl
