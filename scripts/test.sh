#!/usr/bin/env bash
# The whole test suite from a fresh machine: missing system packages, a Release build with
# warnings as errors (and the CUDA backend, wherever the toolkit is, so that GPU code always
# compiles; its tests skip without a GPU), ctest; then the same suite built with AddressSanitizer
# and UndefinedBehaviorSanitizer (CPU only); then the fuzz targets for a few seconds each; before
# all, the code's layout (clang-format). Exits non-zero on the first failure.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
export EFFNET_KERAS_PYTHON=${EFFNET_KERAS_VENV:-/opt/effnet-keras}/bin/python # tests/parity_keras.py runs Keras there
export EFFNET_ONNX_PYTHON=${EFFNET_ONNX_VENV:-/opt/effnet-onnx}/bin/python # tests/export_onnx.py runs the runtimes there
export EFFNET_LITE_PYTHON=${EFFNET_LITE_VENV:-/opt/effnet-lite}/bin/python # tests/parity_lite.py's reference
jobs=$(nproc)

# The layout: every C and CUDA file as clang-format writes it with .clang-format (column 120).
git ls-files '*.c' '*.h' '*.cu' '*.cuh' | xargs clang-format --style=file --dry-run --Werror

cuda=()
if [ -x /usr/local/cuda/bin/nvcc ]; then
  cuda=(-DEFFNET_CUDA=ON -DCMAKE_CUDA_COMPILER=/usr/local/cuda/bin/nvcc)
fi
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DEFFNET_WERROR=ON "${cuda[@]}"
cmake --build build -j "$jobs"
(cd build && ctest --output-on-failure)

cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DEFFNET_SANITIZE=ON -DEFFNET_WERROR=ON -DEFFNET_CUDA=OFF
cmake --build build-asan -j "$jobs"
(cd build-asan && ctest --output-on-failure)

# The fuzz targets (the weights reader, the image decoders), built by clang with libFuzzer, ASan
# and UBSan, each fuzzed from its seeds for a fixed number of inputs (at most 60 seconds; tests/CMakeLists.txt).
cmake -S . -B build-fuzz -DCMAKE_C_COMPILER=clang -DEFFNET_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo -DEFFNET_WERROR=ON \
  -DEFFNET_CUDA=OFF -DEFFNET_MPI=OFF
cmake --build build-fuzz -j "$jobs" --target fuzz_seeds fuzz_weights fuzz_decode
(cd build-fuzz && ctest --output-on-failure -L fuzz)
echo "test.sh: all tests passed (Release, sanitizer and fuzz builds)"
