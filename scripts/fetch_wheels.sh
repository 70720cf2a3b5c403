#!/usr/bin/env bash
# Fill .whl/ (ignored by git) with the wheels scripts/gpu_check.sh installs on a GPU machine
# that has no network: Keras and catdog's other light dependencies, for Linux x86-64.
#
# Run it on any machine with network access to PyPI, in the repo root:
#   bash scripts/fetch_wheels.sh              # for Python 3.12 (the GPU machine's)
#   PY_VERSION=3.11 bash scripts/fetch_wheels.sh
#
# NumPy, JAX and CUDA are not fetched: the GPU machine has them, and a second NumPy would
# shadow the one its JAX was built against. gpu_check.sh installs only what fails to import.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
PY_VERSION=${PY_VERSION:-3.12}
DEST=.whl
mkdir -p "$DEST"

# Versions as tested with catdog; keras's own dependencies follow it.
PACKAGES=(
  keras==3.15.1 namex optree absl-py rich pygments markdown-it-py mdurl h5py ml-dtypes packaging
  typing-extensions pillow click pyyaml tqdm simplejpeg
  matplotlib contourpy cycler fonttools kiwisolver pyparsing python-dateutil six
  # 61 MB alone: with it .whl/ outgrows a 64 MiB carry limit, so fetch it only where that is no limit
  ${WITH_OPENCV:+opencv-python-headless}
  setuptools  # builds catdog's own wheel (pyproject asks for setuptools>=68) without the network
)
PLATFORMS=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_24_x86_64 manylinux_2_17_x86_64 \
         manylinux2014_x86_64 manylinux1_x86_64; do
  PLATFORMS+=(--platform "$p")
done

for pkg in "${PACKAGES[@]}"; do
  "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version "$PY_VERSION" --implementation cp \
    "${PLATFORMS[@]}" -d "$DEST" "$pkg"
done
ls -1 "$DEST"
du -sh "$DEST"
