#!/usr/bin/env bash
# Fine-tuning proven on real data without ImageNet weights (issue 9): EfficientNet-B0 at 32x32 is
# pre-trained on Fashion-MNIST classes 0-4 (T-shirt, trouser, pullover, dress, coat; 30,000
# images), then trained on classes 5-9 (sandal, shirt, sneaker, bag, ankle boot) with 100 images
# per class, once from the pre-trained weights and once from scratch, with the same recipe and
# budget, for each learning rate of $LRS (default "0.1 0.4": each start gets the same small
# sweep) and each seed. Prints one line per run and a summary; the runs stay in OUT.
#   [LRS="0.1 0.4"] scripts/transfer_demo.sh [OUT] [SEEDS...]   (defaults: /tmp/effnet-transfer, seeds 1 2 3)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-/tmp/effnet-transfer}
shift || true
if [ $# -gt 0 ]; then seeds=("$@"); else seeds=(1 2 3); fi
[ -x build/effnet ] || { echo "build first: cmake -S . -B build && cmake --build build -j" >&2; exit 2; }
effnet=build/effnet
common=(--image-size 32 --clip 2 --ema 0.999 --log-every 1000)
if [ ! -f "$out/pretrain/best.h5" ]; then
  echo "pre-training B0 on classes 0-4 ..."
  $effnet train --model b0 "${common[@]}" --select-classes 0-4 --batch 128 --epochs 6 --lr 0.1 --warmup 1 \
    --out "$out/pretrain" | grep -E "validation|done"
fi
# The transfer runs: 500 images, batch 50 (10 steps per epoch), 30 epochs, SGD at LR per 256
# images with one warm-up epoch then cosine; validation on all 5,000 test images of classes 5-9.
fine=(--select-classes 5-9 --per-class 100 --batch 50 --epochs 30 --warmup 1)
rm -f "$out/summary.txt"
for lr in ${LRS:-0.1 0.4}; do
  for seed in "${seeds[@]}"; do
    for start in pretrained scratch; do
      dir="$out/$start-lr$lr-seed$seed"
      rm -rf "$dir"
      if [ "$start" = pretrained ]; then from=(--init "$out/pretrain/best.h5"); else from=(--model b0); fi
      best=$($effnet train "${from[@]}" "${common[@]}" "${fine[@]}" --lr "$lr" --seed "$seed" --out "$dir" |
        sed -n 's/^done in .*best validation top-1 \([0-9.]*\)%.*/\1/p')
      echo "$start lr $lr seed $seed: best top-1 ${best}% on classes 5-9"
      echo "$start-lr$lr $seed $best" >>"$out/summary.txt"
    done
  done
done
awk '{ s[$1] += $3; n[$1]++ } END { for (k in s) printf "%s: mean best top-1 %.2f%% over %d seeds\n", k, s[k] / n[k], n[k] }' \
  "$out/summary.txt" | sort
