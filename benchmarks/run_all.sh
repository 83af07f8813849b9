#!/usr/bin/env bash
# Every benchmark this machine can run, at full size, each writing benchmarks/results/<name>.json
# (about 13 minutes on a 2-core machine; GPU parts run when a GPU is there).
#   bash benchmarks/run_all.sh            (from the repository root, after tools/setup.sh --test)
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-.venv/bin/python}
out=benchmarks/results
mkdir -p "$out"
run() {  # name, then the script's arguments
  local name=$1; shift
  local start=$SECONDS
  "$py" "benchmarks/$name.py" "$@" > "$out/$name.json.tmp"
  mv "$out/$name.json.tmp" "$out/$name.json"
  echo "$name: $((SECONDS - start)) s -> $out/$name.json" >&2
}
run login_verbs --repeats 5
run submit_sweep --points 1000 10000 --repeats 3
run metrics_speed --repeats 5
run knee_loader --volumes 16 --slices 16 --workers 0 2
if "$py" -c "import torch, sys; sys.exit(not torch.cuda.is_available())"; then
  run train_step --steps 20 --warmup 5
else  # the CPU figures are a smoke test: few steps
  run train_step --steps 3 --warmup 2 --batch 2 --configs fp32 channels_last compile
fi
run ddp_scaling --ranks 2 --steps 20
run visdom_follower_lag --points 100 --seconds 20
run visdom_hung_server --epochs 2 --repeats 2
run cine_loader_rss
run predict_throughput
run faults --kills 20 --slurm
run adaptive_sweep
run container_start --repeats 5 --epochs 3
echo "all benchmarks done" >&2
