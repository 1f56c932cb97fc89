#!/bin/bash
# selftest.sh TEST_CUDA_OPS_SIM ATTENTION_CU: proof that the CPU execution layer can fail.
# attention.cu's last __syncthreads (the one that keeps a block from overwriting the shared
# key/value tile while other threads still read it) is skipped through CUDA_SIM_DROP_BARRIER;
# test_cuda_ops_sim must then fail the attention check, in forward and in reverse thread order.
set -u
bin=$1 src=$2
line=$(grep -n '__syncthreads()' "$src" | tail -1 | cut -d: -f1)
[ -n "$line" ] || { echo "no __syncthreads in $src"; exit 1; }
rc=0
for order in forward reverse; do
    out=$(CUDA_SIM_ORDER=$order CUDA_SIM_LEAKS=warn CUDA_SIM_DROP_BARRIER="$(basename "$src"):$line" "$bin" 2>&1)
    if echo "$out" | grep -q '^\[  FAILED  \] test_attention_and_pool'; then
        echo "ok: order=$order barrier $(basename "$src"):$line dropped -> attention fails:"
        echo "$out" | grep '^cuda attention' | head -3
    else
        echo "FAIL: order=$order: a missing barrier at $(basename "$src"):$line went unnoticed"
        echo "$out" | tail -20
        rc=1
    fi
done
exit $rc
