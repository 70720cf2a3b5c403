#!/usr/bin/env bash
# Installs catdog with the lowest versions it claims (scripts/minimums.txt) in a fresh virtual
# environment outside the checkout, then runs the default test suite there.
#
#   scripts/check_minimums.sh [PYTEST_ARGS...]
#
# PYTHON picks the interpreter (default python3). MINIMUMS_VENV names the environment's folder,
# which is then kept; by default it is a temporary one, removed at the end.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-python3}
if [[ -n ${MINIMUMS_VENV:-} ]]; then
    venv=$MINIMUMS_VENV
else
    scratch=$(mktemp -d)
    trap 'rm -rf "$scratch"' EXIT
    venv=$scratch/venv
fi

"$python" -m venv "$venv"
"$venv/bin/python" -m pip install -q --upgrade pip
# Wheels only: an old release without a wheel for this Python is an answer, not a build to attempt.
"$venv/bin/python" -m pip install -q --only-binary :all: -c "$root/scripts/minimums.txt" -e "$root[test]"
"$venv/bin/python" -m pip freeze --exclude-editable \
    | grep -iE '^(tensorflow-cpu|keras|numpy|pillow|simplejpeg|opencv|click|pyyaml|tqdm|matplotlib|tf2onnx|onnx|starlette|uvicorn|python-multipart|cleanlab|imagehash|optuna|pytest|jax|setuptools)'
cd "$root"
"$venv/bin/python" -m pytest "$@"
