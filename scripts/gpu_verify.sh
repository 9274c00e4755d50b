#!/usr/bin/env bash
# GPU verification through the device tool (see BENCHMARKS.md, "GPU"), after `bash scripts/device_wheels.sh`
# here, in two calls of under 10 minutes each (on the H100: env 15 s, oom ~1.5 min, hotswap ~1.5 min,
# throughput ~3.5 min for resnet18, e2e ~6 min with the bootstrap; E2E_LIMIT caps e2e, default 540 s):
#   run(command="bash scripts/gpu_verify.sh env oom hotswap throughput", carry=[".whl"], timeout_s=600)
#   run(command="bash scripts/gpu_verify.sh e2e", carry=[".whl"], timeout_s=600)
# Steps (all by default; name some to run only those, e.g. `bash scripts/gpu_verify.sh e2e`):
#   env         the GPU, driver, torch; the GPU tests (tests/controller/gpu/test_gpu.py, real NVML and MPS binary)
#   oom         a trainer that cannot fit its MPS memory limit fails alone beside live serving (no
#               request fails, no model left behind)
#   hotswap     inference throughput and hot swaps through the embedded Triton at 224x224 under load
#   throughput  training img/s per MPS share (each of THROUGHPUT_MODELS at 224, batch 64; default resnet18,
#               about 2.5 min per further edge model) -> the planner's throughput curves, and share 1.0
#               against eager torch's bare loop (bf16 autocast, channels-last), also for resnet18 at batch 256
#   e2e         the end-to-end loop: 4 cameras at 224x224, MPS shares (E2E_SCHEDULERS, default thief):
#               accuracy per camera and window, each job's wall time and img/s against the planner's,
#               inference through Triton (crops/s, latency), swaps and failed requests
# Each step runs even if an earlier one failed; the exit status is the number of failed steps.
# Output: $OUT/<step>.txt for each step, $OUT/logs.tgz (controller, camera and trainer logs, profiles).
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
OUT="${OUT:-/tmp/ekya-gpu-verify}"
mkdir -p "$OUT"
STEPS="${*:-env oom hotswap throughput e2e}"
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || { echo "wheel install failed"; exit 1; }
  export PYTHONPATH="/tmp/site:$PWD"
else
  export PYTHONPATH="$PWD"
fi
MPS_DIR="$PWD/.ekya/gpu-verify-mps"
stop_mps() { CUDA_MPS_PIPE_DIRECTORY="$MPS_DIR/pipe" timeout 10 bash -c 'echo quit | nvidia-cuda-mps-control' >/dev/null 2>&1 || true; }
collect() {
  tar -czf "$OUT/logs.tgz" --ignore-failed-read bench/profiles/gpu-* /tmp/peak .ekya/gpu-verify-run/*/*.log \
    .ekya/gpu-verify-run/*/data/state.json .ekya/gpu-verify-run/*/data/triton/tritonserver.log \
    .ekya/gpu-verify-run/*/data/jobs/*/worker.log "$MPS_DIR/log" 2>/dev/null || true
}
trap 'stop_mps; collect' EXIT   # a command killed by the time limit must not leave the daemon running
failed=0
step() {  # step NAME TIMEOUT COMMAND...: run, tee to $OUT/NAME.txt, count a failure
  local name=$1 limit=$2; shift 2
  echo "== $name ($(date -u +%T))"
  timeout "$limit" "$@" 2>&1 | tee "$OUT/$name.txt"
  local rc=${PIPESTATUS[0]}
  [ "$rc" = 0 ] || { echo "== $name FAILED (exit $rc)"; failed=$((failed + 1)); }
}

for s in $STEPS; do
  case "$s" in
    env)
      step env 120 bash -c 'nvidia-smi --query-gpu=name,memory.total,driver_version,compute_mode --format=csv;
        python3 -c "import torch, onnxruntime as ort; print(\"torch\", torch.__version__, torch.cuda.get_device_name(0));
print(\"onnxruntime\", ort.__version__, ort.get_available_providers())";
        which nvidia-cuda-mps-control; python3 -m pytest -q -p no:cacheprovider tests/controller/gpu/test_gpu.py' ;;
    throughput)
      mkdir -p "$MPS_DIR/pipe" "$MPS_DIR/log"
      CUDA_MPS_PIPE_DIRECTORY="$MPS_DIR/pipe" CUDA_MPS_LOG_DIRECTORY="$MPS_DIR/log" nvidia-cuda-mps-control -d || true
      export CUDA_MPS_PIPE_DIRECTORY="$MPS_DIR/pipe"
      export THROUGHPUT_MODELS="${THROUGHPUT_MODELS:-resnet18}"
      step throughput 540 bash -c 'python3 bench/train_throughput.py --device cuda --models "$THROUGHPUT_MODELS" \
          --sizes 224 --batch 64 --seconds 4 --reference && python3 bench/train_throughput.py --device cuda --models resnet18 \
          --sizes 224 --batch 256 --shares 1.0 --seconds 4 --reference --out /tmp/peak'
      unset CUDA_MPS_PIPE_DIRECTORY
      stop_mps ;;
    oom)
      step oom 240 python3 bench/oom_isolation.py --gpu --threads 4 --seconds 40 --memory-mb 2048 ;;
    hotswap)
      step hotswap 120 python3 bench/hotswap.py --threads 8 --swaps 10 --seconds 40 --input-size 224 --gpu ;;
    e2e)
      step e2e "${E2E_LIMIT:-540}" python3 bench/e2e.py --config examples/gpu-verify.yaml --windows "${E2E_WINDOWS:-3}" \
        --schedulers "${E2E_SCHEDULERS:-thief}" --out "$PWD/.ekya/gpu-verify-run" --log-file "$OUT/e2e-controller.log"
      cp .ekya/gpu-verify-run/comparison.json "$OUT/" 2>/dev/null || true ;;
    *) echo "unknown step $s (env, oom, hotswap, throughput, e2e)"; failed=$((failed + 1)) ;;
  esac
done
echo "== done: $failed step(s) failed"
exit "$failed"
