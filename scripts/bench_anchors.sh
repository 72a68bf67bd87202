#!/usr/bin/env bash
# effnet beside what users run today on a CPU, on this machine, in one run, with the same model,
# batch, resolution, iterations and thread count, each in its own process; prints every line and
# one table with images/s, the median step, the peak resident memory and effnet's ratio:
#   inference: effnet, ONNX Runtime and OpenVINO (f32, and its default precision where that
#              differs) on the model exported by `effnet export --to onnx`, PyPI torch 2.x eager and
#              torch.compile'd, Debian's torch 1.13;
#   training:  effnet, PyPI torch 2.x eager and torch.compile'd, Debian's torch 1.13 (a whole step:
#              forward, backward, SGD update; scripts/bench_torch.py).
#   scripts/bench_anchors.sh b0 --batch 32 --threads 2 --iters 10 --warmup 2 [--modes infer,train]
# The model is torchvision's efficientnet_MODEL with random weights (1000 classes), imported by
# `effnet import`. The runtimes come from scripts/install-deps.sh ($EFFNET_ONNX_PYTHON, default
# /opt/effnet-onnx/bin/python); PyPI's torch from `EFFNET_TORCH2=1 scripts/install-deps.sh`
# ($EFFNET_TORCH2_PYTHON, default /opt/effnet-torch2/bin/python), left out with a note when absent.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x build/effnet ] || { echo "build first: cmake -S . -B build && cmake --build build -j" >&2; exit 2; }
model=${1:?usage: scripts/bench_anchors.sh MODEL [--batch N] [--threads N] [--iters N] [--warmup N] [--modes LIST]}
shift
modes=infer,train args=()
while [ $# -gt 0 ]; do
  case $1 in
  --modes) modes=${2:?--modes needs infer, train or both}; shift 2 ;;
  *) args+=("$1"); shift ;;
  esac
done
onnx_python=${EFFNET_ONNX_PYTHON:-/opt/effnet-onnx/bin/python}
torch2_python=${EFFNET_TORCH2_PYTHON:-/opt/effnet-torch2/bin/python}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
rows=$work/rows

# bench MODE NAME COMMAND...: runs one anchor, prints its lines, and keeps its row: images/s,
# median ms and peak resident MiB, read from the lines every bench prints in effnet bench's words.
bench() {
  local mode=$1 name=$2 out
  shift 2
  if ! out=$("$@" 2>&1); then
    printf '%s\nbench_anchors: %s failed (above)\n' "$out" "$name" >&2
    return 1
  fi
  out=$(grep -v -i -E "warning|^W[0-9]{4} " <<<"$out" || true)
  echo "$out"
  # One row per line with a rate (OpenVINO prints two); the peak memory from the line or the next.
  awk -v mode="$mode" -v name="$name" '
    function num(re, s) {
      if (!match(s, re)) return ""
      s = substr(s, RSTART, RLENGTH); gsub(/[^0-9.]/, "", s); return s
    }
    function emit() { # the runtimes name their own line (version, precision); the others take ours
      printf "%s|%s|%s|%s|%s\n", mode, (what ~ /^(onnxruntime|openvino)/ ? what : name), rate, ms, rss; rate = ""
    }
    /images\/s/ {
      if (rate != "") emit()
      rate = num("[0-9.]+ images/s", $0); ms = num("median [0-9.]+ ms", $0); rss = num("peak resident [0-9.]+", $0)
      what = $0; sub(/ (batch|[0-9]+x[0-9]+ batch).*/, "", what); next
    }
    /peak resident/ && rss == "" { rss = num("peak resident [0-9.]+", $0) }
    END { if (rate != "") emit() }' <<<"$out" >>"$rows"
}

have_torch2=0
"$torch2_python" -c "import torch, torchvision" 2>/dev/null && have_torch2=1
torch2_version=""
if [ $have_torch2 = 1 ]; then
  torch2_version=$("$torch2_python" -c "import torch; print(torch.__version__.split('+')[0])")
fi
torch_anchors() { # MODE: PyPI torch 2.x eager and compiled, then Debian's torch 1.13
  if [ $have_torch2 = 1 ]; then
    bench "$1" "torch $torch2_version eager" "$torch2_python" scripts/bench_torch.py "$model" --mode "$1" "${args[@]}"
    bench "$1" "torch $torch2_version compile" "$torch2_python" scripts/bench_torch.py "$model" --mode "$1" \
      --compile "${args[@]}"
  else
    echo "bench_anchors: no PyPI torch 2.x at $torch2_python (EFFNET_TORCH2=1 scripts/install-deps.sh installs it)"
  fi
  bench "$1" "torch 1.13 eager" /usr/bin/python3 scripts/bench_torch.py "$model" --mode "$1" "${args[@]}"
}

if [[ ,$modes, == *,infer,* ]]; then
  /usr/bin/python3 -c "import sys, torch, torchvision; torch.manual_seed(0)
model = getattr(torchvision.models, 'efficientnet_' + sys.argv[2])()
torch.save(model.state_dict(), sys.argv[1])" "$work/m.pth" "$model"
  build/effnet import --from torchvision --model "$model" "$work/m.pth" "$work/m.h5" >/dev/null
  build/effnet export --to onnx "$work/m.h5" "$work/m.onnx" >/dev/null
  bench infer effnet build/effnet bench --weights "$work/m.h5" --mode infer "${args[@]}" # the runtimes' model
  bench infer onnxruntime "$onnx_python" scripts/bench_onnx.py "$work/m.onnx" --runtime onnxruntime "${args[@]}"
  bench infer openvino "$onnx_python" scripts/bench_onnx.py "$work/m.onnx" --runtime openvino "${args[@]}"
  torch_anchors infer
fi
if [[ ,$modes, == *,train,* ]]; then
  bench train effnet build/effnet bench "$model" --mode train "${args[@]}"
  torch_anchors train
fi

echo
echo "| mode | $model | images/s | median ms | peak resident MiB | effnet / it |"
echo "|---|---|---|---|---|---|"
awk -F'|' '$2 == "effnet" { ours[$1] = $3 } { row[NR] = $0 }
  END { for (i = 1; i <= NR; i++) { split(row[i], f, "|")
          printf "| %s | %s | %.1f | %s | %s | %.2fx |\n", f[1], f[2], f[3], f[4], f[5], ours[f[1]] / f[3] } }' "$rows"
flags=$(grep -o -w -E 'avx512f|avx2|amx_tile|avx512_bf16' /proc/cpuinfo | sort -u | tr '\n' ' ')
cpu=$(lscpu | sed -n 's/^Model name: *//p')
echo "($(date -u +%Y-%m-%d), $(git rev-parse --short HEAD), $cpu, $(nproc) cores; flags: $flags)"
