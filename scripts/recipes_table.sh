#!/usr/bin/env bash
# The training-recipe table of docs/training.md: EfficientNet-B0 on Fashion-MNIST at 32x32 on the CPU
# with the main job's recipe (scripts/train.sh) on a CPU-sized budget, against each addition of issue
# 23 (Mixup, CutMix, both, random erasing, gradient accumulation), FixRes (the best checkpoints of
# the default and fixed-48 runs evaluated larger; "vs" is then against the run evaluated at its own
# size), and progressive learning 32 -> 48 against a fixed 48; two seeds each. Prints one markdown table (best validation top-1 of the EMA
# weights, the run's time) and keeps the runs in OUT.
# usage: scripts/recipes_table.sh OUT [EPOCHS [LIMIT]]   (defaults: 5 epochs, 30000 training images)
set -euo pipefail
out=${1:?usage: recipes_table.sh OUT [EPOCHS [LIMIT]]}
epochs=${2:-5}
limit=${3:-30000}
effnet=$(cd "$(dirname "$0")/.." && pwd)/build/effnet
mkdir -p "$out"
base=(--model b0 --image-size 32 --batch 128 --lr 0.1 --clip 2 --warmup 1 --ema 0.999 --limit "$limit" --log-every 1000)

run() { # run NAME SEED FLAGS...: one training run (kept if it finished before)
  local name=$1 seed=$2
  shift 2
  local dir=$out/$name-s$seed
  if ! grep -q "^done in" "$dir.log" 2>/dev/null; then
    rm -rf "$dir"
    "$effnet" train "${base[@]}" --seed "$seed" --out "$dir" "$@" >"$dir.log" 2>&1
  fi
  sed -n 's/^done in \([0-9.]*\) s: best validation top-1 \([0-9.]*\)%.*/\2 \1/p' "$dir.log" >"$dir.result"
}

rows=("default|--epochs $epochs"
      "Mixup 0.2|--epochs $epochs --mixup 0.2"
      "CutMix 1.0|--epochs $epochs --cutmix 1"
      "Mixup 0.8 + CutMix 1.0 (timm's usual)|--epochs $epochs --mixup 0.8 --cutmix 1"
      "random erasing 0.25 (pixel)|--epochs $epochs --reprob 0.25"
      "accumulation: 2 x batch 64|--epochs $epochs --batch 64 --accum 2"
      "fixed 48 px|--epochs $epochs --image-size 48"
      "progressive 32 -> 48, 4 stages, $((epochs + 2)) epochs|--epochs $((epochs + 2)) --image-size 48 --progressive 4 --prog-image-size 32")
for seed in 1 2; do
  for i in "${!rows[@]}"; do
    IFS='|' read -r _ flags <<<"${rows[$i]}"
    # shellcheck disable=SC2086
    run "row$i" "$seed" $flags
  done
  # FixRes: the default (32 px) and fixed-48 runs' checkpoints evaluated larger.
  for eval in "0 36" "0 40" "6 56" "6 64"; do
    read -r row size <<<"$eval"
    f=$out/fixres$size-s$seed
    [ -s "$f.result" ] || "$effnet" eval "$out/row$row-s$seed/best.h5" --image-size "$size" 2>&1 |
      sed -n 's/.*top-1 \([0-9.]*\)%.*(\([0-9.]*\) s,.*/\1 \2/p' >"$f.result"
  done
done

/usr/bin/python3 - "$out" "${#rows[@]}" "${rows[@]}" <<'PY'
import sys
out, n, rows = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
def res(name):
    vals = [list(map(float, open(f"{out}/{name}-s{s}.result").read().split())) for s in (1, 2)]
    return [v[0] for v in vals], [v[1] for v in vals]
def line(label, name, base=None, time_unit="s"):
    acc, t = res(name)
    mean = sum(acc) / 2
    delta = "" if base is None else f"{mean - base:+.2f}"
    print(f"| {label} | {acc[0]:.2f} | {acc[1]:.2f} | {mean:.2f} ± {abs(acc[0] - acc[1]) / 2:.2f} | {delta} | "
          f"{t[0]:.0f} / {t[1]:.0f} {time_unit} |")
print("| recipe | top-1 seed 1 | seed 2 | mean ± half the spread | vs default (FixRes: vs its own size) | "
      "time (seed 1 / 2) |")
print("|---|---|---|---|---|---|")
a, _ = res("row0")
base = sum(a) / 2
for i in range(n):
    line(rows[i].split("|")[0], f"row{i}", None if i == 0 else base)
for size, row in ((36, 0), (40, 0), (56, 6), (64, 6)):
    trained = "the default's (32 px)" if row == 0 else "fixed 48 px's"
    acc, _ = res(f"row{row}")
    line(f"FixRes: {trained} checkpoint evaluated at {size} px", f"fixres{size}", sum(acc) / 2, "s (eval)")
PY
