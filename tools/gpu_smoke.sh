#!/usr/bin/env bash
# GPU smoke of the six structural twins (no hub, no network): build -> save -> load ->
# score -> TIE trace -> TimeROME edit -> score -> greedy generate, per backbone, each phase
# timed and memory-measured; first, the measurement checks (NVML and torch agree on the
# device, exact per-phase figures for fixed allocations, a forced OOM classified `oom`, phase
# timers within 5% of CUDA events; <out>/measurement.json). See docs/gpu.md and
# docs/measurements/gpu_memory.md. `--measurement-only` runs the checks alone.
#
#   tools/gpu_smoke.sh                       # cuda, bfloat16, results/smoke/
#   SMOKE_DEVICE=cpu SMOKE_DTYPE=float32 tools/gpu_smoke.sh /tmp/smoke --backbones llada-twin
#
# Environment: SMOKE_DEVICE (cuda), SMOKE_DTYPE (bfloat16), SMOKE_TIMEOUT (seconds, 300),
# PYTHON (python). Extra arguments after the output directory go to `python -m harness.smoke`.
# Exit status: the smoke's (0 ok, 1 a backbone failed, 2 bad arguments); 124 when it ran
# past SMOKE_TIMEOUT (137 if it then had to be killed).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"

out="${1:-results/smoke}"
[[ $# -gt 0 ]] && shift
device="${SMOKE_DEVICE:-cuda}"
dtype="${SMOKE_DTYPE:-bfloat16}"
limit="${SMOKE_TIMEOUT:-300}"
python="${PYTHON:-python}"

# No hub, no network: everything the smoke needs is built locally.
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1
export PYTHONUNBUFFERED=1

if [[ "$device" == cuda* ]] && command -v nvidia-smi >/dev/null 2>&1; then
  nvidia-smi --query-gpu=index,uuid,name,driver_version,memory.total,memory.used,mig.mode.current \
    --format=csv || true
fi

mkdir -p "$out"
echo "gpu_smoke: device=$device dtype=$dtype timeout=${limit}s out=$out"
status=0
timeout --kill-after=30 "$limit" \
  "$python" -m harness.smoke --device "$device" --dtype "$dtype" --out "$out" "$@" || status=$?
if [[ $status -eq 124 || $status -eq 137 ]]; then
  echo "gpu_smoke: FAILED: ran past ${limit}s (records written so far are in $out)" >&2
fi
exit "$status"
