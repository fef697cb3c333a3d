#!/usr/bin/env bash
# Everything the GPU machine is used for, in two calls of under 10 minutes each (README "GPU
# machines"): `all.sh a` (GPU tests, doctor, probe, layer-window alignment, NVML loop stalls),
# `all.sh b` (the isolated per-layer energy pass, then the GPU campaign and its report).
# Expects: wheels in .whl (cffi, pycparser, structlog, rich, scipy...); writes to $OUT.
set -uo pipefail
part=${1:-a}
out=${OUT:-/tmp/out}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD
python3 build.py > /tmp/build.log 2>&1 || { tail -20 /tmp/build.log; exit 1; }
echo "== nvidia-smi"; nvidia-smi --query-gpu=name,driver_version,power.draw,clocks.sm --format=csv
if [ "$part" = a ]; then
  echo "== gpu tests"; python3 -m pytest -q -p no:cacheprovider tests/test_gpu.py tests/test_nvml.py \
    tests/test_worker_torch.py 2>&1 | tail -15
  echo "== doctor"; python3 -m jetpower doctor 2>&1 | tail -30
  echo "== probe"; python3 -m jetpower probe --source nvml --seconds 2 2>&1 | tail -20
  echo "== alignment resnet18"; python3 benchmarks/gpu/alignment.py --model resnet18 --runs 3000 \
    --json "$out/alignment_resnet18.json" 2>&1 | tail -25
  echo "== alignment mobilenet_v2"; python3 benchmarks/gpu/alignment.py --model mobilenet_v2 \
    --runs 2000 --json "$out/alignment_mobilenet_v2.json" 2>&1 | tail -25
  echo "== nvml stalls"; python3 benchmarks/gpu/nvml_stalls.py --seconds 60 | tee "$out/nvml_stalls.txt"
  echo "== nvml stalls under load"; python3 benchmarks/gpu/nvml_stalls.py --seconds 60 \
    --load "python3 benchmarks/gpu/timing_loop.py --runs 1000000 --batch 32" | tee "$out/nvml_stalls_load.txt"
else
  echo "== campaign (plans/gpu.toml, shortened)"; rm -rf /tmp/results-gpu
  time python3 -m jetpower run plans/gpu.toml --result-dir /tmp/results-gpu --set idle.seconds=5 \
    --set cooldown.seconds=3 --set benchmark.runs=1000 --set benchmark.profile_runs=200 \
    > /tmp/campaign.log 2> /tmp/campaign.err; echo "run exit $?"; tail -5 /tmp/campaign.err
  grep -E '"event": "(run_started|sampler_started|phase_finished|model_finished|model_failed|timing_energy|run_finished)"' /tmp/campaign.log | cut -c1-300
  python3 -m jetpower report /tmp/results-gpu --out /tmp/report-gpu 2>&1 | tail -30
  tar -C /tmp -czf "$out/results-gpu.tar.gz" results-gpu report-gpu
  echo "== isolated"; python3 benchmarks/gpu/isolated.py --out /tmp/iso 2>&1 | tee "$out/isolated.txt" | tail -60
  tar -C /tmp -czf "$out/isolated.tar.gz" iso
fi
