#!/usr/bin/env bash
# run_pipeline.sh (`cdcvec bench pipeline` runs it): the CDC pipeline end to end on a private
# PostgreSQL, beside the raw embedding throughput of the same backend in the same run.
#   (1) backfill of a generated catalog (default 100,000 rows): rows/s
#   (2) raw embedding: `cdcvec embed` over the same kind of texts: sentences/s (the anchor)
#   (3) highest sustained rows/s: 6,000 pre-generated rows inserted as fast as PostgreSQL takes
#       them, in transactions of 100, until the sink has them all
#   (3b) the sink alone into the same indexed table (`cdcvec bench sink`): the other bound
#   (4) commit-to-searchable latency at a steady 50 rows/s: sink updated_at (the sink
#       transaction's start, just before its commit) minus the row's clock_timestamp() at insert
#   usage: bash bench/run_pipeline.sh [ROWS]      (env: BUILD_DIR, CDCVEC_BENCH_PORT)
set -euo pipefail
. "$(dirname "$0")/../scripts/pg_lib.sh"
ROWS=${1:-100000}
PORT=${CDCVEC_BENCH_PORT:-56432}
[ -x "$bin" ] || { cmake -S . -B "$BUILD_DIR" >/dev/null && cmake --build "$BUILD_DIR" -j"$(nproc)" >/dev/null; }
pg_private bench-pg
DB=$(bash scripts/pg.sh start "$pgdir" "$PORT")
q "CREATE EXTENSION vector"
q "CREATE TABLE catalog (id bigserial PRIMARY KEY, description text NOT NULL, price numeric, created timestamptz NOT NULL DEFAULT clock_timestamp())"
psql -qX -v ON_ERROR_STOP=1 "$DB" -f bench/rdesc.sql >/dev/null
q "INSERT INTO catalog (description, price) SELECT rdesc(10 + g % 38), g % 50 FROM generate_series(1, $ROWS) g"
echo "# cdcvec bench pipeline: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores, $(date -u +%F), $ROWS rows"

# (2) the anchor first: raw embedding over up to 4,000 such texts
q "COPY (SELECT description FROM catalog ORDER BY id LIMIT 4000) TO STDOUT" >"$pgdir/texts.txt"
ntexts=$(wc -l <"$pgdir/texts.txt")
t0=$(now_ms)
"$bin" embed --format f32 --batch 256 -o /dev/null "$pgdir/texts.txt" 2>/dev/null
t1=$(now_ms)
raw=$(calc "$ntexts * 1000 / ($t1 - $t0)")
printf 'raw embedding (cdcvec embed, batch 256, same texts, model load included): %.1f sentences/s\n' "$raw"

# (1) backfill
t0=$(now_ms)
CDCVEC_LOG=${CDCVEC_LOG:-warn} "$bin" sync --source "$DB" --table public.catalog --batch-ms 20 --batch-rows 512 \
  --http 127.0.0.1:$((PORT + 1)) 2>"$pgdir/sync.log" &
sync_pid=$!
until [ "$(q "SELECT coalesce((SELECT backfill_done FROM cdcvec.state), false)" 2>/dev/null)" = t ]; do sleep 0.2; done
t1=$(now_ms)
printf 'backfill: %d rows in %.1f s = %.1f rows/s (%.0f%% of raw)\n' "$ROWS" "$(calc "($t1 - $t0) / 1000")" \
  "$(calc "$ROWS * 1000 / ($t1 - $t0)")" "$(calc "100 * $ROWS * 1000 / ($t1 - $t0) / $raw")"
# the HNSW index is built after the backfill is recorded as done; streaming starts after it
until [ "$(q "SELECT count(*) FROM pg_indexes WHERE schemaname = 'cdcvec' AND tablename = 'public_catalog' AND indexdef LIKE '%hnsw%'")" = 1 ]; do sleep 0.2; done
t2=$(now_ms)
printf 'HNSW index build after the backfill: %.1f s\n' "$(calc "($t2 - $t1) / 1000")"

# (3) sustained: 6,000 rows in transactions of 100, as fast as PostgreSQL takes them
N=6000
# texts generated beforehand, so the load generator's own work is not timed
q "CREATE TABLE staging AS SELECT g, rdesc(10 + g % 38) AS description FROM generate_series(1, $N) g"
before=$(q "SELECT count(*) FROM cdcvec.public_catalog")
t0=$(now_ms)
q "DO \$\$ BEGIN FOR i IN 0..$((N / 100 - 1)) LOOP INSERT INTO catalog (description, price) SELECT description, 1 FROM staging WHERE g > i * 100 AND g <= (i + 1) * 100; COMMIT; END LOOP; END \$\$"
until [ "$(q "SELECT count(*) FROM cdcvec.public_catalog")" -ge $((before + N)) ]; do sleep 0.05; done
t1=$(now_ms)
printf 'sustained: %d rows committed and searchable in %.1f s = %.1f rows/s (%.0f%% of raw)\n' $N \
  "$(calc "($t1 - $t0) / 1000")" "$(calc "$N * 1000 / ($t1 - $t0)")" \
  "$(calc "100 * $N * 1000 / ($t1 - $t0) / $raw")"

# (3b) the sink alone, same table, same index, same transactions of 100, precomputed vectors
# (`cdcvec bench sink`, default --sink-writers), new ids far above the catalog's, removed after
sink_alone=$("$bin" bench sink --sink "$DB" --table catalog --rows 2000 --batch-rows 100 --first-id 100000000 \
  --writers "${CDCVEC_SINK_WRITERS:-2}" 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["points_per_s"])')
q "DELETE FROM cdcvec.public_catalog WHERE id >= 100000000; DELETE FROM cdcvec.state WHERE stream = 'cdcvec_bench_sink'"
bound=$(calc "($raw < $sink_alone) ? $raw : $sink_alone")
printf 'sink alone (cdcvec bench sink into the same indexed table, transactions of 100): %s rows/s\n' "$sink_alone"
printf 'sustained vs min(raw embedding %.1f, sink alone %s) = %.1f rows/s: %.0f%%; vs both stages sharing the same cores (1 / (1/embed + 1/sink) = %.1f rows/s): %.0f%%\n' \
  "$raw" "$sink_alone" "$bound" "$(calc "100 * $N * 1000 / ($t1 - $t0) / $bound")" \
  "$(calc "1 / (1 / $raw + 1 / $sink_alone)")" "$(calc "100 * $N * 1000 / ($t1 - $t0) * (1 / $raw + 1 / $sink_alone)")"

# (4) latency at a steady 50 rows/s for 20 s
mark=$(q "SELECT max(id) FROM catalog")
q "DO \$\$ BEGIN FOR i IN 1..1000 LOOP INSERT INTO catalog (description, price) VALUES (rdesc(10 + i % 38), 2); COMMIT; PERFORM pg_sleep(0.02); END LOOP; END \$\$"
until [ "$(q "SELECT count(*) FROM catalog c JOIN cdcvec.public_catalog v USING (id) WHERE c.id > $mark")" -ge 1000 ]; do sleep 0.05; done
q "SELECT format('commit-to-searchable at ~50 rows/s (1000 rows): p50 %s ms, p99 %s ms, max %s ms',
    round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms)::numeric, 1),
    round(percentile_cont(0.99) WITHIN GROUP (ORDER BY ms)::numeric, 1), round(max(ms)::numeric, 1))
  FROM (SELECT extract(epoch FROM v.updated_at - c.created) * 1000 AS ms FROM catalog c
        JOIN cdcvec.public_catalog v USING (id) WHERE c.id > $mark) x"
echo "sync metrics:"
curl -s "http://127.0.0.1:$((PORT + 1))/metrics" | grep -E '^cdcvec_sync_(batches|embedded|reembed)_total|^cdcvec_sync_commit_to_searchable_seconds_(sum|count)'
