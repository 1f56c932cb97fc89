#!/usr/bin/env bash
# run.sh (on the GPU machine, one device call): builds the engine alone (-DCDCVEC_ENGINE_ONLY=ON)
# for Hopper against the prefix that bench/gpu/prepare.sh carried in .gpu/, then, each step under
# its own time limit: the engine's CPU unit tests, the CUDA op tests, the golden test on CUDA,
# `bench embed` beside sentence-transformers fp16 on the same GPU, `bench server`.
#   here:        bash bench/gpu/prepare.sh
#   device call: bash bench/gpu/run.sh       with carry [".gpu"], timeout_s 600
# Results under $OUT (or ./gpu-out): summary.txt (one line a step), env.txt, build.log,
# tests.log, bench_embed.md, bench_server.md. Exit: 0 all steps passed; 1 a step failed (the
# build failing stops the run); 77 no GPU: built and CPU-tested, GPU steps SKIPPED.
# Step limits in seconds (defaults sum to 570): CDCVEC_GPU_T_BUILD=240 _T_TESTS=90 _T_EMBED=180
# _T_SERVER=60; CDCVEC_GPU_SECONDS=2 (per measurement), CDCVEC_GPU_BATCHES=1,8,64,256,1024,4096.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
OUT=${OUT:-$ROOT/gpu-out}
mkdir -p "$OUT"
SUM=$OUT/summary.txt
: >"$SUM"
B=${CDCVEC_GPU_BUILD_DIR:-$ROOT/build-gpu}
DEPS=${CDCVEC_GPU_DEPS_DIR:-/tmp/cdcvec-gpu-deps}
SECS=${CDCVEC_GPU_SECONDS:-2}
BATCHES=${CDCVEC_GPU_BATCHES:-1,8,64,256,1024,4096}
failed=0

note() { echo "$*" | tee -a "$SUM"; }
die() {
  note "run.sh: FAILED: $*"
  exit 1
}
# step NAME LIMIT LOG CMD...: runs CMD under `timeout`, output to LOG (and the console); notes
# the result; a failure or a timeout is noted and counted, and the run goes on.
step() {
  local name=$1 limit=$2 log=$3 rc=0 t0=$SECONDS
  shift 3
  echo "== $name (limit ${limit}s): $*" | tee -a "$log"
  timeout -k 10 "$limit" "$@" >>"$log" 2>&1 || rc=$?
  tail -n 40 "$log"
  if [ $rc = 0 ]; then
    note "step=$name result=ok seconds=$((SECONDS - t0))"
  else
    [ $rc = 124 ] || [ $rc = 137 ] && rc="$rc (timed out after ${limit}s)"
    note "step=$name result=FAILED rc=$rc seconds=$((SECONDS - t0)) log=$(basename "$log")"
    failed=1
  fi
}

# what the machine has
NVCC=$(command -v nvcc || true)
[ -n "$NVCC" ] || [ ! -x /usr/local/cuda/bin/nvcc ] || NVCC=/usr/local/cuda/bin/nvcc
{
  date -u
  uname -a
  nvidia-smi -L 2>&1 || true
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv 2>&1 || true
  [ -n "$NVCC" ] && "$NVCC" --version | tail -2
  cmake --version | head -1
  cc --version | head -1
  ldd --version | head -1
  python3 -c 'import torch, sentence_transformers as s; print("torch", torch.__version__, "sentence-transformers", s.__version__)' 2>&1 | tail -1 || true
} >"$OUT/env.txt" 2>&1 || true
cat "$OUT/env.txt"
[ -n "$NVCC" ] || die "no nvcc on PATH nor in /usr/local/cuda/bin: the CUDA toolkit is needed"
[ -f .gpu/deps.tar.xz ] && [ -f .gpu/model/model.safetensors ] ||
  die ".gpu/deps.tar.xz or .gpu/model/ missing: run bash bench/gpu/prepare.sh here first and carry [\".gpu\"]"
glibc=$(ldd --version 2>/dev/null | head -1 | grep -oE '[0-9]+\.[0-9]+$' || echo 0.0)
[ "${glibc%%.*}" -gt 2 ] || [ "${glibc#*.}" -ge 34 ] ||
  die "glibc $glibc: the carried libraries (Debian 12's) need 2.34 or later"
GPU=1
nvidia-smi -L 2>/dev/null | grep -q '^GPU ' || GPU=0

# the carried prefix; LD_LIBRARY_PATH for the libraries OpenBLAS loads (libgfortran, libquadmath)
# and the toolkit's (CMake leaves its own implicit link folders out of the binaries' RUNPATH)
rm -rf "$DEPS" && mkdir -p "$DEPS" && tar -C "$DEPS" -xJf .gpu/deps.tar.xz
CUDA_ROOT=$(dirname "$(dirname "$(readlink -f "$NVCC")")")
export LD_LIBRARY_PATH=$DEPS/lib:$CUDA_ROOT/lib64:$CUDA_ROOT/targets/x86_64-linux/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export CDCVEC_MODEL_DIR=$ROOT/.gpu/model HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1

step build "${CDCVEC_GPU_T_BUILD:-240}" "$OUT/build.log" bash -c "
  set -e
  cmake -S . -B '$B' -DCMAKE_BUILD_TYPE=Release -DCDCVEC_ENGINE_ONLY=ON -DCMAKE_PREFIX_PATH='$DEPS' \
    -DCMAKE_CUDA_COMPILER='$NVCC' -DCMAKE_CUDA_ARCHITECTURES=${CDCVEC_GPU_ARCH:-90}
  cmake --build '$B' -j$(nproc)"
[ $failed = 0 ] || die "the build failed: see build.log"
for f in cdcvec tests/test_cuda_ops tests/test_embed_golden_cuda; do
  [ -x "$B/$f" ] || die "the build made no $f (CUDA not enabled? see build.log)"
done
"$B/cdcvec" --version >>"$OUT/build.log" 2>&1 || die "the built cdcvec does not start: $(tail -1 "$OUT/build.log")"
"$B/cdcvec" bench server --help >/dev/null 2>&1 || die "this build has no 'bench server' (nng not found: see build.log)"

# unit tests on the CPU (the carried libraries at work), then the GPU tests; ctest reports a GPU
# test's exit 77 as Skipped (no device)
step tests "${CDCVEC_GPU_T_TESTS:-90}" "$OUT/tests.log" bash -c "cd '$B' && ctest --output-on-failure \
  -R '^(test_cpu_ops|test_safetensors|test_tokenizer|test_blas|test_cuda_ops|test_embed_golden_cuda)\$'"
grep -E "Test +#[0-9]+:|tests passed|tests failed" "$OUT/tests.log" | sed 's/^/  /' | tee -a "$SUM" || true

if [ $GPU = 1 ] && grep -qE 'test_(cuda_ops|embed_golden_cuda) .*Skipped' "$OUT/tests.log"; then
  note "step=tests result=FAILED: nvidia-smi lists a GPU but the GPU tests skipped (no usable device: see tests.log)"
  failed=1
fi
if [ $GPU = 0 ]; then
  note "gpu=absent: bench_embed SKIPPED, bench_server SKIPPED (nvidia-smi lists no GPU)"
  [ $failed = 0 ] || exit 1
  exit 77
fi
step bench_embed "${CDCVEC_GPU_T_EMBED:-180}" "$OUT/bench_embed.md" "$B/cdcvec" bench embed --device cuda \
  --threads "$(nproc)" --seconds "$SECS" --batches "$BATCHES" --anchor "python3 bench/st_anchor.py"
step bench_server "${CDCVEC_GPU_T_SERVER:-60}" "$OUT/bench_server.md" "$B/cdcvec" bench server \
  --seconds "$SECS" --threads "$(nproc)"
cat "$SUM"
exit $failed
