#!/usr/bin/env bash
# GPU verification in one device-tool call (see BENCHMARKS.md, "GPU"):
#   run(command="bash scripts/gpu_verify.sh", carry=[".whl"], timeout_s=600)
# after `bash scripts/device_wheels.sh` here. On the H100 it measures:
#   1. training img/s per MPS share (resnet18 at 224) -> the planner's throughput curve;
#   2. inference throughput and hot swaps through the embedded Triton at 224x224 under load;
#   3. the end-to-end loop: 4 cameras at 224x224, thief, MPS shares, 3 windows of 60 s.
# onnxruntime on that machine has no CUDA provider, so Triton's ekya_onnx instances run on its CPU cores
# there; production uses NVIDIA's Triton container with the native GPU onnxruntime backend (docker/).
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
OUT="${OUT:-/tmp/ekya-gpu-verify}"
mkdir -p "$OUT"
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH="/tmp/site:$PWD"
else
  export PYTHONPATH="$PWD"
fi
MPS_DIR="$PWD/.ekya/gpu-verify/data/mps"
stop_mps() { CUDA_MPS_PIPE_DIRECTORY="$MPS_DIR/pipe" timeout 10 bash -c 'echo quit | nvidia-cuda-mps-control' 2>/dev/null || true; }
trap stop_mps EXIT   # a command killed by the time limit must not leave the daemon running
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"

echo "== 1. training throughput per MPS share"
mkdir -p "$MPS_DIR/pipe" "$MPS_DIR/log"
CUDA_MPS_PIPE_DIRECTORY="$MPS_DIR/pipe" CUDA_MPS_LOG_DIRECTORY="$MPS_DIR/log" nvidia-cuda-mps-control -d || true
CUDA_MPS_PIPE_DIRECTORY="$MPS_DIR/pipe" timeout 150 python3 bench/train_throughput.py --device cuda \
  --models resnet18 --sizes 64,224 --batch 64 --seconds 5 --out "$OUT" | tee "$OUT/throughput.txt"
stop_mps

echo "== 2. inference through Triton at 224x224 with hot swaps under load"
timeout 100 python3 bench/hotswap.py --threads 8 --swaps 10 --seconds 40 --input-size 224 | tee "$OUT/hotswap.txt"

echo "== 3. end to end: 4 cameras at 224, thief, MPS"
timeout 330 python3 bench/e2e.py --config examples/gpu-verify.yaml --windows 3 --schedulers thief \
  --out "$PWD/.ekya/gpu-verify-run" | tee "$OUT/e2e.txt"
cp .ekya/gpu-verify-run/comparison.json "$OUT/" 2>/dev/null || true
