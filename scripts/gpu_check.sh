#!/usr/bin/env bash
# GPU check: does catdog train on the GPU, and how much faster than on the same machine's CPU?
#
# For a Linux machine with an NVIDIA GPU, JAX with CUDA installed, no TensorFlow and no network.
# In under 5 minutes it:
#   1. installs, from the wheels in .whl/ (fill it first: bash scripts/fetch_wheels.sh), only the
#      catdog dependencies that fail to import (Keras and friends), then catdog itself --no-deps,
#      all into a scratch folder on PYTHONPATH (the machine's own packages stay untouched);
#   2. prints `catdog info` under KERAS_BACKEND=jax (GPU name, memory, precision, XLA);
#   3. trains the article model and the deeper `cnn` model for a fixed number of steps on
#      synthetic photos through catdog's own cache (scripts/gpu_bench.py), on the GPU and then
#      on the CPU (JAX_PLATFORMS=cpu), and prints images per second side by side with the
#      precision each run used.
# Without a GPU it says so and still runs the CPU half, which is how it is tested.
#
# Usage (repo root):  bash scripts/gpu_check.sh
# Knobs (environment): SIZE=300 BATCH=128 GPU_STEPS=50 CPU_STEPS=2 MODELS="article cnn" PYTHON=python3
#   BUDGET=280 (seconds for the whole script: a run that would overrun it is cut short or skipped)
#   e.g. a quick run on a laptop: SIZE=64 BATCH=32 CPU_STEPS=2 bash scripts/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
SIZE=${SIZE:-300}
BATCH=${BATCH:-128}
GPU_STEPS=${GPU_STEPS:-50}
CPU_STEPS=${CPU_STEPS:-2}
BUDGET=${BUDGET:-280}
MODELS=${MODELS:-article cnn}
SITE=${CATDOG_SITE:-/tmp/catdog-site}
WORK=${CATDOG_BENCH_DIR:-/tmp/catdog-bench}
RESULTS="$WORK/results.jsonl"
export KERAS_BACKEND=jax TF_CPP_MIN_LOG_LEVEL=2 PYTHONUNBUFFERED=1
export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
export CATDOG_CACHE="$WORK/cache"
T0=$SECONDS
mkdir -p "$SITE" "$WORK"
: > "$RESULTS"

echo "== 1. install (offline, from .whl/)"
# module:wheel name. Only what fails to import is installed, so nothing the machine has is shadowed.
missing=()
for pair in keras:keras namex:namex optree:optree absl:absl_py rich:rich pygments:pygments \
            markdown_it:markdown_it_py mdurl:mdurl h5py:h5py ml_dtypes:ml_dtypes packaging:packaging \
            typing_extensions:typing_extensions PIL:pillow click:click yaml:pyyaml tqdm:tqdm \
            simplejpeg:simplejpeg cv2:opencv_python_headless matplotlib:matplotlib contourpy:contourpy \
            cycler:cycler fontTools:fonttools kiwisolver:kiwisolver pyparsing:pyparsing \
            dateutil:python_dateutil six:six; do
  "$PY" -c "import ${pair%%:*}" 2>/dev/null || missing+=("${pair#*:}")
done
if ((${#missing[@]})); then
  echo "installing ${missing[*]}"
  # By name from .whl/ only: pip picks the wheel that fits this Python, if .whl/ has one.
  "$PY" -m pip install -q --no-index --find-links .whl --no-deps --no-compile --target "$SITE" "${missing[@]}" ||
    { echo "a wheel is missing from .whl/: run bash scripts/fetch_wheels.sh where there is network"; exit 1; }
else
  echo "catdog's dependencies are already importable"
fi
# catdog itself, built offline (setuptools from .whl/ when the machine's is too old or absent).
if "$PY" -m pip install -q --no-index --find-links .whl --no-deps --no-compile --upgrade --target "$SITE" . 2>"$WORK/pip.log"; then
  echo "installed catdog into $SITE"
else
  echo "could not build catdog offline ($(tail -n 1 "$WORK/pip.log")); using the source tree"
  export PYTHONPATH="$PWD:$PYTHONPATH"
fi
REPO=$PWD
# From here on Python starts in $WORK, so `import catdog` finds the installed copy, not ./catdog.
cd "$WORK"
"$PY" -c "import catdog, keras, jax; print('catdog', catdog.__version__, 'from', catdog.__file__, '| keras', keras.__version__, '| jax', jax.__version__)" || exit 1

echo "== 2. catdog info (KERAS_BACKEND=jax)"
"$PY" -c "from catdog.cli import main; main()" info || exit 1
GPU=$("$PY" -c "import jax; print(sum(d.platform == 'gpu' for d in jax.devices()))" 2>/dev/null || echo 0)
[[ "$GPU" =~ ^[0-9]+$ ]] || GPU=0

bench() {  # label, timeout, extra env..., -- bench args...
  local label=$1 limit=$2; shift 2
  local envs=()
  while [[ $1 != -- ]]; do envs+=("$1"); shift; done; shift
  # Keep the whole script inside BUDGET seconds, whatever the machine.
  local left=$((BUDGET - (SECONDS - T0) - 10))
  ((left < limit)) && limit=$left
  if ((limit < 20)); then echo "-- $label: skipped, the ${BUDGET} s budget is spent"; return; fi
  echo "-- $label"
  if ! env "${envs[@]}" timeout "$limit" "$PY" "$REPO/scripts/gpu_bench.py" --workdir "$WORK" --size "$SIZE" \
         --batch "$BATCH" "$@" 2>"$WORK/last.err" | tee -a "$RESULTS"; then
    echo "   failed or timed out after $limit s; last lines:"; tail -n 5 "$WORK/last.err" | sed 's/^/   /'
  fi
}

echo "== 3. training throughput, ${SIZE}x${SIZE}, batch $BATCH"
# The GPU runs first: they are the point, and they are quick.
if ((GPU > 0)); then
  for model in $MODELS; do
    bench "$model on the GPU ($GPU_STEPS steps)" 120 CUDA_VISIBLE_DEVICES="${CUDA_VISIBLE_DEVICES:-0}" -- \
      --model "$model" --steps "$GPU_STEPS" --warmup 5
  done
fi
for model in $MODELS; do
  bench "$model on the CPU ($CPU_STEPS steps)" 120 JAX_PLATFORMS=cpu -- --model "$model" --steps "$CPU_STEPS" --warmup 1
done
((GPU > 0)) || echo "(no GPU seen by JAX on this machine: CPU figures only)"

echo "== results"
"$PY" - "$RESULTS" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
print(f"{'model':<8} {'device':<34} {'precision':<15} {'XLA':<4} {'images/s':>10}")
for r in rows:
    print(f"{r['model']:<8} {r['device'][:34]:<34} {r['precision']:<15} {'on' if r['xla'] else 'off':<4} "
          f"{r['images_per_s']:>10.1f}")
for model in dict.fromkeys(r["model"] for r in rows):
    gpu = [r["images_per_s"] for r in rows if r["model"] == model and r["gpu"]]
    cpu = [r["images_per_s"] for r in rows if r["model"] == model and not r["gpu"]]
    if gpu and cpu:
        print(f"{model}: GPU {gpu[0] / cpu[0]:.1f}x the CPU")
EOF
echo "done in $((SECONDS - T0)) s"
