#!/usr/bin/env bash
# run_recall.sh: recall@10 and query latency of pgvector HNSW index configurations over real
# all-MiniLM-L6-v2 embeddings (issue 14: index parameters chosen by measurement).
#   usage: bash bench/run_recall.sh [N (100000)]
#   env: BUILD_DIR (build), CDCVEC_BIN, CDCVEC_BENCH_CACHE (~/.cache/cdcvec/bench),
#        CDCVEC_BENCH_PORT (56632), SHARED_BUFFERS (1GB), THREADS (nproc, for cdcvec embed)
#  (1) N corpus texts, 200 query texts and 500 insert texts, distinct, from bench/recall.py's
#      seeded generator; embedded with `cdcvec embed` once and cached by the texts' sha256
#  (2) a private PostgreSQL 15 + pgvector (scripts/pg.sh) with shared_buffers=$SHARED_BUFFERS,
#      items(id int primary key, embedding vector(384)) loaded with COPY
#  (3) bench/recall.py: exact top-10 per query (sequential scan), then per index configuration:
#      build (maintenance_work_mem=1GB), recall@10 and p50/p99 latency at each hnsw.ef_search,
#      median single-row INSERT; prints a Markdown table
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-100000}
case $N in '' | *[!0-9]*) echo "usage: bash bench/run_recall.sh [N (100000)]" >&2 && exit 2 ;; esac
BUILD_DIR=${BUILD_DIR:-build}
bin=${CDCVEC_BIN:-$PWD/$BUILD_DIR/cdcvec}
CACHE=${CDCVEC_BENCH_CACHE:-$HOME/.cache/cdcvec/bench}
PORT=${CDCVEC_BENCH_PORT:-56632}
SHARED_BUFFERS=${SHARED_BUFFERS:-1GB}
THREADS=${THREADS:-$(nproc)}

if [ ! -x "$bin" ]; then
  cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build "$BUILD_DIR" -j"$(nproc)" >/dev/null
fi
python3 models/fetch_model.py >&2
PY=$(bash scripts/test-venv.sh) # numpy and psycopg (tests/requirements-test.txt)
work=$(mktemp -d)
pgdir=
cleanup() {
  [ -n "$pgdir" ] && { bash scripts/pg.sh stop "$pgdir" 2>/dev/null || true; }
  case $pgdir in /tmp/cdcvec-pg.*) rm -rf "$pgdir" ;; esac
  rm -rf "$work"
}
trap cleanup EXIT

# (1) texts, and their embeddings from the cache or from cdcvec embed (minutes for 100,000 on a
# 2-core CPU). The cache file is named by the texts' hash, so a changed generator re-embeds.
"$PY" bench/recall.py texts "$N" "$work"
mkdir -p "$CACHE"
for set in corpus queries inserts; do
  sum=$(sha256sum "$work/$set.txt" | cut -c1-16)
  f=$CACHE/minilm-$sum.f32
  want=$(($(wc -l <"$work/$set.txt") * 384 * 4)) # float32 x the model's 384 dimensions per text
  if [ ! -f "$f" ] || [ "$(stat -c %s "$f")" -ne "$want" ]; then
    echo "embedding $(wc -l <"$work/$set.txt") $set texts with cdcvec embed --threads $THREADS ..." >&2
    t0=$(date +%s)
    "$bin" embed --format f32 --threads "$THREADS" -o "$f.tmp" "$work/$set.txt"
    mv "$f.tmp" "$f"
    echo "  $(($(date +%s) - t0)) s -> $f" >&2
  fi
  ln -s "$f" "$work/$set.f32"
done

# (2) the private server, shared_buffers sized to hold the table and an index (the default 128MB
# of scripts/pg.sh does not), so latencies measure the index rather than page reads
rm -rf "$BUILD_DIR/bench-recall-pg"
pgdir=$(bash scripts/pg.sh dir "$PWD/$BUILD_DIR/bench-recall-pg")
DB=$(bash scripts/pg.sh start "$pgdir" "$PORT")
psql -qAtX "$DB" -c "ALTER SYSTEM SET shared_buffers = '$SHARED_BUFFERS'"
bash scripts/pg.sh restart "$pgdir"
psql -qAtX "$DB" -c "CREATE EXTENSION vector"
pgv=$(psql -qAtX "$DB" -c "SELECT extversion FROM pg_extension WHERE extname = 'vector'")

cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')
echo "# $(date -u +%FT%TZ), $cpu, nproc $(nproc), pgvector $pgv, N=$N"
echo "# load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
"$PY" bench/recall.py run --db "$DB" --dir "$work"
echo "# load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
