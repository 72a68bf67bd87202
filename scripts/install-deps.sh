#!/usr/bin/env bash
# Installs the Debian packages effnet builds, tests and trains with -- only the missing ones, so
# a second run takes a second. Runs apt-get through sudo when not root.
set -euo pipefail

packages=(
  cmake make gcc                         # the build (gcc brings the sanitizer runtimes)
  libdnnl-dev                            # oneDNN: CPU convolutions and matrix products
  zlib1g-dev libpng-dev libjpeg-dev      # decoding: IDX.gz, PNG, JPEG (libjpeg-turbo)
  libhdf5-dev                            # checkpoints
  libopenmpi-dev openmpi-bin             # multi-process training
  dataset-fashion-mnist                  # the built-in default dataset
  python3-numpy python3-h5py python3-pil python3-torchvision # references for parity tests
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages are installed"
  exit 0
fi
sudo=""
[ "$(id -u)" -eq 0 ] || sudo=sudo
echo "install-deps: installing ${missing[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
echo "install-deps: done"
