#!/usr/bin/env bash
# GPU check for fastinit's CUDA backend: run on a machine with an NVIDIA GPU.
#
#   bash bench/gpu_check.sh [OUT_DIR]          (default OUT_DIR: gpu-results/)
#
# Steps (each with its own time limit; the whole script stays under 5 minutes):
#   1. record the machine (nvidia-smi, python, pip freeze);
#   2. install what is missing: the project's runtime and test dependencies
#      (the project itself runs from this checkout through PYTHONPATH) and the
#      CUDA toolkit wheels numba-cuda needs (numba-cuda[cu12] or [cu13], chosen
#      from the driver's CUDA version). Offline machines: put wheels in a folder and
#      set WHEELS=/path/to/wheels (pip then uses only that folder). Set
#      PYTHON=python3.12 to choose the interpreter; VENV (default .venv-gpu)
#      is where a virtual environment is made when the interpreter lacks the
#      dependencies. SKIP_INSTALL=1 uses the interpreter as it is;
#   3. check that Numba sees the GPU and can compile and run a kernel
#      (a failure here stops the script: nothing after it could mean anything);
#   4. the CUDA correctness tests on the real device:
#      FASTINIT_TEST_GPU=1 pytest tests/test_cuda.py tests/test_kernels.py -k cuda;
#   5. fastinit profile on numpy, cpu and cuda (MLP shapes, 1024^2 and 2048^2,
#      the training step), then numpy and cuda at 4096^2;
#   6. if CuPy imports (or installs), cuBLAS matmul GFLOP/s against ours;
#   7. OUT_DIR/summary.md with the two targets of the CUDA issue.
#
# Everything lands in OUT_DIR: gpu_check.log (all output), machine.txt,
# pytest.xml, profile*.{json,h5,png}, cublas.json, summary.md and STATUS
# ("OK" or "FAILED: <steps>"). Exit status 0 only when every step passed;
# a skipped CuPy comparison is reported, not a failure. Typically 3-4 minutes;
# each step has a time limit so a hang fails that step instead of the session.

set -uo pipefail

OUT="${1:-gpu-results}"
REPO="$(cd "$(dirname "$0")/.." && pwd)"
mkdir -p "$OUT" || { echo "gpu_check: cannot create $OUT" >&2; exit 1; }
OUT="$(cd "$OUT" && pwd)"
exec > >(tee "$OUT/gpu_check.log") 2>&1

PY="${PYTHON:-python3}"
VENV="${VENV:-$REPO/.venv-gpu}"
FAILED=()
START=$(date +%s)

log() { echo "[gpu_check +$(( $(date +%s) - START ))s] $*"; }
fail() { log "FAILED: $*"; FAILED+=("$1"); }
finish() {
    if [ ${#FAILED[@]} -eq 0 ]; then
        echo "OK" > "$OUT/STATUS"
        log "all steps passed; results in $OUT"
        exit 0
    fi
    echo "FAILED: ${FAILED[*]}" > "$OUT/STATUS"
    log "FAILED steps: ${FAILED[*]} (see $OUT/gpu_check.log)"
    exit 1
}

cd "$REPO" || exit 1
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
unset NUMBA_ENABLE_CUDASIM
export FASTINIT_TEST_GPU=1

# ---------------------------------------------------------------- 1. machine
log "machine"
{
    date -u
    uname -a
    nvidia-smi 2>&1 || echo "nvidia-smi: not available"
    "$PY" --version 2>&1
} > "$OUT/machine.txt"
cat "$OUT/machine.txt"
CUDA_MAJOR="$(nvidia-smi 2>/dev/null | sed -n 's/.*CUDA Version: *\([0-9]*\).*/\1/p' | head -n1)"
[ -z "$CUDA_MAJOR" ] && CUDA_MAJOR=12
[ "$CUDA_MAJOR" -gt 13 ] && CUDA_MAJOR=13

# ---------------------------------------------------------------- 2. install
PIP_ARGS=(--quiet --disable-pip-version-check)
if [ -n "${WHEELS:-}" ]; then
    PIP_ARGS+=(--no-index --find-links "$WHEELS")
fi
DEPS=(numpy numba numba-cuda h5py matplotlib tqdm pytest pytest-benchmark hypothesis)
have_deps() { "$1" -c "import numpy, numba, numba.cuda, h5py, matplotlib, tqdm, pytest" >/dev/null 2>&1; }

if [ "${SKIP_INSTALL:-0}" = "1" ]; then
    log "SKIP_INSTALL=1: using $PY as it is"
elif have_deps "$PY"; then
    log "$PY already has the dependencies"
    timeout 120 "$PY" -m pip install "${PIP_ARGS[@]}" "numba-cuda[cu${CUDA_MAJOR}]" \
        || log "note: numba-cuda[cu${CUDA_MAJOR}] not installed (offline?); relying on the installed toolkit"
else
    # The project itself is imported from the checkout (PYTHONPATH), so only its
    # dependencies are installed: no build step, nothing but wheels needed.
    log "creating $VENV and installing the dependencies (pip ${PIP_ARGS[*]})"
    if "$PY" -m venv --system-site-packages "$VENV" \
        && timeout 180 "$VENV/bin/python" -m pip install "${PIP_ARGS[@]}" "${DEPS[@]}"; then
        PY="$VENV/bin/python"
        timeout 120 "$PY" -m pip install "${PIP_ARGS[@]}" "numba-cuda[cu${CUDA_MAJOR}]" \
            || log "note: numba-cuda[cu${CUDA_MAJOR}] not installed; relying on a system CUDA toolkit"
    else
        fail install
        log "cannot install the dependencies (no network? set WHEELS=/folder/of/wheels)"
        finish
    fi
fi
"$PY" -m pip freeze > "$OUT/pip-freeze.txt" 2>&1 || true

# ---------------------------------------------------------------- 3. device
log "device check"
if ! timeout 120 "$PY" - <<'EOF'
import numpy as np
from numba import cuda
if not cuda.is_available():
    raise SystemExit("numba.cuda.is_available() is False: no usable GPU/driver")
cuda.detect()
@cuda.jit
def add_one(x):
    i = cuda.grid(1)
    if i < x.size:
        x[i] += 1
d = cuda.to_device(np.zeros(1000, np.float32))
add_one[8, 128](d)
assert (d.copy_to_host() == 1).all(), "a trivial kernel gave wrong results"
print("device check: a kernel compiled and ran")
EOF
then
    fail device
    finish
fi

# ---------------------------------------------------------------- 4. tests
log "CUDA correctness tests on the device"
test_files=(tests/test_cuda.py)
[ -f tests/test_kernels.py ] && test_files+=(tests/test_kernels.py)
timeout 150 "$PY" -m pytest "${test_files[@]}" -k cuda -q -p no:cacheprovider \
    --junitxml="$OUT/pytest.xml" || fail tests

# ---------------------------------------------------------------- 5. profile
log "profile: numpy, cpu, cuda (MLP shapes, 1024^2, 2048^2, training step)"
timeout 150 "$PY" -m fastinit profile --backends numpy cpu cuda --sizes 1024 2048 --budget 0.3 \
    --out "$OUT/profile.h5" --json "$OUT/profile.json" --plot "$OUT/profile.png" || fail profile
log "profile: numpy, cuda at 4096^2"
timeout 90 "$PY" -m fastinit profile --backends numpy cuda --sizes 4096 --budget 0.5 \
    --out "$OUT/profile-4096.h5" --json "$OUT/profile-4096.json" --plot "$OUT/profile-4096.png" \
    || fail profile-4096

# ---------------------------------------------------------------- 6. cuBLAS
log "cuBLAS comparison through CuPy"
if ! "$PY" -c "import cupy" >/dev/null 2>&1; then
    timeout 90 "$PY" -m pip install "${PIP_ARGS[@]}" "cupy-cuda${CUDA_MAJOR}x" >/dev/null 2>&1 \
        || log "CuPy not installable here: cuBLAS comparison skipped"
fi
timeout 90 "$PY" bench/gpu_cublas.py "$OUT/cublas.json" 1024 2048 4096
rc=$?
if [ $rc -eq 2 ]; then
    log "cuBLAS comparison skipped (CuPy unavailable)"
elif [ $rc -ne 0 ]; then
    fail cublas
fi

# ---------------------------------------------------------------- 7. summary
log "summary"
"$PY" bench/gpu_summary.py "$OUT" || fail summary
finish
