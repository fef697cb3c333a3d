#!/usr/bin/env bash
# Everything the GPU machine is used for, in one call (see README "GPU machines").
# Expects: wheels installed on PYTHONPATH, the sampler built in place; writes to $OUT.
set -uo pipefail
out=${OUT:-/tmp/out}
export PYTHONUNBUFFERED=1
echo "== nvidia-smi"; nvidia-smi --query-gpu=name,driver_version,power.draw,clocks.sm --format=csv
echo "== probe"; python3 -m jetpower probe --source nvml --json --seconds 2 > "$out/probe.json"; python3 -m jetpower probe --source nvml --seconds 2
echo "== campaign"; rm -rf /tmp/results-gpu
time python3 -m jetpower run plans/gpu.toml --result-dir /tmp/results-gpu > /tmp/campaign.log; echo "run exit $?"
grep -E '"event": "(run_started|sampler_started|phase_finished|model_finished|model_failed|timing_energy|run_finished)"' /tmp/campaign.log | cut -c1-400
python3 -m jetpower report /tmp/results-gpu --out /tmp/report-gpu
tar -C /tmp -czf "$out/results-gpu.tar.gz" results-gpu report-gpu
echo "== interference"; python3 benchmarks/gpu/interference.py --source nvml --reps 6 --runs 400 --batch 32 --also-simulated | tee "$out/interference.txt"
echo "== nvml stalls"; python3 benchmarks/gpu/nvml_stalls.py --seconds 60 | tee "$out/nvml_stalls.txt"
echo "== nvml stalls under load"; python3 benchmarks/gpu/nvml_stalls.py --seconds 60 --load "python3 benchmarks/gpu/timing_loop.py --runs 1000000 --batch 32" | tee "$out/nvml_stalls_load.txt"
