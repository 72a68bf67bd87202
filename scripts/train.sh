#!/usr/bin/env bash
# effnet's main job from a fresh machine: missing system packages, a Release build, then
# `effnet train` on the built-in default dataset (Fashion-MNIST). Extra flags go to effnet train.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j "$(nproc)" >/dev/null
exec build/effnet train "$@"
