#!/usr/bin/env bash
# effnet and torchvision side by side on this machine, in one run, with the same model, batch,
# mode, resolution, device, precision and thread count; prints both and the throughput ratio.
# Arguments go to both (--compile to torchvision only), e.g.
#   scripts/bench_vs_torch.sh b0 --batch 8 --mode train --threads 2 --iters 10
# PYTHON picks the interpreter with torch (Debian's /usr/bin/python3 by default).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x build/effnet ] || { echo "build first: cmake -S . -B build && cmake --build build -j" >&2; exit 2; }
ours_args=()
for a in "$@"; do [ "$a" = --compile ] || ours_args+=("$a"); done
ours=$(build/effnet bench "${ours_args[@]}")
theirs=$("${PYTHON:-/usr/bin/python3}" scripts/bench_torch.py "$@" 2>&1 | grep -v Warning)
echo "$ours"
echo "$theirs"
rate() { sed -n 's/.* \([0-9.]*\) images\/s.*/\1/p' <<<"$1" | head -1; }
awk -v a="$(rate "$ours")" -v b="$(rate "$theirs")" 'BEGIN { printf "ratio effnet / torchvision: %.2fx\n", a / b }'
echo "($(date -u +%Y-%m-%d), $(git rev-parse --short HEAD), $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores)"
