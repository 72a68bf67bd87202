#!/usr/bin/env bash
# libeffnet for other programs: `cmake --install` into a temporary prefix, then examples/classify.c
# built against the installed tree with find_package(effnet) and with pkg-config; both must print
# what `effnet predict` prints for the same weights and image. The installed `effnet` runs too.
# usage: test_install.sh BUILD_DIR SOURCE_DIR
set -u
build=$1 src=$2
tmp=$(mktemp -d /tmp/effnet-install-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
failures=0
fail() { echo "FAILED: $*"; failures=$((failures + 1)); }

cmake --install "$build" --prefix "$tmp/prefix" >"$tmp/install.log" 2>&1 || fail "cmake --install: $(tail -3 "$tmp/install.log")"
for f in bin/effnet include/effnet/effnet.h include/effnet/train/trainer.h lib/libeffnet.a lib/libeffnet.so \
         lib/cmake/effnet/effnetConfig.cmake lib/pkgconfig/effnet.pc share/effnet/convert_weights.py; do
  [ -e "$tmp/prefix/$f" ] || fail "the install has no $f"
done

# A model to classify with: the tiny net trained for a few steps on generated JPEGs (8 classes).
effnet="$tmp/prefix/bin/effnet"
"$effnet" bench-data --cache "$tmp/jpegs" --images 16 --batch 4 >/dev/null 2>&1 || fail "bench-data wrote no JPEGs"
"$effnet" train --data "$tmp/jpegs" --image-size 32 --epochs 1 --batch 4 --limit 16 --out "$tmp/run" >"$tmp/train.log" 2>&1 ||
  fail "the installed effnet did not train: $(tail -2 "$tmp/train.log")"
image="$tmp/jpegs/class3/$(ls "$tmp/jpegs/class3" | head -1)"
"$effnet" predict "$tmp/run/best.h5" "$image" >"$tmp/predict.txt" 2>&1 || fail "predict: $(cat "$tmp/predict.txt")"

# find_package(effnet)
cmake -S "$src/examples" -B "$tmp/cmake-build" -DCMAKE_PREFIX_PATH="$tmp/prefix" >"$tmp/cmake.log" 2>&1 &&
  cmake --build "$tmp/cmake-build" >>"$tmp/cmake.log" 2>&1 || fail "the example with find_package: $(tail -5 "$tmp/cmake.log")"
# pkg-config
PKG_CONFIG_PATH="$tmp/prefix/lib/pkgconfig" cc -std=c11 -Wall -Werror "$src/examples/classify.c" \
  $(PKG_CONFIG_PATH="$tmp/prefix/lib/pkgconfig" pkg-config --cflags --libs effnet) -o "$tmp/classify-pc" >"$tmp/pc.log" 2>&1 ||
  fail "the example with pkg-config: $(tail -5 "$tmp/pc.log")"

for exe in "$tmp/cmake-build/classify" "$tmp/classify-pc"; do
  [ -x "$exe" ] || continue
  if "$exe" "$tmp/run/best.h5" "$image" >"$tmp/out.txt" 2>&1 && cmp -s "$tmp/out.txt" "$tmp/predict.txt"; then
    echo "ok: $(basename "$exe") prints what effnet predict prints: $(sed -n 2p "$tmp/out.txt")"
  else
    fail "$(basename "$exe"): $(head -3 "$tmp/out.txt") (effnet predict: $(sed -n 2p "$tmp/predict.txt"))"
  fi
done
"$tmp/classify-pc" /nonexistent.h5 "$image" >"$tmp/err.txt" 2>&1
[ $? -eq 1 ] && grep -q "cannot open /nonexistent.h5" "$tmp/err.txt" || fail "a missing weights file: $(cat "$tmp/err.txt")"
[ "$failures" -eq 0 ] && echo "all passed" || echo "$failures failed"
exit $((failures > 0))
