#!/usr/bin/env bash
# Installs the Debian packages effnet builds, tests and trains with -- only the missing ones, so
# a second run takes a second -- and Keras with a CPU backend (JAX) from PyPI in a virtual
# environment ($EFFNET_KERAS_VENV, default /opt/effnet-keras: about 150 MB to download), the
# reference tests/parity_keras.py checks `effnet import --from keras` against. Runs apt-get
# through sudo when not root.
set -euo pipefail

packages=(
  cmake make gcc                         # the build (gcc brings the sanitizer runtimes)
  libdnnl-dev                            # oneDNN: CPU convolutions and matrix products
  zlib1g-dev libpng-dev libjpeg-dev      # decoding: IDX.gz, PNG, JPEG (libjpeg-turbo)
  libhdf5-dev                            # checkpoints
  protobuf-c-compiler libprotobuf-c-dev libonnx-dev # ONNX export: protoc-c, protobuf-c, onnx.proto
  libopenmpi-dev openmpi-bin             # multi-process training
  dataset-fashion-mnist                  # the built-in default dataset
  python3-numpy python3-h5py python3-pil python3-torchvision # references for parity tests
  python3-venv                           # the Keras environment below
)
keras_venv=${EFFNET_KERAS_VENV:-/opt/effnet-keras}
keras_pins=(keras==3.15.1 "jax[cpu]==0.10.2")
sudo=""
[ "$(id -u)" -eq 0 ] || sudo=sudo

install_keras() {
  if KERAS_BACKEND=jax "$keras_venv/bin/python" -c "import keras, jax" 2>/dev/null; then return; fi
  echo "install-deps: installing ${keras_pins[*]} into $keras_venv"
  $sudo /usr/bin/python3 -m venv "$keras_venv"
  $sudo "$keras_venv/bin/pip" install -q "${keras_pins[@]}"
}

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages are installed"
else
  echo "install-deps: installing ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi
install_keras
echo "install-deps: done"
