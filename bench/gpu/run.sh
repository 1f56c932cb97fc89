#!/usr/bin/env bash
# run.sh (on the GPU machine, one device call): unpack the carried libraries into a private
# sysroot, build for Hopper, run the GPU tests, then the benchmark with sentence-transformers
# fp16 on the same GPU as the anchor. Logs go to $OUT (or ./gpu-out).
#   device call: bash bench/gpu/run.sh      with carry [".gpu"]
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-$PWD/gpu-out}
mkdir -p "$OUT"
SYSROOT=/tmp/cdcvec-sysroot
mkdir -p $SYSROOT
for f in .gpu/debs/*.deb; do dpkg-deb -x "$f" $SYSROOT 2>/dev/null || (cd $SYSROOT && ar p "$OLDPWD/$f" data.tar.xz | tar xJ); done
LIBDIR=$SYSROOT/usr/lib/x86_64-linux-gnu
# the .pc files name /usr; point them at the sysroot
mkdir -p $SYSROOT/pc
for pc in $LIBDIR/pkgconfig/*.pc $LIBDIR/openblas-pthread/pkgconfig/*.pc; do
  [ -f "$pc" ] && sed "s|^prefix=/usr|prefix=$SYSROOT/usr|; s|^libdir=/usr|libdir=$SYSROOT/usr|; s|^includedir=/usr|includedir=$SYSROOT/usr|" "$pc" >$SYSROOT/pc/$(basename "$pc")
done
export PKG_CONFIG_PATH=$SYSROOT/pc
export LD_LIBRARY_PATH=$LIBDIR:$LIBDIR/openblas-pthread:${LD_LIBRARY_PATH:-}
export CPATH=$SYSROOT/usr/include:$SYSROOT/usr/include/x86_64-linux-gnu/openblas-pthread
export CDCVEC_MODEL_DIR=$PWD/.gpu/model
{
  nvidia-smi -L
  cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 &&
    cmake --build build-gpu -j"$(nproc)" 2>&1 | tail -20
} 2>&1 | tee "$OUT/build.log"
(cd build-gpu && ctest -V -R "cuda|golden|cpu_ops" 2>&1) | tee "$OUT/tests.log" | grep -E "SKIPPED|cuda |golden|Passed|Failed|tests passed"
build-gpu/cdcvec bench embed --device cuda --threads "$(nproc)" --seconds 3 \
  --batches 1,8,64,256,1024,4096 --anchor "python3 bench/st_anchor.py" 2>&1 | tee "$OUT/bench.md"
