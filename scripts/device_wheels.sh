#!/usr/bin/env bash
# Download (here) the Python 3.12 wheels the GPU machine lacks, into .whl/ (git-ignored), for the
# device tool to carry. Run once before scripts/gpu_verify.sh; stays under the 64 MiB carry limit.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .whl
py=.venv/bin/python
# grpcio, protobuf, pyyaml, rich, scipy, matplotlib, onnx, onnxruntime are already there (pydantic is not).
for spec in nvidia-pytriton==0.7.0 tritonclient==2.73.0 apscheduler==3.11.3 tzlocal==5.4.5 python-rapidjson==1.25 \
    pydantic==2.14.3 pydantic-core==2.50.4 annotated-types==0.8.0 typing-inspection==0.4.5 onnx2torch==1.5.15; do
  "$py" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux_2_35_x86_64 --platform manylinux_2_34_x86_64 \
    --platform manylinux_2_31_x86_64 --platform linux_x86_64 -d .whl "$spec"
done
du -sh .whl
