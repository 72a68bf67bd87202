#!/usr/bin/env bash
# Stopping and resuming training changes nothing: runs stopped by --stop-after (twice; with two
# steps in flight as on GPUs; with mixing, erasing and accumulation; inside a progressive stage), by
# SIGINT and by kill -9, then resumed, end with checkpoints equal bit for bit (model, EMA, optimizer
# slots, counters) to the run that never stopped, and log the same losses; accumulation with two
# steps in flight trains the same bits as with one. A truncated file, a text file and a checkpoint
# of another model each fail to resume with their message, leaving the run folder as it was; eval
# and predict refuse a checkpoint holding a NaN.
# usage: test_resume.sh EFFNET   (exit 77 without Fashion-MNIST, h5py or numpy)
set -u
effnet=$1
here=$(dirname "$0")
fmnist=/usr/share/datasets/fashion-mnist
[ -r $fmnist/train-images-idx3-ubyte.gz ] || { echo "skipped: no Fashion-MNIST"; exit 77; }
/usr/bin/python3 -c "import h5py, numpy" 2>/dev/null || { echo "skipped: no h5py/numpy"; exit 77; }
tmp=$(mktemp -d /tmp/effnet-resume-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
source "$here/expect.sh"
# Everything that carries state: RMSProp slots, a warm-up and a staircase, EMA, clipping,
# random crops and flips, dropout, two loader threads.
recipe=(--limit 1024 --val-limit 500 --epochs 3 --batch 64 --optimizer rmsprop --lr 0.05 --warmup 0.5 --schedule exponential
        --decay-epochs 0.5 --ema 0.99 --clip 5 --augment crop --seed 7 --loader-threads 2 --log-every 1 --keep 10)
final=ckpt-000000000048.h5

"$effnet" train "${recipe[@]}" --out "$tmp/a" >"$tmp/a.log" 2>&1 || fail "the reference run: $(tail -2 "$tmp/a.log")"

same_checkpoint() { # same_checkpoint <name> <a.h5> <b.h5>: the two checkpoints are equal bit for bit
  if /usr/bin/python3 "$here/compare_checkpoints.py" "$2" "$3" >"$tmp/cmp.log" 2>&1; then
    echo "ok: $1: $(cat "$tmp/cmp.log")"
  else
    fail "$1: $(cat "$tmp/cmp.log")"
  fi
}

same() { # same <name> <folder>: the final checkpoint and the logged losses equal the reference's
  same_checkpoint "$1" "$tmp/a/$final" "$2/$final"
  # Every (step, train/loss) logged by the resumed run equals the reference's.
  if ! /usr/bin/python3 - "$tmp/a/metrics.jsonl" "$2/metrics.jsonl" <<'PY'
import json, sys
def losses(p):
    return {r["step"]: r["train/loss"] for r in map(json.loads, open(p)) if "train/loss" in r}
a, b = losses(sys.argv[1]), losses(sys.argv[2])
sys.exit(0 if a == b and len(a) == 48 else 1)
PY
  then fail "$1: the logged losses differ from the reference's"; fi
}

# Stopped twice (mid-epoch, then across an epoch's end), resumed from the folder.
"$effnet" train "${recipe[@]}" --out "$tmp/b" --stop-after 11 >"$tmp/b.log" 2>&1 &&
  "$effnet" train --resume "$tmp/b" --stop-after 9 >>"$tmp/b.log" 2>&1 &&
  "$effnet" train --resume "$tmp/b" >>"$tmp/b.log" 2>&1 || fail "stop-after and resume: $(tail -2 "$tmp/b.log")"
same "stopped twice and resumed" "$tmp/b"

# SIGINT mid-run: a checkpoint, exit status 130, and the resume completes the run.
"$effnet" train "${recipe[@]}" --limit 4096 --out "$tmp/c" >"$tmp/c.log" 2>&1 &
pid=$!
for _ in $(seq 200); do grep -q '"step": 3,' "$tmp/c/metrics.jsonl" 2>/dev/null && break; sleep 0.05; done
kill -INT $pid
wait $pid
status=$?
if [ $status -eq 130 ] && grep -q "stopped at step" "$tmp/c.log"; then
  echo "ok: SIGINT saved a checkpoint and exited with 130 ($(grep -o 'stopped at step [0-9]*' "$tmp/c.log"))"
else
  fail "SIGINT: status $status, $(tail -1 "$tmp/c.log")"
fi
"$effnet" train --resume "$tmp/c" >>"$tmp/c.log" 2>&1 || fail "resume after SIGINT: $(tail -2 "$tmp/c.log")"
"$effnet" train "${recipe[@]}" --limit 4096 --out "$tmp/c-ref" >/dev/null 2>&1
same_checkpoint "SIGINT and resume" "$tmp/c-ref/ckpt-000000000192.h5" "$tmp/c/ckpt-000000000192.h5"

# The loop a GPU runs, two steps in flight (step k + 1 queued before step k is read), here on the
# CPU: the same bits, also when stopped mid-epoch and resumed.
"$effnet" train "${recipe[@]}" --steps-in-flight 2 --out "$tmp/p" --stop-after 13 >"$tmp/p.log" 2>&1 &&
  "$effnet" train --resume "$tmp/p" >>"$tmp/p.log" 2>&1 || fail "two steps in flight: $(tail -2 "$tmp/p.log")"
same "two steps in flight, stopped after 13 and resumed" "$tmp/p"

# Mixup, CutMix, random erasing and gradient accumulation (2 micro-batches of 32) carry no state of
# their own beyond (seed, epoch, batch): stopped mid-epoch (6 updates = 12 micro-batches) and resumed,
# the same bits as a run that never stopped.
mixing=(--limit 1024 --val-limit 500 --epochs 2 --batch 32 --accum 2 --mixup 0.4 --cutmix 1 --mix-prob 0.9 --reprob 0.3
        --augment crop --seed 3 --loader-threads 2 --log-every 1 --keep 10)
"$effnet" train "${mixing[@]}" --out "$tmp/m" >"$tmp/m.log" 2>&1 &&
  "$effnet" train "${mixing[@]}" --out "$tmp/mb" --stop-after 6 >"$tmp/mb.log" 2>&1 &&
  "$effnet" train --resume "$tmp/mb" >>"$tmp/mb.log" 2>&1 || fail "mixing and accumulation: $(tail -2 "$tmp/mb.log")"
if grep -q "train acc" "$tmp/m.log"; then fail "mixed targets: a training accuracy was printed"; fi
"$effnet" train "${mixing[@]}" --steps-in-flight 2 --out "$tmp/mp" >"$tmp/mp.log" 2>&1 ||
  fail "accumulation with two steps in flight: $(tail -2 "$tmp/mp.log")"
end=ckpt-000000000032.h5
same_checkpoint "accumulation with two steps in flight" "$tmp/m/$end" "$tmp/mp/$end"
same_checkpoint "mixing, erasing and accumulation, stopped after 6 updates and resumed" "$tmp/m/$end" "$tmp/mb/$end"

# Progressive learning: stopped inside the second of three stages (another image size, RandAugment
# magnitude, Mixup alpha and dropout than the first's) and resumed there, the same bits.
prog=(--limit 512 --val-limit 200 --epochs 3 --batch 32 --progressive 3 --prog-image-size 20 --image-size 28
      --augment randaugment --prog-ra-magnitude 2 --mixup 0.3 --prog-mixup 0 --prog-dropout 0 --seed 5 --keep 10)
"$effnet" train "${prog[@]}" --out "$tmp/g" >"$tmp/g.log" 2>&1 &&
  "$effnet" train "${prog[@]}" --out "$tmp/gb" --stop-after 21 >"$tmp/gb.log" 2>&1 &&
  "$effnet" train --resume "$tmp/gb" >>"$tmp/gb.log" 2>&1 || fail "progressive learning: $(tail -2 "$tmp/gb.log")"
grep -q "stage 2/3: image size 24, RandAugment magnitude 6, Mixup 0.15, dropout 0.1" "$tmp/gb.log" ||
  fail "progressive learning: the resumed run did not start in stage 2: $(grep stage "$tmp/gb.log")"
same_checkpoint "progressive learning, stopped in stage 2 and resumed" "$tmp/g/$final" "$tmp/gb/$final"

# kill -9 once the first epoch's checkpoint is written: every file left is whole, and the run
# resumes from the latest to the reference's end.
"$effnet" train "${recipe[@]}" --limit 4096 --out "$tmp/d" >"$tmp/d.log" 2>&1 &
pid=$!
for _ in $(seq 6000); do ls "$tmp/d"/ckpt-*.h5 >/dev/null 2>&1 && break; sleep 0.02; done # up to 2 min on a busy machine
kill -9 $pid
wait $pid 2>/dev/null
ls "$tmp/d" | grep -q '\.tmp\.' && rm -f "$tmp"/d/*.tmp.* # a save cut short leaves only its temporary
"$effnet" train --resume "$tmp/d" >>"$tmp/d.log" 2>&1 || fail "resume after kill -9: $(tail -2 "$tmp/d.log")"
same_checkpoint "kill -9 and resume" "$tmp/c-ref/ckpt-000000000192.h5" "$tmp/d/ckpt-000000000192.h5"

# Bad checkpoints: one message each, and the folder unchanged.
mkdir "$tmp/e"
cp "$tmp/a/ckpt-000000000016.h5" "$tmp/e/ckpt-000000000016.h5"
head -c 20000 "$tmp/a/ckpt-000000000032.h5" >"$tmp/e/ckpt-000000000032.h5"
before=$(cd "$tmp/e" && md5sum * | md5sum)
expect_error() { # expect_error <what> <text> <args...>
  local what=$1 text=$2
  shift 2
  local out
  out=$("$effnet" train "$@" 2>&1)
  local st=$?
  if [ $st -ne 0 ] && grep -qF -- "$text" <<<"$out" && [ "$(cd "$tmp/e" && md5sum * | md5sum)" = "$before" ]; then
    echo "ok: $what -> $st, '$text'"
  else
    fail "$what: status $st, folder $( [ "$(cd "$tmp/e" && md5sum * | md5sum)" = "$before" ] && echo unchanged || echo CHANGED): $(tail -2 <<<"$out")"
  fi
}
expect_error "a truncated checkpoint" "cannot be opened as HDF5 (truncated or corrupt?)" --resume "$tmp/e"
echo "not a checkpoint" >"$tmp/e/text.h5"
before=$(cd "$tmp/e" && md5sum * | md5sum)
expect_error "a text file" "text.h5 is not an HDF5 file" --resume "$tmp/e/text.h5"
expect_error "an older checkpoint into its own folder" "is not the latest checkpoint of" --resume "$tmp/e/ckpt-000000000016.h5"
expect_error "another model" "does not fit this model" --resume "$tmp/e/ckpt-000000000016.h5" --model b0 --image-size 32 \
  --out "$tmp/f"

# A copied run folder resumes into the copy; the arguments a checkpoint keeps do not pile up.
cp -r "$tmp/a" "$tmp/g"
before=$(cd "$tmp/a" && md5sum * | md5sum)
if "$effnet" train --resume "$tmp/g" --epochs 4 --threads 2 >"$tmp/g.log" 2>&1 && [ -f "$tmp/g/ckpt-000000000064.h5" ] &&
  [ "$(cd "$tmp/a" && md5sum * | md5sum)" = "$before" ]; then
  echo "ok: a copied folder resumes into the copy, the original unchanged"
else
  fail "resuming a copy: $(tail -2 "$tmp/g.log")"
fi
"$effnet" train --resume "$tmp/g" --epochs 5 --threads 2 >>"$tmp/g.log" 2>&1
args=$(/usr/bin/python3 -c 'import h5py, sys; print(h5py.File(sys.argv[1])["/"].attrs["train_args"])' "$tmp/g/ckpt-000000000080.h5")
if [ "$(grep -c -- '^--threads$' <<<"$args")" = 1 ] && [ "$(grep -A1 -- '^--epochs$' <<<"$args" | tail -1)" = 5 ] &&
  ! grep -q -- '^--out$' <<<"$args"; then
  echo "ok: the saved arguments hold each flag once, with its last value"
else
  fail "saved arguments: $(tr '\n' ' ' <<<"$args")"
fi
# A checkpoint holding a NaN (as a diverged run would save it, its checksum matching) is refused by
# eval and predict, naming the tensor.
cp "$tmp/a/$final" "$tmp/nan.h5"
h5poke "$tmp/nan.h5" "f['model/classifier.bias'][0] = np.nan; del f['model/classifier.bias'].attrs['crc32c']"
out=$("$effnet" eval "$tmp/nan.h5" --no-ema 2>&1)
[ $? -eq 1 ] && grep -q "/model/classifier.bias holds a NaN" <<<"$out" && echo "ok: eval refuses NaN weights" || fail "NaN eval: $out"
/usr/bin/python3 -c 'import numpy as np; from PIL import Image; Image.fromarray(np.zeros((28, 28), np.uint8)).save("'"$tmp"'/black.png")'
out=$("$effnet" predict "$tmp/nan.h5" --no-ema "$tmp/black.png" 2>&1)
[ $? -eq 1 ] && grep -q "/model/classifier.bias holds a NaN" <<<"$out" && echo "ok: predict refuses NaN weights" || fail "NaN predict: $out"
[ "$failures" -eq 0 ] && echo "all passed" || echo "$failures failed"
exit $((failures > 0))
