#!/usr/bin/env bash
# Nothing lost, nothing silently wrong (issue 20): what a hostile or unlucky user does, each with
# its reproduction. Corrupt validation images are skipped and counted as training skips them, and
# an epoch's checkpoint is on disk before its validation can fail; every size train accepts loads
# in every command; one run per folder; a full disk is a message, not a signal; no command writes
# over its input or another kind of file without --force; every attribute, tensor and state value
# of a file is checked (checksums included); stale temporaries go; symlinks and FIFOs in an
# ImageFolder; --strict-images, the skip report, the install hint, import of a foreign file and
# --num-classes.
# usage: test_robust.sh EFFNET   (exit 77 without h5py, numpy and PIL in /usr/bin/python3)
set -u
effnet=$(realpath "$1")
here=$(cd "$(dirname "$0")" && pwd)
py=/usr/bin/python3
$py -c "import h5py, numpy, PIL" 2>/dev/null || { echo "skipped: no h5py/numpy/PIL"; exit 77; }
tmp=$(mktemp -d /tmp/effnet-robust-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp" || exit 1
source "$here/expect.sh"
# Small JPEGs in an ImageFolder: DIR CLASSES IMAGES-PER-CLASS
make_folder() {
  $py - "$@" <<'PY'
import os, sys, numpy as np
from PIL import Image
root, classes, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = np.random.default_rng(len(root))
for c in range(classes):
    os.makedirs(f"{root}/class{c}", exist_ok=True)
    for i in range(n):
        a = (rng.random((40, 48, 3)) * 64).astype(np.uint8) + np.uint8(40 * c)
        Image.fromarray(a).save(f"{root}/class{c}/{i:03d}.jpg", quality=90)
PY
}
truncate_copy() { head -c $(($(stat -c %s "$1") / 2)) "$1" >"$2"; } # truncate_copy JPEG OUT
# A small IDX dataset as Fashion-MNIST's (28x28 gray, 10 classes): DIR TRAIN-IMAGES TEST-IMAGES
make_idx() {
  $py - "$@" <<'PY'
import os, struct, sys, numpy as np
root, sizes = sys.argv[1], {"train": int(sys.argv[2]), "t10k": int(sys.argv[3])}
os.makedirs(root, exist_ok=True)
rng = np.random.default_rng(5)
for split, n in sizes.items():
    labels = np.arange(n, dtype=np.uint8) % 10
    images = (rng.random((n, 28, 28)) * 80 + labels[:, None, None] * 17).astype(np.uint8)
    open(f"{root}/{split}-images-idx3-ubyte", "wb").write(struct.pack(">IIII", 0x803, n, 28, 28) + images.tobytes())
    open(f"{root}/{split}-labels-idx1-ubyte", "wb").write(struct.pack(">II", 0x801, n) + labels.tobytes())
PY
}
make_idx idx 64 32
make_folder data3 2 40
"$effnet" train --data data3 --image-size 32 --batch 8 --epochs 1 --out base >base.log 2>&1 || fail "base: $(tail -2 base.log)"

# ---- 1. corrupt validation images; the epoch's checkpoint before its validation ----------------
make_folder data1/train 2 6
make_folder data1/val 2 4
truncate_copy data1/val/class0/000.jpg data1/val/class0/broken.jpg
f1=(--image-size 32 --epochs 2 --batch 4)
expect 0 "(8 images)" train --data data1 "${f1[@]}" --out run1
[ -f run1/ckpt-000000000006.h5 ] && ok "both epochs' checkpoints" || fail "run1: $(ls run1)"
expect 0 "broken.jpg" train --data data1 "${f1[@]}" --out run1b
expect 0 "1 corrupt image" eval run1/best.h5 --data data1
expect 0 "8 images" eval run1/best.h5 --data data1
# Without val/, validation reads the training images: the same skips.
make_folder data1c 2 6
truncate_copy data1c/class1/000.jpg data1c/class1/broken.jpg
expect 0 "done in" train --data data1c "${f1[@]}" --out run1c
# kill -9 during the first epoch's validation (of 4,000 images): its checkpoint is on disk, and
# the resume validates it and ends where the unbroken run ends, bit for bit.
make_idx idx1 256 4000
f1k=(--data idx1 --batch 64 --epochs 2 --ema 0.9 --seed 3)
"$effnet" train "${f1k[@]}" --out ref1 >/dev/null 2>&1 || fail "the reference run"
"$effnet" train "${f1k[@]}" --out kill1 >kill1.log 2>&1 &
pid=$!
for _ in $(seq 3000); do ls kill1/ckpt-*.h5 >/dev/null 2>&1 && break; sleep 0.01; done
kill -9 $pid
wait $pid 2>/dev/null
if ! ls kill1/ckpt-*.h5 >/dev/null 2>&1; then
  fail "no checkpoint appeared before the run ended"
elif grep -q '"val/loss"' kill1/metrics.jsonl; then
  fail "the first checkpoint appeared only after the epoch's validation"
else
  ok "the epoch's checkpoint was on disk during its validation"
"$effnet" train --resume kill1 >>kill1.log 2>&1 || fail "resume after a kill during validation: $(tail -2 kill1.log)"
if $py "$here/compare_checkpoints.py" ref1/ckpt-000000000008.h5 kill1/ckpt-000000000008.h5 >cmp.log 2>&1 &&
  [ "$(grep -c '"val/loss"' kill1/metrics.jsonl)" = 2 ]; then
  ok "killed during validation and resumed: $(cat cmp.log), each epoch validated once"
else
  fail "killed during validation: $(cat cmp.log), $(grep -c '"val/loss"' kill1/metrics.jsonl) validations logged"
fi
fi

# ---- 2. every size train accepts loads in every command ---------------------------------------
make_folder data2 3 4
$py -c "import numpy as np; from PIL import Image; Image.fromarray(np.full((20, 20), 99, np.uint8)).save('gray.png')"
roundtrip() { # roundtrip NAME TRAIN-ARGS...: a run that train accepts works in every command
  local name=$1
  shift
  local out
  if ! out=$("$effnet" train "$@" --epochs 1 --batch 8 --out "rt-$name" 2>&1); then
    fail "round trip $name: train refused it: $(tail -2 <<<"$out")"
    return
  fi
  local data=idx image=gray.png problems=""
  grep -q -- "--data data2" <<<"$*" && data=data2 image=data2/class0/000.jpg
  "$effnet" eval "rt-$name/best.h5" --data "$data" --batch 8 >/dev/null 2>&1 || problems+=" eval"
  "$effnet" predict "rt-$name/best.h5" "$image" >/dev/null 2>&1 || problems+=" predict"
  "$effnet" export --to onnx "rt-$name/best.h5" "rt-$name.onnx" >/dev/null 2>&1 || problems+=" export"
  "$effnet" train --resume "rt-$name" --epochs 2 >/dev/null 2>&1 || problems+=" resume"
  if grep -q -- "--model b0" <<<"$*"; then
    "$effnet" export --to timm "rt-$name/best.h5" "rt-$name-timm.h5" >/dev/null 2>&1 || problems+=" export-timm"
    "$effnet" train --init "rt-$name/best.h5" --data "$data" --epochs 1 --batch 8 --limit 16 --val-limit 8 \
      --out "rt-$name-init" >/dev/null 2>&1 || problems+=" init"
  fi
  [ -z "$problems" ] && ok "round trip $name: eval, predict, export, resume (and init)" ||
    fail "round trip $name: these refused the run's files:$problems"
}
roundtrip b0-default --model b0 --data idx
roundtrip tiny-default --data idx
roundtrip tiny-16 --data idx --image-size 16
roundtrip b0-40 --model b0 --data idx --image-size 40
roundtrip b0-folder --model b0 --data data2
roundtrip tiny-folder --data data2 --image-size 24
expect 2 "b0 needs images of at least 32 pixels" train --model b0 --image-size 16 --data data2 --batch 4
expect 0 "upscaled to 32x32" train --model b0 --data idx --batch 8 --epochs 1 --out rt-b0-32

# ---- 3. one run per folder ------------------------------------------------------------------
make_idx idx3 20000 16 # an epoch of 5,000 steps: no checkpoint yet when the second run comes
slow=(--data idx3 --batch 4 --epochs 1000)
short=(--data idx3 --batch 4 --epochs 1 --stop-after 1)
started() { for _ in $(seq 1000); do grep -q "$2" "$1" 2>/dev/null && return; sleep 0.02; done; } # started FILE TEXT
"$effnet" train "${slow[@]}" --out run3 >run3.log 2>&1 &
pid=$!
started run3/metrics.jsonl '"step"'
expect 2 "run3 is in use by another effnet run (pid $pid)" train "${short[@]}" --out run3
kill -INT $pid
wait $pid
"$effnet" train --resume run3 >run3r.log 2>&1 &
pid=$!
started run3r.log "resumed from"
expect 2 "run3 is in use by another effnet run (pid $pid)" train --resume run3 --stop-after 1
kill -INT $pid
wait $pid
# A run killed with -9 leaves no lock behind.
"$effnet" train "${slow[@]}" --out run3k >/dev/null 2>&1 &
pid=$!
started run3k/metrics.jsonl '"step"'
kill -9 $pid
wait $pid 2>/dev/null
expect 0 "stopped at step 1" train "${short[@]}" --out run3k
# Default names, two runs started at once: two folders.
mkdir same && (cd same && for _ in 1 2; do
  "$effnet" train --data ../data3 --image-size 32 --batch 4 --epochs 1 --limit 8 >/dev/null 2>&1 &
done
wait)
[ "$(ls same/runs | wc -l)" = 2 ] && ok "two default runs at once: $(ls same/runs | tr '\n' ' ')" ||
  fail "two default runs at once made $(ls same/runs | tr '\n' ' ')"

# ---- 4. a full disk --------------------------------------------------------------------------
out=$(ulimit -f 100; "$effnet" train --data data3 --image-size 32 --batch 4 --limit 8 --epochs 1 \
  --model b0 --out run4 2>&1)
st=$?
if [ $st -eq 1 ] && grep -q "File too large\|No space left" <<<"$out" && ! ls run4 | grep -q '\.tmp\.'; then
  ok "a file-size limit: exit 1, '$(grep -o 'writing [^;]*' <<<"$out" | head -1)'"
else
  fail "a file-size limit: exit $st, $(tail -2 <<<"$out"), $(ls run4)"
fi

# ---- 5. no command writes over its input or another kind of file ---------------------------------
cp base/best.h5 in5.h5
md5=$(md5sum <in5.h5)
expect 2 "in5.h5 is the input" export --to timm in5.h5 in5.h5
cp base/best.h5 other5.h5
expect 2 "other5.h5 is an effnet training checkpoint, not" export --to onnx in5.h5 other5.h5
echo "notes" >notes.onnx
expect 2 "notes.onnx is a file of another kind, not an ONNX model" export --to onnx in5.h5 notes.onnx
expect 0 "ONNX opset" export --to onnx in5.h5 ok5.onnx
expect 0 "ONNX opset" export --to onnx in5.h5 ok5.onnx
expect 2 "other5.h5 is an effnet training checkpoint, not" features in5.h5 --data data3 --out other5.h5
expect 0 "ONNX opset" export --to onnx in5.h5 notes.onnx --force
[ "$(md5sum <in5.h5)" = "$md5" ] && [ "$(md5sum <other5.h5)" = "$md5" ] && ok "the refused outputs are unchanged" ||
  fail "a refused output changed"

# ---- 6. attributes read from a file -------------------------------------------------------------
for v in 0 -1 "2**62"; do
  cp base/best.h5 c6.h5
  h5set c6.h5 "f.attrs['classes'] = np.int64($v)"
  if [ "$v" = "2**62" ]; then want="c6.h5: attribute classes is 4611686018427387904, out of range"; else
    want="c6.h5: $v classes"
  fi
  expect 1 "$want" eval c6.h5 --data data3
  expect 1 "$want" predict c6.h5 data3/class0/000.jpg
done

# ---- 7. stale temporaries ---------------------------------------------------------------------
sleep 0 & dead=$!
wait $dead
cp base/best.h5 "base/ckpt-000000000099.h5.tmp.$dead"
cp base/best.h5 "base/ckpt-000000000099.h5.tmp.$$"
expect 0 "removed 1 stale temporary file" train --resume base --epochs 2
[ ! -e "base/ckpt-000000000099.h5.tmp.$dead" ] && [ -e "base/ckpt-000000000099.h5.tmp.$$" ] &&
  ok "the dead writer's temporary went, the live one's stayed" || fail "temporaries: $(ls base)"

# ---- 8. non-finite, out-of-range and corrupted values ---------------------------------------------
"$effnet" train --data data3 --image-size 32 --batch 8 --epochs 1 --ema 0.9 --optimizer rmsprop --stop-after 2 \
  --out run8 >/dev/null 2>&1 || fail "run8"
ck=run8/ckpt-000000000002.h5
corrupt() { # corrupt WHAT TEXT STATEMENTS: a copy of the checkpoint changed so, refused naming TEXT
  rm -rf c8 && mkdir c8 && cp $ck c8/ && h5set c8/${ck##*/} "$3"
  expect 1 "$2" train --resume c8
}
corrupt "NaN in the EMA" "/ema/classifier.weight holds a NaN" "f['ema/classifier.weight'][0, 0] = np.nan"
corrupt "Inf in a BN statistic" "/model/bn1.running_mean holds" "f['model/bn1.running_mean'][0] = np.inf"
corrupt "a negative variance" "/model/bn1.running_var holds a negative" "f['model/bn1.running_var'][1] = -1"
corrupt "NaN in an optimizer slot" "/optimizer/" \
  "k = list(f['optimizer'])[0]; f['optimizer/' + k + '/conv_stem.weight'][0, 0, 0, 0] = np.nan"
corrupt "a NaN loss scale" "out of range" "f.attrs['loss_scale'] = np.nan"
corrupt "step 2^62" "out of range" "f.attrs['step'] = np.int64(2**62)"
cp $ck c8.h5 && h5edit c8.h5 "f['model/conv_stem.weight'][0, 0, 0, 0] += 1e-3"
expect 1 "c8.h5 does not match its checksum" eval c8.h5 --no-ema --data data3
cp $ck c8.h5 && h5poke c8.h5 "f['model/conv_stem.weight'][0, 0, 0, 0] += 1e-3"
expect 1 "/model/conv_stem.weight does not match its checksum" eval c8.h5 --no-ema --data data3
cp $ck c8.h5 && h5poke c8.h5 "f.attrs['bn_eps'] = 1.5e-5"
expect 1 "its attributes do not match their checksum" eval c8.h5 --data data3
cp $ck nan8.h5 && h5set nan8.h5 "f['model/classifier.bias'][0] = np.nan"
expect 1 "holds a NaN" eval nan8.h5 --no-ema --data data3
expect 1 "holds a NaN" predict nan8.h5 --no-ema gray.png
expect 1 "holds a NaN" export --to onnx --no-ema nan8.h5 nan8.onnx
# Raw byte flips anywhere: refused, or (in bytes nothing reads) the same outputs.
base=$("$effnet" eval $ck --no-ema --data data3 2>&1 | grep -o 'top-1.*loss [0-9.]*')
[ -n "$base" ] || fail "eval of $ck printed no result to compare the byte flips with"
silent=0
for k in $(seq 40); do
  cp $ck flip.h5
  $py -c "
import os, sys
size = os.path.getsize('flip.h5'); at = (int(sys.argv[1]) * 7919 * 104729) % size
with open('flip.h5', 'r+b') as f: f.seek(at); b = f.read(1); f.seek(at); f.write(bytes([b[0] ^ 0x10]))" "$k"
  got=$("$effnet" eval flip.h5 --no-ema --data data3 2>&1 | grep -o 'top-1.*loss [0-9.]*')
  [ -n "$got" ] && [ "$got" != "$base" ] && silent=$((silent + 1))
done
[ -n "$base" ] && [ $silent -eq 0 ] && ok "40 byte flips: each refused or without effect" || fail "$silent of 40 byte flips changed outputs silently"

# ---- 9. symlinks and special files in an ImageFolder ------------------------------------------------
make_folder data9 2 3
ln -s .. data9/class0/up
ln -s . data9/class1/loop
ln -s /nonexistent data9/class1/dangling.jpg
mkfifo data9/class1/pipe.jpg
out=$("$effnet" train --data data9 --image-size 32 --batch 2 --epochs 1 --out run9 2>&1)
if grep -q "(6 train / 6 test images" <<<"$out" && grep -q "dangling.jpg" <<<"$out" && grep -q "pipe.jpg" <<<"$out" &&
  grep -q "class0/up" <<<"$out"; then
  ok "symlinked folders and special files skipped and named"
else
  fail "ImageFolder with symlinks: $(head -4 <<<"$out")"
fi
mkfifo fifo.jpg
out=$(timeout 10 "$effnet" predict base/best.h5 fifo.jpg 2>&1)
st=$?
[ $st -eq 1 ] && grep -q "fifo.jpg is not a regular file" <<<"$out" && ok "predict on a FIFO: $out" ||
  fail "predict on a FIFO: exit $st, $out"

# ---- 10. the smaller ones --------------------------------------------------------------------
make_folder data10 2 6
$py - <<'PY'
data = bytearray(open("data10/class0/001.jpg", "rb").read())
data[len(data) // 2: len(data) // 2 + 2] = b"\xff\xd5"  # a restart marker amid the data: libjpeg warns, decodes on
open("data10/class0/001.jpg", "wb").write(data)
PY
expect 0 "epoch 1: 1 image of data10 decoded with warnings" train --data data10 --image-size 32 --batch 4 --epochs 1 --out run10
expect 0 "epoch 1 skipped 1 corrupt image" train --data data10 --image-size 32 --batch 4 --epochs 1 --strict-images \
  --out run10s
out=$("$effnet" train --data /nonexistent-robust 2>&1)
st=$?
[ $st -ne 0 ] && grep -q "/nonexistent-robust" <<<"$out" && ! grep -q "install Fashion-MNIST" <<<"$out" &&
  ok "no install hint after --data: $out" || fail "a missing --data: exit $st, $out"
echo "not weights" >foreign.pth
expect 1 "foreign.pth is not a PyTorch file" import --from torchvision --model b0 foreign.pth foreign.h5
cp base/best.h5 effnet.pth
expect 1 "effnet.pth is not a PyTorch file: it is an HDF5 file" import --from torchvision --model b0 effnet.pth foreign.h5
expect 2 "the model has 3 classes but data10 has 2" train --data data10 --image-size 32 --batch 4 --num-classes 3

[ "$failures" -eq 0 ] && echo "all passed" || echo "$failures failed"
exit $((failures > 0))
