#!/usr/bin/env bash
# run_sink.sh: sink throughput to the Qdrant and Upstash stand-ins (tests/standins/) on loopback,
# vectors precomputed: `cdcvec bench sink` (per 1000-row transaction: hash lookup, upserts,
# commit), beside the stand-in alone (bodies serialised beforehand, batched: the server's
# ceiling) and the tutorial's own ingest (one point per call through the vendor's SDK), same
# stand-in process, same run.
#   usage: bench/run_sink.sh [ROWS (10000)] [TUTORIAL_ROWS (2000)] [REPEAT (1): cdcvec and the
#          stand-in alone, alternately, each on new ids]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
rows=${1:-10000} trows=${2:-2000} repeat=${3:-1}
bin=${CDCVEC_BIN:-$root/build/cdcvec}
PY=$(bash "$root/scripts/test-venv.sh")
tmp=$(mktemp -d)
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done; rm -rf "$tmp"' EXIT
echo "bench-key" >"$tmp/key"
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
qp=$(port) up=$(port)
"$PY" "$root/tests/standins/qdrant_standin.py" --port "$qp" --api-key-file "$tmp/key" >"$tmp/q.log" 2>&1 & pids+=($!)
"$PY" "$root/tests/standins/upstash_standin.py" --port "$up" --token-file "$tmp/key" >"$tmp/u.log" 2>&1 & pids+=($!)
for f in q u; do for _ in $(seq 600); do grep -q READY "$tmp/$f.log" && break; sleep 0.1; done; done
export QDRANT_URL=http://127.0.0.1:$qp QDRANT_COLLECTION=bench QDRANT_API_KEY_FILE=$tmp/key
export UPSTASH_VECTOR_REST_URL=http://127.0.0.1:$up UPSTASH_VECTOR_REST_TOKEN_FILE=$tmp/key UPSTASH_NS=bench_sink
echo "# $(date -u +%FT%TZ) $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores"
for s in qdrant upstash; do
  url=qdrant://127.0.0.1:$qp/bench
  [ $s = upstash ] && url=upstash://
  for r in $(seq "$repeat"); do
    CDCVEC_LOG=warn "$bin" bench sink --sink "$url" --rows "$rows" --first-id $((2 * r * rows + 1))
    "$PY" "$root/bench/sink_anchor.py" raw $s "$rows" $(((2 * r + 1) * rows + 1))
  done
  "$PY" "$root/bench/sink_anchor.py" tutorial $s "$trows" 1
done
