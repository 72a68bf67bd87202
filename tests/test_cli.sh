#!/usr/bin/env bash
# The `effnet` command line: bad usage exits 2 with a message, bad data exits 1 with a message
# that names the problem; training from an ImageFolder, then eval and predict on its checkpoint;
# and a short real training run on Fashion-MNIST reports its validation accuracy.
set -u
effnet=$1
source "$(dirname "$0")/expect.sh"
expect 2 "usage: effnet" 
expect 0 "commands:" --help
expect 2 "unknown command 'trian'" trian
expect 0 "--epochs N" train --help
expect 2 "unknown flag '--epoch'" train --epoch 3
expect 2 "bad value 'abc' for --epochs" train --epochs abc
expect 2 "bad value '-1' for --lr" train --lr -1
expect 2 "--batch needs a value" train --batch
expect 2 "unknown model 'b9'" train --model b9
expect 1 "/nonexistent is neither a directory nor a .csv file list" train --data /nonexistent
expect 2 "--augment must be none, crop, autoaugment or randaugment, not 'flip'" train --augment flip
expect 1 "cannot start device cuda:99" train --device cuda:99
expect 2 "--precision f16 needs --device cuda" train --precision f16
expect 1 "--gpus 1024, but" train --gpus 1024
expect 2 "drop --device cpu" train --gpus 2 --device cpu
expect 2 "drop --device cuda:1" train --gpus 2 --device cuda:1
OMPI_COMM_WORLD_SIZE=1 expect 2 "--gpus starts its own workers: under mpirun or srun" train --gpus 2
EFFNET_RANK=0 EFFNET_WORLD_SIZE=1 expect 2 "but --gpus is 0: unset EFFNET_RANK" train --epochs 1
EFFNET_RANK=2 EFFNET_WORLD_SIZE=2 expect 1 "EFFNET_RANK is '2', not a number in [0, 1]" train
expect 1 "cannot start device cuda:99" eval /nonexistent.h5 --device cuda:99
expect 2 "--recipe must be default, official or timm" train --recipe fast
expect 2 "--remode must be pixel, rand or const, not 'bogus'" train --remode bogus
expect 2 "bad value '1.5' for --mix-prob" train --mixup 0.2 --mix-prob 1.5
expect 1 "cannot resume from /nonexistent" train --resume /nonexistent
expect 1 "--init: " train --init /nonexistent.h5
expect 2 "--init gives the architecture" train --init /nonexistent.h5 --model b0
expect 2 "--bn must be train, eval or frozen, not 'running'" train --bn running
expect 2 "needs WEIGHTS, --out FILE.h5" features /nonexistent.h5
expect 1 "cannot open /nonexistent.h5" features /nonexistent.h5 --out /tmp/effnet-cli-never.h5
expect 2 "which checkpoint?" eval
expect 1 "cannot open /nonexistent.h5" eval /nonexistent.h5
expect 2 "give a checkpoint and at least one image" predict /nonexistent.h5
expect 0 "parameters         5,288,548" info b0
expect 0 "parameters         66,347,960" info b7
expect 0 "    9  Conv1x1 & Pooling & FC           7x7      1280       1" info b0
expect 0 "blocks.6.0     MBConv6 k3x3 s1" info b0 --layers
expect 0 "width 1.1, depth 1.2, resolution 258" info --phi 1
expect 2 "which model?" info
expect 2 "give a model name or --phi, not both" info b3 --phi 2
expect 2 "unknown model 'b9'" info b9
expect 0 "parameters         87,413,142" info b8
expect 0 "parameters         480,309,308" info l2
expect 0 "parameters         4,652,008" info lite0
expect 0 "BN eps 0.001 momentum 0.01, relu6, no squeeze-excite, stem and head fixed" info --phi 1 --variant lite
expect 0 '"model": "b0-custom"' info b0 --variant lite --json
expect 2 "--variant must be b or lite, not 'mobile'" info b0 --variant mobile
expect 2 "--padding must be symmetric or same, not 'valid'" info b0 --padding valid
expect 2 "bad value '-1' for --seed" train --seed -1
expect 2 "bad value '0x10' for --seed" train --seed 0x10
expect 2 "--alpha, --beta and --gamma scale --phi; give --phi too" info b0 --alpha 2
expect 2 "resolution 1000000 must be in [32, 4096]" info --phi 12 --gamma 4
expect 0 "dropout 0.35" info b1 --dropout 0.35
expect 2 "needs --from torchvision|timm" import --model b0 a.pth
expect 1 "converting /nonexistent.pth failed" import --from torchvision --model b0 /nonexistent.pth /tmp/effnet-cli-never.h5
expect 0 "images/s" bench b0 --resolution 64 --batch 2 --iters 2 --warmup 1
expect 0 '"model": "b1-custom", "resolution": 64, "batch": 3, "mode": "infer"' bench b0 b1 --resolution 64 --batch 2,3 \
  --iters 1 --warmup 0 --mode infer --json
expect 2 "bad --batch '8,x'" bench b0 --batch 8,x
expect 0 "effnet b2-custom 32x32 batch 1 inference" bench --model b0,b2 --resolution 32 --batch 1 --iters 1 --warmup 0 --mode infer
expect 2 "--precision bf16 needs --device cuda" bench b0 --precision bf16
expect 2 "--precision must be f32, tf32, bf16 or f16" bench b0 --precision fp8
expect 2 "--mode must be infer or train" bench b0 --mode eval
expect 1 "cannot start device cuda:99" bench b0 --device cuda:99
expect 2 "--device must be cpu, cuda or cuda:N, not 'gpu'" bench b0 --device gpu
expect 2 "--device 'cuda:x': write cuda or cuda:N" bench b0 --device cuda:x
expect 2 "bad --batch 'maximum'" bench b0 --batch maximum
expect 1 "not even one image fits 1 MiB" bench b0 --batch max --memory-mib 1
# --batch max: the largest batch whose plan fits the budget; one more image would not fit.
max_fits() { # max_fits <batch offset>: prints "batch planned_mib" of b0 at 64x64 inference
  "$effnet" bench b0 --resolution 64 --mode infer --iters 1 --warmup 0 --json --memory-mib 100 --batch "$1" |
    python3 -c 'import json,sys; r=json.loads(sys.stdin.readline()); print(r["batch"], r["max_batch"], r["arena_mib"]+r["params_mib"])'
}
read -r b m planned <<<"$(max_fits max)"
read -r b1 m1 planned1 <<<"$(max_fits $((b + 1)))"
if [ "$b" = "$m" ] && [ "$b" -gt 1 ] && awk -v p="$planned" -v q="$planned1" 'BEGIN { exit !(p <= 100 && q > 100) }'; then
  echo "ok: bench --batch max: batch $b plans $planned MiB, batch $b1 $planned1 MiB (budget 100)"
else
  echo "FAILED: bench --batch max: batch $b (max $m) plans $planned MiB, batch $b1 $planned1 MiB (budget 100)"
  failures=$((failures + 1))
fi
expect 2 "--transform must be eval, train, train-aa or all" bench-data --transform flip
expect 1 "/nonexistent is not a directory" bench-data --data /nonexistent
tmp=$(mktemp -d /tmp/effnet-cli-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
# The data benchmark on 24 JPEGs it writes itself: three lines with a rate each.
expect 0 "effnet train-aa 1 threads" bench-data --cache "$tmp/jpegs" --images 24 --batch 4
# The end-to-end benchmark through the loader, with the profile by kind.
expect 0 "data (waiting)" bench b0 --data "$tmp/jpegs" --resolution 32 --batch 4 --iters 2 --warmup 1 --profile
expect 0 "depthwise conv" bench b0 --data "$tmp/jpegs" --resolution 32 --batch 4 --iters 2 --warmup 1 --profile --mode infer
expect 1 "has 8 classes but the model 4: give --classes 8" bench b0 --data "$tmp/jpegs" --classes 4 --resolution 32
# The slowest nodes (--profile-nodes implies --profile): a header, then exactly N ranked lines, each
# with its node's shape (batch first) and implementation.
out=$("$effnet" bench b0 --resolution 32 --batch 4 --iters 2 --warmup 1 --mode infer --profile-nodes 3 2>&1)
ranked=$(grep -cE '^[0-9]+ +[0-9.]+ +[0-9.]+  [a-z_0-9]+ +[^ ]+ +\(4,[0-9,]+\) +[^ ]' <<<"$out")
if [ "$ranked" = 3 ] && grep -qE '^rank +ms/run +% +op +node +shape +implementation$' <<<"$out" &&
  grep -qE '^1 ' <<<"$out" && ! grep -qE '^4 ' <<<"$out"; then
  ok "bench --profile-nodes 3: 3 ranked nodes"
else
  fail "bench --profile-nodes 3: $ranked ranked lines, output:"$'\n'"$(tail -6 <<<"$out")"
fi
# Training from an ImageFolder of those JPEGs (8 classes), at 32x32 with AutoAugment.
expect 0 "validation: loss" train --data "$tmp/jpegs" --image-size 32 --augment autoaugment --epochs 1 --batch 4 \
  --loader-threads 2 --out "$tmp/run-folder"
expect 2 "already holds checkpoints" train --data "$tmp/jpegs" --image-size 32 --out "$tmp/run-folder"
expect 0 "top-1" eval "$tmp/run-folder/best.h5"
# FixRes: validation at --eval-image-size, which the checkpoint records for eval; timm's recipe with
# Mixup and CutMix on top (no training accuracy then); accumulation needs as many batches.
expect 0 "test: eval 40x40x3" train --data "$tmp/jpegs" --image-size 32 --eval-image-size 40 --epochs 1 --batch 4 \
  --out "$tmp/fixres"
expect 0 "input: eval 40x40x3" eval "$tmp/fixres/best.h5"
expect 0 "--reprob          0.2                    recipe" train --data "$tmp/jpegs" --image-size 32 --recipe timm \
  --epochs 1 --warmup 0 --batch 4 --mixup 0.2 --cutmix 1 --accum 2 --out "$tmp/timm"
if grep -q '"train/acc"' "$tmp/timm/metrics.jsonl"; then fail "mixed targets: train/acc was logged"; fi
# Progressive learning's stages: values from the first stage's to the run's own, rounded sizes.
expect 0 "stage 3/4: image size 43, RandAugment magnitude 7, Mixup 0.133, dropout 0.15" train --data "$tmp/jpegs" \
  --progressive 4 --prog-image-size 32 --image-size 48 --augment randaugment --prog-ra-magnitude 3 --mixup 0.2 \
  --prog-mixup 0 --prog-dropout 0.05 --epochs 4 --batch 4 --out "$tmp/prog"
expect 2 "set the first of --progressive N stages (N >= 2; it is 0)" train --data "$tmp/jpegs" --image-size 32 \
  --prog-image-size 24 --out "$tmp/prog0"
expect 2 "--progressive 4 stages need at least as many epochs (--epochs 3)" train --data "$tmp/jpegs" --image-size 32 \
  --progressive 4 --epochs 3 --out "$tmp/prog3"
expect 2 "an epoch has 6 batches per rank, fewer than --accum 8" train --data "$tmp/jpegs" --image-size 32 --batch 4 \
  --accum 8 --out "$tmp/accum"
expect 0 "%  class" predict "$tmp/run-folder/best.h5" "$tmp/jpegs/class3/00003.jpg" --top-k 3
echo "not an image" >"$tmp/bad.jpg"
expect 1 "bad.jpg: not a JPEG or PNG file" predict "$tmp/run-folder/best.h5" "$tmp/bad.jpg"
# --json is valid JSON with the exact counts
json=$("$effnet" info b2 --json 2>&1)
if /usr/bin/python3 -c 'import json, sys; d = json.loads(sys.argv[1]); assert d["params"] == 9109994 and len(d["stages"]) == 9, d' "$json"; then
  echo "ok: effnet info b2 --json parses, 9,109,994 parameters"
else
  echo "FAILED: effnet info b2 --json: $json" | head -3
  failures=$((failures + 1))
fi
if [ -r /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
  # 100 steps on 6,400 images reach about 67% (chance is 10%); below 50% something is broken.
  out=$("$effnet" train --limit 6400 --epochs 1 --batch 64 --log-every 50 --out "$tmp/fmnist" 2>&1)
  echo "$out" | tail -2
  acc=$(sed -n 's/.*validation: .* top-1 \([0-9.]*\)%.*/\1/p' <<<"$out")
  if [ -z "$acc" ] || ! awk -v a="$acc" 'BEGIN { exit !(a >= 50) }'; then
    echo "FAILED: a short training run reached test accuracy '${acc}' (want >= 50%)"
    failures=$((failures + 1))
  else
    echo "ok: a short training run reached ${acc}% test accuracy"
  fi
  # Fine-tuning: B0 pre-trained on classes 0-4, then on classes 5-9 (10 images each) from it, with
  # the stem frozen and running statistics; stopped, then resumed from its checkpoint.
  f=(--image-size 32 --batch 16 --val-limit 64 --lr 0.05 --clip 1)
  expect 0 "done in" train --model b0 "${f[@]}" --select-classes 0-4 --limit 64 --epochs 1 --out "$tmp/pre"
  expect 0 "input: eval 32x32x3" train --model lite0 --in-channels 3 "${f[@]}" --limit 16 --epochs 1 --out "$tmp/rgb"
  expect 2 "class 12: /usr/share/datasets/fashion-mnist has classes 0 to 9" train --select-classes 5,12
  expect 2 "the model has 7 classes but" train --init "$tmp/pre/best.h5" --select-classes 5-9 --num-classes 7
  expect 1 "'blocks.9' matches no parameter" train --init "$tmp/pre/best.h5" --freeze blocks.9
  expect 0 "the classifier (5 classes there) re-initialized for 5 classes" train --init "$tmp/pre/best.h5" "${f[@]}" \
    --select-classes 5-9 --per-class 10 --freeze stem --bn eval --backbone-lr 0.1 --epochs 2 --stop-after 3 --out "$tmp/fine"
  expect 0 "frozen: stem (" train --resume "$tmp/fine"
  expect 0 "top-1" eval "$tmp/fine/best.h5" --data /usr/share/datasets/fashion-mnist
  expect 0 "test 40 x 1280, train 40 x 1280, in $tmp/features.h5" features "$tmp/fine/best.h5" --select-classes 5-9 \
    --limit 40 --out "$tmp/features.h5"
  expect 1 "classes '5-x': give labels" features "$tmp/fine/best.h5" --select-classes 5-x --out "$tmp/f.h5"
else
  echo "SKIPPED: the training run (Debian package dataset-fashion-mnist is not installed)"
fi
[ "$failures" -eq 0 ] && echo "all passed" || echo "$failures failed"
exit $((failures > 0))
