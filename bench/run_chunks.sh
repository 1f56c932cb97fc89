#!/usr/bin/env bash
# run_chunks.sh (`cdcvec bench chunks` runs it): long texts with chunking on and off, in one run,
# on a private PostgreSQL (issue 25).
#   (1) backfill of DOCS generated long documents (tests/chunk_workload.py, CW_PARAS paragraphs:
#       default 10 to 20, about 4500 characters, 4.7 chunks of 256 each) with chunking off (each
#       embedded from its first 256 tokens) and on (--chunk-max-tokens 256 --chunk-overlap 32),
#       each into a store database of its own: rows/s and chunks/s
#   (2) 1,000 one-sentence edits (each of a different document when DOCS >= 1000) streamed to
#       the running chunked sync: chunks embedded (cdcvec_chunks_embedded_total) and seconds
#       until the store has every edit, against re-embedding the whole edited documents
#       (`cdcvec backfill --force 1` into the same store afterwards: every chunk of every
#       document; the edited documents' share of it)
#   usage: bash bench/run_chunks.sh [DOCS]      (env: BUILD_DIR, CDCVEC_BENCH_PORT, CW_PARAS,
#          THREADS: the model's CPU threads, default 2)
set -euo pipefail
. "$(dirname "$0")/../scripts/pg_lib.sh"
DOCS=${1:-1000}
EDITS=${EDITS:-1000}
PORT=${CDCVEC_BENCH_PORT:-56532}
THREADS=${THREADS:-2}
export CW_PARAS=${CW_PARAS:-10,20}
[ -x "$bin" ] || { cmake -S . -B "$BUILD_DIR" >/dev/null && cmake --build "$BUILD_DIR" -j"$(nproc)" >/dev/null; }
pg_private bench-chunks-pg
DB=$(bash scripts/pg.sh start "$pgdir" "$PORT")
for d in off on; do q "CREATE DATABASE chunks_$d"; psql -qAtX "${DB%/*}/chunks_$d" -c "CREATE EXTENSION vector"; done
q "CREATE TABLE docs (id int PRIMARY KEY, body text NOT NULL)"
python3 tests/chunk_workload.py load docs "$DOCS" 1 >"$pgdir/load.sql"
python3 tests/chunk_workload.py edits docs "$DOCS" "$EDITS" 1 >"$pgdir/edits.sql"
psql -qX -v ON_ERROR_STOP=1 "$DB" -f "$pgdir/load.sql" >/dev/null
echo "# cdcvec bench chunks: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores, $(date -u +'%F %H:%M UTC'), load average $(cut -d' ' -f1 /proc/loadavg)"
echo "# $DOCS documents, $(q "SELECT round(avg(length(body))) FROM docs") characters on average; --threads $THREADS"

metric() { curl -s "http://127.0.0.1:$1/metrics" | awk -v m="$2" '$1 == m {print $2}'; }
backfilled() { [ "$(psql -qAtX "$1" -c "SELECT coalesce((SELECT bool_and(backfill_done) FROM cdcvec.state), false)" 2>/dev/null)" = t ]; }
# (1) backfill, chunking off then on; the chunked sync keeps running for (2)
for mode in off on; do
  sink=${DB%/*}/chunks_$mode
  opts=()
  [ $mode = on ] && opts=(--chunk-max-tokens 256 --chunk-overlap 32)
  hp=$((PORT + 1))
  [ $mode = on ] && hp=$((PORT + 2))
  t0=$(now_ms)
  CDCVEC_LOG=${CDCVEC_LOG:-warn} "$bin" sync --source "$DB" --table public.docs --text-column body --sink "$sink" \
    --threads "$THREADS" --batch-ms 20 --http 127.0.0.1:$hp "${opts[@]}" 2>"$pgdir/sync-$mode.log" &
  pid=$!
  until backfilled "$sink"; do kill -0 $pid || { tail "$pgdir/sync-$mode.log"; exit 1; }; sleep 0.2; done
  t1=$(now_ms)
  chunks=$(psql -qAtX "$sink" -c "SELECT count(*) FROM cdcvec.public_docs")
  printf 'backfill, chunking %-3s: %d rows, %d vectors in %.1f s = %.2f rows/s, %.1f chunks/s\n' $mode "$DOCS" \
    "$chunks" "$(calc "($t1 - $t0) / 1000")" "$(calc "$DOCS * 1000 / ($t1 - $t0)")" "$(calc "$chunks * 1000 / ($t1 - $t0)")"
  [ $mode = off ] && { truncated=$(metric $hp 'cdcvec_texts_truncated_total{table="public.docs"}'); kill -TERM $pid; wait $pid || true; }
  [ $mode = off ] && echo "  (chunking off: ${truncated:-?} of $DOCS texts embedded from their first 256 tokens only)"
done
on_pid=$pid
# the HNSW index is built once the backfill is done: let it finish before timing the edits
until [ "$(psql -qAtX "${DB%/*}/chunks_on" -c "SELECT count(*) FROM pg_indexes WHERE schemaname = 'cdcvec' AND indexdef LIKE '%hnsw%'")" = 1 ]; do sleep 0.2; done

# (2) 1,000 one-sentence edits, streamed
e0=$(metric $((PORT + 2)) cdcvec_chunks_embedded_total)
k0=$(metric $((PORT + 2)) cdcvec_chunks_kept_total)
t0=$(now_ms)
psql -qX -v ON_ERROR_STOP=1 "$DB" -f "$pgdir/edits.sql" >/dev/null
# every document's stored text hash is its current text's (edits are in id order of a shuffle: all of them)
psql -qAtX "$DB" -c "COPY (SELECT id, encode(sha256(convert_to(body, 'UTF8')), 'hex') FROM docs) TO STDOUT" >"$pgdir/want.txt"
until [ "$(psql -qAtX "${DB%/*}/chunks_on" -c "COPY (SELECT DISTINCT id, encode(text_hash, 'hex') FROM cdcvec.public_docs ORDER BY 1) TO STDOUT" | sort | md5sum)" = "$(sort "$pgdir/want.txt" | md5sum)" ]; do
  kill -0 $on_pid
  sleep 0.1
done
t1=$(now_ms)
e1=$(metric $((PORT + 2)) cdcvec_chunks_embedded_total)
k1=$(metric $((PORT + 2)) cdcvec_chunks_kept_total)
edited=$(sort -u <(grep -o 'WHERE id = [0-9]*' "$pgdir/edits.sql") | wc -l)
printf 'edits (chunked sync, streamed): %d one-sentence edits of %d documents: %d chunks embedded, %d kept, %.1f s (edits committed to all searchable)\n' \
  "$EDITS" "$edited" "$(calc "$e1 - $e0")" "$(calc "$k1 - $k0")" "$(calc "($t1 - $t0) / 1000")"
kill -TERM $on_pid
wait $on_pid || true
# the whole documents re-embedded: every chunk of each (--force 1: the stored chunks are not looked at)
t0=$(now_ms)
CDCVEC_LOG=${CDCVEC_LOG:-warn} "$bin" backfill --source "$DB" --table public.docs --text-column body \
  --sink "${DB%/*}/chunks_on" --threads "$THREADS" --chunk-max-tokens 256 --chunk-overlap 32 --force 1 \
  2>"$pgdir/whole.log" || { tail "$pgdir/whole.log"; exit 1; }
t1=$(now_ms)
wchunks=$(psql -qAtX "${DB%/*}/chunks_on" -c "SELECT count(*) FROM cdcvec.public_docs WHERE id IN ($(grep -o 'WHERE id = [0-9]*' "$pgdir/edits.sql" | cut -d' ' -f4 | sort -un | paste -sd,))")
all=$(psql -qAtX "${DB%/*}/chunks_on" -c "SELECT count(*) FROM cdcvec.public_docs")
printf 'whole documents re-embedded (backfill --force 1, every chunk of every document): %d chunks in %.1f s; of them the %d edited documents: %d chunks, %.1f s at that rate\n' \
  "$all" "$(calc "($t1 - $t0) / 1000")" "$edited" "$wchunks" "$(calc "($t1 - $t0) / 1000 * $wchunks / $all")"
