#!/usr/bin/env bash
# effnet's inference beside the same B0 exported to ONNX and run by ONNX Runtime and OpenVINO, on
# this machine, in one run, with the same batch, iterations and thread count; prints their lines
# and one table (the rows docs/perf.md records). Arguments go to all three, e.g.
#   scripts/bench_onnx.sh --batch 32 --threads 2 --iters 10 --warmup 2
# The model: torchvision's efficientnet_b0 with random weights (1000 classes, 224x224) through
# `effnet import`, exported by `effnet export --to onnx` (NCHW, batch norm folded). The runtimes run
# in $EFFNET_ONNX_PYTHON (default /opt/effnet-onnx/bin/python, which scripts/install-deps.sh makes).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x build/effnet ] || { echo "build first: cmake -S . -B build && cmake --build build -j" >&2; exit 2; }
python=${EFFNET_ONNX_PYTHON:-/opt/effnet-onnx/bin/python}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
/usr/bin/python3 -c "import sys, torch, torchvision; torch.manual_seed(0)
torch.save(torchvision.models.efficientnet_b0().state_dict(), sys.argv[1])" "$work/b0.pth"
build/effnet import --from torchvision --model b0 "$work/b0.pth" "$work/b0.h5" >/dev/null
build/effnet export --to onnx "$work/b0.h5" "$work/b0.onnx" >/dev/null
ours=$(build/effnet bench b0 --mode infer "$@" | head -1)
theirs=$("$python" scripts/bench_onnx.py "$work/b0.onnx" "$@")
printf '%s\n%s\n\n' "$ours" "$theirs"
echo "| date | commit | runtime | images/s | median ms | effnet / runtime |"
echo "|---|---|---|---|---|---|"
printf '%s\n%s\n' "$ours" "$theirs" | grep 'images/s' |
  awk -v date="$(date -u +%Y-%m-%d)" -v commit="$(git rev-parse --short HEAD)" '
  { match($0, /[0-9.]+ images\/s/); rate = substr($0, RSTART, RLENGTH - 9) + 0
    match($0, /median [0-9.]+ ms/); ms = substr($0, RSTART + 7, RLENGTH - 10)
    name = $0; sub(/ (b0 224x224 )?batch.*/, "", name)
    if (NR == 1) ours = rate
    printf "| %s | %s | %s | %.1f | %s | %.2fx |\n", date, commit, name, rate, ms, ours / rate }'
echo "($(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores)"
