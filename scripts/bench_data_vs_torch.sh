#!/usr/bin/env bash
# effnet's loader and torchvision's DataLoader + PIL side by side on the same JPEGs, in one run,
# with the same transforms, batch and thread count; prints both and the ratio per transform.
#   scripts/bench_data_vs_torch.sh [--threads N] [--batch N] [--images N] [--exact]
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x build/effnet ] || { echo "build first: cmake -S . -B build && cmake --build build -j" >&2; exit 2; }
threads=1 batch=32 images=512 exact=""
while [ $# -gt 0 ]; do
  case "$1" in
    --threads) threads=$2; shift 2 ;;
    --batch) batch=$2; shift 2 ;;
    --images) images=$2; shift 2 ;;
    --exact) exact=--exact; shift ;;
    *) echo "usage: $0 [--threads N] [--batch N] [--images N] [--exact]" >&2; exit 2 ;;
  esac
done
cache=/tmp/effnet-bench-jpegs-$images
ours=$(build/effnet bench-data --cache "$cache" --images "$images" --threads "$threads" --batch "$batch" $exact)
theirs=$(/usr/bin/python3 scripts/bench_data_torch.py "$cache" --threads "$threads" --batch "$batch" 2>&1 | grep -v Warning)
echo "$ours"
echo "$theirs"
rate() { grep " $2 " <<<"$1" | sed -n 's/.* \([0-9.]*\) images\/s.*/\1/p' | head -1; }
for t in eval train train-aa; do
  awk -v t="$t" -v a="$(rate "$ours" "$t")" -v b="$(rate "$theirs" "$t")" \
    'BEGIN { printf "ratio effnet / torchvision, %-8s: %.2fx\n", t, a / b }'
done
echo "($(date -u +%Y-%m-%d), $(git rev-parse --short HEAD), $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores)"
