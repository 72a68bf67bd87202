#!/usr/bin/env bash
# effnet's main job from a fresh machine: missing system packages, a Release build, then an
# EfficientNet-B0 trained on the built-in default dataset (Fashion-MNIST) on the CPU, upscaled to
# 32x32 (the smallest input B0's five stride-2 stages reduce to 1x1), in 8.5-10.5 minutes on 2 cores
# of an AVX-512 Xeon or EPYC (docs/perf.md, README.md): SGD with gradient clipping, a
# warm-up epoch then cosine, EMA of the weights; a checkpoint per epoch in runs/. Extra flags go to
# effnet train (they override these).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j "$(nproc)" >/dev/null
exec build/effnet train --model b0 --image-size 32 --batch 128 --epochs 12 --lr 0.1 --clip 2 --warmup 1 --ema 0.999 \
  --log-every 117 "$@"
