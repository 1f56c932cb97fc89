#!/usr/bin/env bash
# run_sink_pg.sh: the pgvector sink alone (`cdcvec bench sink`: precomputed vectors, the model
# not in the loop), against a private PostgreSQL 15 + pgvector (scripts/pg.sh), beside
# PostgreSQL's own ceiling for the same rows in the same run:
#   1. bulk, no index (a backfill): ROWS rows in transactions of 512, 1 and 2 writers; anchor:
#      psql's COPY (FORMAT BINARY) of the same rows straight into an empty table of the same
#      shape (no conflict handling, no hash lookups: what the server takes at best);
#   2. streaming into the indexed table: ROWS rows loaded, the HNSW index built as after a
#      backfill (its build time printed), then STREAM new rows in transactions of 100 with 1, 2
#      and 4 writers; anchor: one psql session inserting as many new rows (other vectors of the
#      same generator, read from a table), in transactions of 100, into the same index.
#   usage: bench/run_sink_pg.sh [ROWS (100000)] [STREAM (1000)] [REPEAT (3)]
#   CDCVEC_BIN (default build/cdcvec); the old binary to compare with: OLD_BIN (optional)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
rows=${1:-100000} stream=${2:-1000} repeat=${3:-3}
bin=${CDCVEC_BIN:-$root/build/cdcvec}
work=$(bash "$root/scripts/pg.sh" dir "$(mktemp -d /tmp/cdcvec-sinkpg.XXXXXX)")
trap 'bash "$root/scripts/pg.sh" stop "$work/pg" >/dev/null 2>&1; rm -rf "$work"' EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
DB=$(bash "$root/scripts/pg.sh" start "$work/pg" "$port")
q() { psql -qXAt "$DB" -c "$1"; }
T=cdcvec.public_bench_sink
fresh() { q "DROP TABLE IF EXISTS $T; DROP TABLE IF EXISTS anchor; DELETE FROM cdcvec.state" 2>/dev/null || true; }
bench() { CDCVEC_LOG=warn "$bin" bench sink --sink "$DB" "$@"; }
rate() { python3 -c 'import json,sys; print(json.loads(sys.stdin.read())["points_per_s"])'; }
now() { date +%s.%N; }

echo "# $(date -u +%FT%TZ) $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores," \
  "load $(cut -d' ' -f1-3 /proc/loadavg); PostgreSQL $(q 'SHOW server_version'), pgvector" \
  "$(q "SELECT default_version FROM pg_available_extensions WHERE name = 'vector'"), shared_buffers" \
  "$(q 'SHOW shared_buffers'), max_parallel_workers $(q 'SHOW max_parallel_workers')"

echo "## bulk: $rows rows, transactions of 512, no index (rows/s)"
for r in $(seq "$repeat"); do
  line="run $r:"
  for w in 1 2; do
    fresh
    line="$line writers=$w $(bench --rows "$rows" --batch-rows 512 --writers "$w" | rate)"
  done
  if [ -n "${OLD_BIN:-}" ]; then
    fresh
    line="$line old=$(CDCVEC_LOG=warn "$OLD_BIN" bench sink --sink "$DB" --rows "$rows" --batch-rows 512 | rate)"
  fi
  psql -qX "$DB" -c "\\copy (SELECT * FROM $T) TO '$work/rows.bin' (FORMAT BINARY)"
  q "CREATE TABLE anchor (LIKE $T INCLUDING ALL)"
  t0=$(now)
  psql -qX "$DB" -c "\\copy anchor FROM '$work/rows.bin' (FORMAT BINARY)"
  t1=$(now)
  echo "$line anchor(psql COPY BINARY)=$(python3 -c "print(round($rows / ($t1 - $t0)))")"
done

echo "## streaming: $stream new rows in transactions of 100 into a $rows-row HNSW index (rows/s)"
fresh
# the anchor's rows: new vectors (not copies of indexed ones), one slice per run, in a table of
# their own written before the index exists
bench --table bench_anchor --rows $((stream * repeat)) --first-id 900000001 --batch-rows 512 >/dev/null
bench --prefill "$rows" --index 1 --rows 100 --batch-rows 100 |
  python3 -c 'import json,sys; d=json.loads(sys.stdin.read()); print("prefill %d rows/s, index build %.1f s" % (d["prefill_rows_per_s"], d["index_build_s"]))'
q "CREATE TABLE anchor AS SELECT id - 900000000 AS id, embedding, payload, text_hash, model, source_lsn FROM cdcvec.public_bench_anchor"
next=$((rows * 10))
for r in $(seq "$repeat"); do
  line="run $r:"
  for w in 1 2 4; do
    line="$line writers=$w $(bench --rows "$stream" --batch-rows 100 --first-id "$next" --writers "$w" | rate)"
    next=$((next + stream))
  done
  if [ -n "${OLD_BIN:-}" ]; then
    line="$line old=$(CDCVEC_LOG=warn "$OLD_BIN" bench sink --sink "$DB" --rows "$stream" --batch-rows 100 --first-id "$next" | rate)"
    next=$((next + stream))
  fi
  # anchor: one session, the same rows (new ids), transactions of 100
  sql=""
  for a in $(seq $(((r - 1) * stream)) 100 $((r * stream - 1))); do
    sql="$sql BEGIN; INSERT INTO $T SELECT id + $next, embedding, payload, text_hash, model, source_lsn, now() FROM anchor WHERE id > $a AND id <= $((a + 100)); COMMIT;"
  done
  t0=$(now)
  psql -qX "$DB" -c "$sql" >/dev/null
  t1=$(now)
  next=$((next + stream))
  echo "$line anchor(psql INSERT, 1 session)=$(python3 -c "print(round($stream / ($t1 - $t0)))")"
done
