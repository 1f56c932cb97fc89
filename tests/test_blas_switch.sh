#!/usr/bin/env bash
# test_blas_switch.sh: cdcvec never runs on a generic BLAS kernel when the CPU can do better.
#
# The unknown-CPU case (OpenBLAS falls back to its generic Prescott kernels) cannot be made
# on a CPU that OpenBLAS knows, and OpenBLAS's choice can only be forced through
# OPENBLAS_CORETYPE, which is also how a user chooses. So the test forces Prescott and sets
# CDCVEC_BLAS_SIMULATE_UNKNOWN_CPU=1, which tells cdcvec to take that variable as OpenBLAS's
# own choice: OpenBLAS really loads its Prescott kernels, and cdcvec must see it, switch
# (re-executing itself) and end on the vector kernel that /proc/cpuinfo's flags call for,
# with the same vectors. Without the hook, the user's OPENBLAS_CORETYPE is kept.
#   usage: test_blas_switch.sh path/to/cdcvec
set -u
bin=$1
flags=$(grep -m1 '^flags' /proc/cpuinfo)
has() { [[ " $flags " == *" $1 "* ]]; }
if ! has avx2 || ! has fma; then echo "SKIPPED: this CPU has no AVX2+FMA, no vector kernel to switch to"; exit 77; fi
if has avx512f && has avx512bw && has avx512dq && has avx512vl && has avx512cd; then
  if has avx512_bf16; then want=Cooperlake; else want=SkylakeX; fi
elif grep -q AuthenticAMD /proc/cpuinfo; then want=Zen; else want=Haswell; fi
fail=0
check() { if eval "$2"; then echo "ok   $1"; else echo "FAIL $1"; fail=1; fi; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
printf 'A desert planet and a spice.\nspace opera\n' >"$work/in.txt"

env -u OPENBLAS_CORETYPE CDCVEC_LOG=info "$bin" embed --format f32 -o "$work/plain.f32" "$work/in.txt" 2>"$work/plain.log"
check "no variables set: the model runs on the CPU's best kernel ($want)" 'grep -q "event=model_loaded.* blas_kernel=$want " "$work/plain.log"'

CDCVEC_LOG=info OPENBLAS_CORETYPE=Prescott CDCVEC_BLAS_SIMULATE_UNKNOWN_CPU=1 \
  "$bin" embed --format f32 -o "$work/sim.f32" "$work/in.txt" 2>"$work/sim.log"
check "OpenBLAS on Prescott by itself: cdcvec switches, and the model_loaded line says so" 'grep -q "event=model_loaded.* blas_kernel=$want blas_chosen_by=cdcvec openblas_default=Prescott" "$work/sim.log"'
check "... with the same vectors" 'cmp -s "$work/plain.f32" "$work/sim.f32" || python3 - "$work/plain.f32" "$work/sim.f32" <<PY
import struct, sys
a, b = (open(p, "rb").read() for p in sys.argv[1:3])
x, y = (struct.unpack("%df" % (len(v) // 4), v) for v in (a, b))
sys.exit(0 if len(x) == len(y) == 768 and max(abs(p - q) for p, q in zip(x, y)) < 1e-5 else 1)
PY'

CDCVEC_LOG=info OPENBLAS_CORETYPE=Haswell "$bin" embed --format f32 -o "$work/user.f32" "$work/in.txt" 2>"$work/user.log"
check "the user's OPENBLAS_CORETYPE is kept" 'grep -q "event=model_loaded.* blas_kernel=Haswell blas_chosen_by=user" "$work/user.log" && ! grep -q "chosen_by=cdcvec" "$work/user.log"'
out=$(OPENBLAS_CORETYPE=Prescott CDCVEC_BLAS_SIMULATE_UNKNOWN_CPU=1 "$bin" --version)
check "--version names the kernel and who chose it" 'echo "$out" | grep -q "kernel $want (chosen by cdcvec; OpenBLAS.s own choice Prescott"'
[ $fail -ne 0 ] && { echo "--- logs"; tail -3 "$work"/*.log; }
exit $fail
