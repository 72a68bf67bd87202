#!/usr/bin/env bash
# tests/gpu/check.sh on a machine without a GPU, to try the script and time its CPU-side parts
# before a GPU run: a fake nvidia-smi (an H100's answers) first on PATH, a bundle of links to the
# binaries of a build folder (default build/; scripts/gpu_bundle.sh makes the real one), and
# EFFNET_CHECK_DRY=1 so that "no GPU" from the programs does not stop it. The GPU programs then
# skip (exit 77) and the benchmarks and training runs fail at once; what remains is the script's
# own time, each program's start and exit, and Python's import of torch.
#   tests/gpu/dry_run.sh [build folder]
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${1:-build}
dry=$(mktemp -d)
trap 'rm -rf "$dry"' EXIT

mkdir -p "$dry/fake" "$dry/bundle/bin" "$dry/bundle/lib"
cat >"$dry/fake/nvidia-smi" <<'EOF'
#!/bin/sh
# A fake nvidia-smi for dry runs: what an H100 answers to the questions check.sh asks.
case "$*" in
  -L) echo "GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-00000000-dry-run)" ;;
  *--query-gpu=name,memory.total,driver_version*)
    printf 'name, memory.total [MiB], driver_version\nNVIDIA H100 80GB HBM3, 81559 MiB, 580.00\n' ;;
  *--query-gpu=name*) echo "NVIDIA H100 80GB HBM3" ;;
  *--query-gpu=driver_version*) echo "580.00" ;;
  *--query-gpu=compute_cap*) echo "9.0" ;;
  *) exit 1 ;;
esac
EOF
chmod +x "$dry/fake/nvidia-smi"
for p in effnet test_cuda_smoke test_cuda_ops test_cuda_update test_cuda_train test_nccl; do
  b=$(find "$build" -type f -name "$p" -perm -u+x -not -path '*/CMakeFiles/*' | head -1)
  [ -n "$b" ] || { echo "dry_run: no $p under $build" >&2; exit 1; }
  ln -s "$PWD/$b" "$dry/bundle/bin/$p"
done
[ ! -d .gpu-bundle/data ] || ln -s "$PWD/.gpu-bundle/data" "$dry/bundle/data"

start=$(date +%s.%N)
rc=0
PATH="$dry/fake:$PATH" OUT="$dry/out" EFFNET_CHECK_DRY=1 EFFNET_CHECK_BUNDLE="$dry/bundle" tests/gpu/check.sh || rc=$?
echo "dry_run: check.sh exited $rc after $(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }') s"
