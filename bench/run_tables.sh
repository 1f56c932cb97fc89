#!/usr/bin/env bash
# run_tables.sh (`cdcvec bench tables` runs it): many tables in one process on one slot (a
# pipeline file) against one `cdcvec sync` process per table, same PostgreSQL, same run.
#   Ten tables of ROWS generated rows each (default 10,000); for each setup: the backfill of all
#   of them (rows/s), then a steady mixed load (LOAD_ROUNDS rounds, default 40, each a transaction
#   per table of 5 inserts, 5 text updates and 2 deletes, every 0.25 s) until every store has it;
#   resident memory (sum of VmHWM, the peak, and of VmRSS at the end), CPU seconds of the cdcvec
#   processes and of the walsenders (the server's decoding), the WAL decoded, and
#   commit-to-searchable p50/p99 of the load's inserted rows (price -1: the store row's updated_at
#   minus the row's clock_timestamp() at insert).
#   usage: bash bench/run_tables.sh [ROWS]      (env: BUILD_DIR, CDCVEC_BENCH_PORT, THREADS)
set -euo pipefail
. "$(dirname "$0")/../scripts/pg_lib.sh"
ROWS=${1:-10000}
NT=10
ROUNDS=${LOAD_ROUNDS:-40}
THREADS=${THREADS:-2}
PORT=${CDCVEC_BENCH_PORT:-56532}
[ -x "$bin" ] || { cmake -S . -B "$BUILD_DIR" >/dev/null && cmake --build "$BUILD_DIR" -j"$(nproc)" >/dev/null; }
pg_private bench-tables
DB=$(bash scripts/pg.sh start "$pgdir" "$PORT")
q "CREATE EXTENSION vector"
psql -qX -v ON_ERROR_STOP=1 "$DB" -f bench/rdesc.sql >/dev/null
for i in $(seq 0 $((NT - 1))); do
  q "CREATE TABLE t$i (id bigserial PRIMARY KEY, description text NOT NULL, price int,
       created timestamptz NOT NULL DEFAULT clock_timestamp())"
  q "INSERT INTO t$i (description, price) SELECT rdesc(10 + (g + $i) % 38), g % 50 FROM generate_series(1, $ROWS) g"
done
q "CREATE TABLE staging AS SELECT g, rdesc(10 + g % 38) AS description FROM generate_series(1, 2000) g"
echo "# cdcvec bench tables: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores, $(date -u +%F), $NT tables x $ROWS rows, --threads $THREADS"

stat_cpu() { # PID...: utime + stime of each, in seconds, summed
  local t=0 p v
  for p; do
    v=$(awk '{ print $14 + $15 }' "/proc/$p/stat" 2>/dev/null || echo 0)
    t=$((t + v))
  done
  calc "$t / $(getconf CLK_TCK)"
}
mem_kb() { # FIELD PID...: VmHWM or VmRSS summed, in kB
  local f=$1 t=0 p v
  shift
  for p; do
    v=$(awk -v f="$f:" '$1 == f { print $2 }' "/proc/$p/status" 2>/dev/null || echo 0)
    t=$((t + ${v:-0}))
  done
  echo $t
}
walsenders() { q "SELECT string_agg(pid::text, ' ') FROM pg_stat_activity WHERE backend_type = 'walsender'"; }
store_rows() { # rows in every store table
  q "SELECT $(for i in $(seq 0 $((NT - 1))); do printf '(SELECT count(*) FROM cdcvec.public_t%d)+' "$i"; done)0" 2>/dev/null || echo 0
}
src_rows() { q "SELECT $(for i in $(seq 0 $((NT - 1))); do printf '(SELECT count(*) FROM t%d)+' "$i"; done)0"; }

run() { # one|ten
  local mode=$1 pids=() t0 t1 t2 i
  q "DROP SCHEMA IF EXISTS cdcvec CASCADE" >/dev/null 2>&1
  if [ "$mode" = one ]; then
    {
      echo "source: \"$DB\""
      echo "defaults: {threads: $THREADS, batch_ms: 20, batch_rows: 512}"
      echo "tables:"
      for i in $(seq 0 $((NT - 1))); do printf '  - table: public.t%d\n    text: description\n' "$i"; done
    } >"$pgdir/pipeline.yaml"
  fi
  local lsn0
  lsn0=$(q "SELECT pg_current_wal_lsn()")
  t0=$(now_ms)
  if [ "$mode" = one ]; then
    CDCVEC_LOG=warn "$bin" sync --config "$pgdir/pipeline.yaml" 2>"$pgdir/sync-one.log" &
    pids+=($!)
  else
    for i in $(seq 0 $((NT - 1))); do
      CDCVEC_LOG=warn "$bin" sync --source "$DB" --table "public.t$i" --threads "$THREADS" --batch-ms 20 \
        --batch-rows 512 2>"$pgdir/sync-ten-$i.log" &
      pids+=($!)
    done
  fi
  until [ "$(q "SELECT count(*) FROM cdcvec.state WHERE backfill_done" 2>/dev/null || echo 0)" = $NT ]; do
    for i in "${pids[@]}"; do kill -0 "$i" 2>/dev/null || { echo "a sync exited"; tail "$pgdir"/sync-*.log; exit 1; }; done
    sleep 0.2
  done
  t1=$(now_ms)
  local total=$((NT * ROWS))
  # the steady mixed load
  local cpu0 ws wcpu0
  cpu0=$(stat_cpu "${pids[@]}")
  until [ -n "$(walsenders)" ] && [ "$(walsenders | wc -w)" -ge "$([ "$mode" = one ] && echo 1 || echo $NT)" ]; do sleep 0.2; done
  ws=$(walsenders)
  wcpu0=$(stat_cpu $ws)
  t2=$(now_ms)
  local lt0
  lt0=$(q "SELECT clock_timestamp()") # the latency counts this load's rows only (not an earlier run's)
  q "DO \$\$ BEGIN FOR r IN 1..$ROUNDS LOOP
       FOR i IN 0..$((NT - 1)) LOOP
         EXECUTE format('INSERT INTO t%s (description, price) SELECT description, -1 FROM staging WHERE g > %s AND g <= %s', i, (r * 5) % 1990, (r * 5) % 1990 + 5);
         EXECUTE format('UPDATE t%s SET description = description || '' (rev %s)'' WHERE id IN (SELECT id FROM t%s ORDER BY id LIMIT 5 OFFSET %s)', i, r, i, r * 7);
         EXECUTE format('DELETE FROM t%s WHERE id IN (SELECT id FROM t%s ORDER BY id LIMIT 2 OFFSET %s)', i, i, 500 + r * 11);
         COMMIT;
       END LOOP;
       PERFORM pg_sleep(0.25);
     END LOOP; END \$\$"
  local lend
  lend=$(q "SELECT pg_current_wal_lsn()")
  # every slot confirmed past the load's end: every table's store has all of it
  until [ "$(q "SELECT count(*) FROM pg_replication_slots WHERE confirmed_flush_lsn < '$lend'::pg_lsn")" = 0 ]; do
    [ $(($(now_ms) - t2)) -lt 900000 ] || { echo "the load did not reach every store in 900 s"; exit 1; }
    sleep 0.1
    # a slot is confirmed past the end when a keepalive follows it: a little WAL brings one
    q "SELECT pg_logical_emit_message(false, 'cdcvec-bench', 'tick')" >/dev/null
  done
  local t3 cpu1 wcpu1 hwm rss lsn1
  t3=$(now_ms)
  cpu1=$(stat_cpu "${pids[@]}")
  wcpu1=$(stat_cpu $ws)
  hwm=$(mem_kb VmHWM "${pids[@]}")
  rss=$(mem_kb VmRSS "${pids[@]}")
  lsn1=$(q "SELECT pg_current_wal_lsn()")
  local lat
  lat=$(q "SELECT round(1000 * percentile_cont(0.5) WITHIN GROUP (ORDER BY d))::text || ' ' ||
                  round(1000 * percentile_cont(0.99) WITHIN GROUP (ORDER BY d))::text
           FROM ($(for i in $(seq 0 $((NT - 1))); do
             printf 'SELECT extract(epoch FROM v.updated_at - t.created) d FROM t%d t JOIN cdcvec.public_t%d v USING (id) WHERE t.price = -1 AND t.created >= '"'$lt0'"' UNION ALL ' "$i" "$i"
           done) SELECT NULL WHERE false) x")
  printf '%-38s backfill %6.1f s = %7.1f rows/s | load: %5.1f s to searchable | cdcvec CPU %6.1f s | walsender CPU %5.2f s (%d) | WAL %s MB | peak RSS %6.0f MB, end %6.0f MB | commit-to-searchable p50 %s ms, p99 %s ms\n' \
    "$([ "$mode" = one ] && echo "one process, one slot (--config)" || echo "ten processes, ten slots (--table)")" \
    "$(calc "($t1 - $t0) / 1000")" "$(calc "$total * 1000 / ($t1 - $t0)")" "$(calc "($t3 - $t2) / 1000")" \
    "$(calc "$cpu1 - $cpu0")" "$(calc "$wcpu1 - $wcpu0")" "$(echo $ws | wc -w)" \
    "$(q "SELECT round((('$lsn1'::pg_lsn - '$lsn0'::pg_lsn) / 1048576.0)::numeric, 1)")" \
    "$(calc "$hwm / 1024")" "$(calc "$rss / 1024")" ${lat:-- -}
  for i in "${pids[@]}"; do kill -TERM "$i"; done
  for i in "${pids[@]}"; do wait "$i" || true; done
  q "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots" >/dev/null
  q "SELECT 'DROP PUBLICATION ' || string_agg(quote_ident(pubname), ', ') FROM pg_publication" | grep -v '^DROP PUBLICATION $' | psql -qX "$DB" >/dev/null || true
}
run ten
run one
