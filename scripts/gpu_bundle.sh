#!/usr/bin/env bash
# Builds effnet for the lent GPU machine on this one (no GPU needed) into build-gpu/, then gathers
# the binaries and every shared library they need that that machine lacks into .gpu-bundle/
# (ignored), with a small Fashion-MNIST, to travel there: the device tool's run with carry
# [".gpu-bundle"] and tests/gpu/check.sh.
#
# Left out of the bundle, because they must come from the GPU machine (its driver, its CUDA,
# NVIDIA's Python wheels) or its C library: libcuda*, libcudart*, libcudnn*, libcublas*,
# libnccl*, libnvidia*, libnvrtc*, libnvJitLink*, and glibc (libc, libm, libmvec, libdl, librt,
# libpthread, libresolv, libutil, ld-linux). libstdc++, libgcc_s and libgomp are bundled. There,
# LD_LIBRARY_PATH=.gpu-bundle/lib:<the wheels' lib folders> is all the binaries need.
# Over 60 MiB, the libraries are stripped, then packed into .gpu-bundle/lib.tar.xz (check.sh
# unpacks it).
set -euo pipefail
cd "$(dirname "$0")/.."

build="build-gpu"
bundle=".gpu-bundle"
limit_mib=60
wanted=(effnet test_cuda_smoke test_cuda_ops test_cuda_update test_cuda_train test_nccl)
from_gpu_machine='^(libcuda|libcudart|libcudnn|libcublas|libnccl|libnvidia|libnvrtc|libnvJitLink)'
glibc='^(ld-linux|libc|libm|libmvec|libdl|librt|libpthread|libresolv|libutil)\.so'

cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DEFFNET_NATIVE=OFF -DEFFNET_CUDA=ON \
  -DCMAKE_CUDA_ARCHITECTURES="80;90" -DEFFNET_MPI=OFF

# `--target help` lists "name: phony" (Ninja) or "... name" (Makefiles).
known=$(cmake --build "$build" --target help | sed -E 's/^\.\.\. //; s/:.*//; s/ .*//')
targets=() missing=()
for t in "${wanted[@]}"; do
  if grep -qx -- "$t" <<<"$known"; then targets+=("$t"); else missing+=("$t"); fi
done
[ ${#targets[@]} -gt 0 ] || { echo "gpu_bundle: none of ${wanted[*]} is a target of $build" >&2; exit 1; }
[ ${#missing[@]} -eq 0 ] || echo "gpu_bundle: not targets (yet) of this tree, left out: ${missing[*]}"
cmake --build "$build" -j "$(nproc)" --target "${targets[@]}"

rm -rf "$bundle"
mkdir -p "$bundle/bin" "$bundle/lib"
for t in "${targets[@]}"; do
  path=$(find "$build" -type f -name "$t" -perm -u+x -not -path '*/CMakeFiles/*' | head -1)
  [ -n "$path" ] || { echo "gpu_bundle: built $t but found no binary of it under $build" >&2; exit 1; }
  cp "$path" "$bundle/bin/$t"
done

# ldd lists the whole closure ("soname => path (address)"); each library is copied, symlinks
# followed, under the soname the loader looks for.
for bin in "$bundle"/bin/*; do
  if ldd "$bin" | grep -q 'not found'; then
    echo "gpu_bundle: $bin has unresolved libraries here:" >&2
    ldd "$bin" | grep 'not found' >&2
    exit 1
  fi
  ldd "$bin" | awk '$2 == "=>" && $3 ~ /^\// { print $1, $3 }'
done | sort -u | while read -r soname path; do
  if [[ $soname =~ $from_gpu_machine || $soname =~ $glibc ]]; then continue; fi
  cp "$(readlink -f "$path")" "$bundle/lib/$soname"
done

size_mib() { du -sbL "$1" | awk '{ printf "%.1f", $1 / 1048576 }'; }
too_large() { awk -v s="$(size_mib "$bundle")" -v l="$limit_mib" 'BEGIN { exit !(s > l) }'; }
if too_large; then
  echo "gpu_bundle: $(size_mib "$bundle") MiB is over $limit_mib MiB: stripping the libraries"
  strip --strip-unneeded "$bundle"/lib/*
fi
if too_large; then
  echo "gpu_bundle: $(size_mib "$bundle") MiB is still over $limit_mib MiB: packing lib/ into lib.tar.xz"
  tar -C "$bundle" -cJf "$bundle/lib.tar.xz" lib
  rm -rf "${bundle:?}/lib"
fi

# A small Fashion-MNIST (the first 1024 training and 256 test images, as IDX files) for check.sh's
# training runs: the lent machine need not have the dataset.
python3 - "$bundle/data/fashion-mnist-small" <<'PY'
import gzip, os, struct, sys
src, dst = "/usr/share/datasets/fashion-mnist", sys.argv[1]
os.makedirs(dst, exist_ok=True)
for split, n in (("train", 1024), ("t10k", 256)):
    for kind, item in (("images-idx3", 28 * 28), ("labels-idx1", 1)):
        data = gzip.open(f"{src}/{split}-{kind}-ubyte.gz").read()
        dims = data[3]
        header = bytearray(data[:4 + 4 * dims])
        header[4:8] = struct.pack(">I", n)
        open(f"{dst}/{split}-{kind}-ubyte", "wb").write(bytes(header) + data[len(header):len(header) + n * item])
PY

# What it was built from, for check.sh to compare with the tree it runs in.
git describe --always --dirty >"$bundle/commit"

echo "gpu_bundle: contents of $bundle:"
(cd "$bundle" && find . -type f -printf '%s %p\n' | sort -k2 | awk '{ printf "  %8.1f KiB  %s\n", $1 / 1024, $2 }')
[ -f "$bundle/lib.tar.xz" ] && tar -tJf "$bundle/lib.tar.xz" | sed 's/^/    in lib.tar.xz: /'
echo "gpu_bundle: $(size_mib "$bundle") MiB in all (limit $limit_mib MiB); binaries: ${targets[*]}"
if too_large; then
  echo "gpu_bundle: the bundle is over $limit_mib MiB even packed: it cannot travel" >&2
  exit 1
fi
[ ${#missing[@]} -eq 0 ] || echo "gpu_bundle: missing targets: ${missing[*]}"
