#!/usr/bin/env bash
# The whole GPU check in one call, for a lent GPU machine (device `run`, carrying .whl): the
# GPU tests (pytest -m gpu) and every GPU benchmark, each writing JSON into OUT, in about 6
# minutes on one H100. Prepare the wheels here first (bash tools/gpu_wheels.sh); then
#   run(command="bash benchmarks/gpu_check.sh", carry=[".whl"], timeout_s=540)
# Without a GPU (here) it runs the same steps on the CPU at smoke-test sizes.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-/tmp/gpu-check}
mkdir -p "$out"
py=${PYTHON:-python3}
if [ -d .whl ] && ! "$py" -c "import submitit, pydantic, monai" 2>/dev/null; then
  "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 MRIHPC_CACHE=${MRIHPC_CACHE:-/tmp/mrihpc-cache}
gpu=$("$py" -c "import torch; print(int(torch.cuda.is_available()))")
log=$out/gpu_check.log  # one log: the device gives back 8 files at most
"$py" -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name() if torch.cuda.is_available() else 'cpu')" \
  | tee "$log"
failed=0
step() {  # name, seconds allowed, command...: stdout to OUT/<name>.json when it is JSON, the rest to the log
  local name=$1 limit=$2; shift 2
  local start=$SECONDS rc=0
  timeout "$limit" "$@" > "$out/$name.out" 2>> "$log" || rc=$?
  if "$py" -c "import json, sys; json.load(open(sys.argv[1]))" "$out/$name.out" 2>/dev/null; then
    mv "$out/$name.out" "$out/$name.json"
  else
    cat "$out/$name.out" >> "$log"; rm -f "$out/$name.out"
  fi
  if [ $rc = 0 ]; then echo "$name: ok in $((SECONDS - start)) s" | tee -a "$log"
  else echo "$name: FAILED ($rc) after $((SECONDS - start)) s" | tee -a "$log"; tail -20 "$log"; failed=1; fi
}
step pytest_gpu 240 "$py" -m pytest -q -p no:cacheprovider -m gpu tests/test_gpu.py
if [ "$gpu" = 1 ]; then
  step train_step 180 "$py" benchmarks/train_step.py --steps 20 --warmup 5
  step metrics_speed 60 "$py" benchmarks/metrics_speed.py --repeats 5
  step knee_loader 120 "$py" benchmarks/knee_loader.py --volumes 8 --slices 16 --workers 0 4 --step-steps 10
  step predict_throughput 120 "$py" benchmarks/predict_throughput.py --repeats 2
else
  step train_step 180 "$py" benchmarks/train_step.py --steps 2 --warmup 1 --batch 2 --size 64 --configs fp32
  step metrics_speed 60 "$py" benchmarks/metrics_speed.py --repeats 1 --shape 4 64 64
  step knee_loader 120 "$py" benchmarks/knee_loader.py --volumes 2 --slices 4 --workers 0 --step-steps 1 --step-size 64 \
    --rss-volumes 2 4
  step predict_throughput 120 "$py" benchmarks/predict_throughput.py --repeats 1 --batch 4 --knee 4 4 32 --cine 10 7 32
fi
echo "gpu check: $([ $failed = 0 ] && echo passed || echo FAILED); files in $out" | tee -a "$log"
exit $failed
