#!/usr/bin/env bash
# run_kafka.sh (`cdcvec bench kafka` runs it): the Kafka path beside in-process `cdcvec sync`, on
# one private PostgreSQL, the same texts and the same machine, in one run:
#   (1) sustained rows/s: N pre-generated rows inserted in transactions of 100 as fast as
#       PostgreSQL takes them, until all are searchable in pgvector, for
#       (a) `cdcvec sync` (the anchor), (b) capture → mock broker → 1 worker → sink,
#       (c) the same with 2 workers in one group;
#   (2) commit-to-searchable at a steady ~25 rows/s (500 rows) for (a) and (b): p50/p99/max of
#       the sink row's updated_at minus the source row's clock_timestamp() at insert.
# The broker is librdkafka's mock cluster (tests/kafka_mock_broker.c), a real protocol peer on
# loopback with no disk: a real broker adds its fsync/replication latency on top. The mock
# answers a fetch that found no data only when fetch.wait.max.ms (librdkafka's default: 500 ms)
# has passed, where a real broker answers as soon as data arrives (fetch.min.bytes=1); so the
# consumers here run with -X fetch.wait.max.ms=$FETCH_WAIT_MS (default 10), which is what a
# real broker's long poll gives for free.
#   usage: bash bench/run_kafka.sh [N]      (env: BUILD_DIR, CDCVEC_BENCH_PORT, THREADS)
set -euo pipefail
. "$(dirname "$0")/../scripts/pg_lib.sh"
. tests/kafka_lib.sh
N=${1:-3000}
PORT=${CDCVEC_BENCH_PORT:-56532}
broker=$PWD/$BUILD_DIR/tests/kafka_mock_broker
[ -x "$bin" ] && [ -x "$broker" ] || cmake --build "$BUILD_DIR" -j"$(nproc)" --target cdcvec kafka_mock_broker >/dev/null
pg_private bench-kafka-pg
pids=
stop_all() {
  for p in $pids; do kill -TERM "$p" 2>/dev/null && wait "$p" 2>/dev/null; done
  pids=
}
DB=$(bash scripts/pg.sh start "$pgdir" "$PORT")
THREADS=${THREADS:-0}
FETCH_WAIT_MS=${FETCH_WAIT_MS:-10}
q "CREATE EXTENSION vector"
psql -qX -v ON_ERROR_STOP=1 "$DB" -f bench/rdesc.sql >/dev/null
q "SELECT setseed(0.42)"
q "CREATE TABLE staging AS SELECT g, rdesc(10 + g % 38) AS description FROM generate_series(1, $N) g"
q "CREATE TABLE lat_texts AS SELECT g, rdesc(10 + g % 38) AS description FROM generate_series(1, 500) g"
kmock_start "$broker" >/dev/null
K=$KMOCK_BOOTSTRAP
echo "# cdcvec bench kafka: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores, $(date -u +%F), $N rows, mock broker at $K"

# starts MODE (sync | kafka1 | kafka2) for table T
start_path() {
  local mode=$1 t=$2 log=$pgdir/$1.log
  q "CREATE TABLE $t (id bigserial PRIMARY KEY, description text NOT NULL, created timestamptz NOT NULL DEFAULT clock_timestamp())"
  whttp=
  if [ "$mode" = sync ]; then
    CDCVEC_LOG=warn "$bin" sync --source "$DB" --table "public.$t" --threads "$THREADS" >>"$log" 2>&1 &
    pids="$pids $!"
    return
  fi
  CDCVEC_LOG=warn "$bin" capture --source "$DB" --table "public.$t" --to "kafka://$K/$t-cdc" >>"$log" 2>&1 &
  pids="$pids $!"
  local w
  whttp=
  for w in $(seq "${mode#kafka}"); do
    whttp="$whttp $((PORT + 10 + w))"
    CDCVEC_LOG=warn "$bin" worker --from "kafka://$K/$t-cdc" --to "kafka://$K/$t-emb" --group "$t" -X fetch.wait.max.ms=$FETCH_WAIT_MS \
      --http "127.0.0.1:$((PORT + 10 + w))" \
      --threads "$([ "$THREADS" = 0 ] && echo $((($(nproc) + ${mode#kafka} - 1) / ${mode#kafka})) || echo "$THREADS")" >>"$log" 2>&1 &
    pids="$pids $!"
  done
  CDCVEC_LOG=warn "$bin" sink --from "kafka://$K/$t-emb" --sink "$DB" --group "$t-sink" \
    -X fetch.wait.max.ms=$FETCH_WAIT_MS >>"$log" 2>&1 &
  pids="$pids $!"
}
# waits until T's sink table exists (the stages are up and the empty backfill went through)
ready() { until [ "$(q "SELECT to_regclass('cdcvec.public_$1') IS NOT NULL")" = t ]; do sleep 0.1; done; }
searchable() { q "SELECT count(*) FROM cdcvec.public_$1"; }

# messages a worker has consumed (its /metrics)
consumed() { curl -s "http://127.0.0.1:$1/metrics" | awk '/^cdcvec_kafka_messages_total\{stage="worker",direction="in"\}/ { print $2 + 0 }'; }

sustained() { # MODE TABLE: sets rate (rows/s); runs in this shell (its stages' pids are kept)
  local mode=$1 t=$2 warm=1 p
  start_path "$mode" "$t"
  q "INSERT INTO $t (description) VALUES ('warm-up')"
  ready "$t"
  # the clock starts once every worker of the group holds partitions (each consumed a change),
  # so no rebalance falls inside the measurement
  for p in $whttp; do
    until [ "$(consumed "$p")" -ge 1 ] 2>/dev/null; do
      for q_ in $pids; do kill -0 "$q_" 2>/dev/null || { echo "a stage exited: see $pgdir/$mode.log" >&2; exit 1; }; done
      q "INSERT INTO $t (description) SELECT 'warm-up ' || g FROM generate_series(1, 8) g"
      warm=$((warm + 8))
      sleep 0.5
    done
  done
  until [ "$(searchable "$t")" -ge "$warm" ]; do sleep 0.05; done
  local t0 t1
  t0=$(now_ms)
  q "DO \$\$ BEGIN FOR i IN 0..$((N / 100 - 1)) LOOP INSERT INTO $t (description) SELECT description FROM staging WHERE g > i * 100 AND g <= (i + 1) * 100; COMMIT; END LOOP; END \$\$"
  until [ "$(searchable "$t")" -ge $((N + warm)) ]; do sleep 0.05; done
  t1=$(now_ms)
  rate=$(calc "$N * 1000 / ($t1 - $t0)")
}

latency() { # TABLE (its path still running): sets lat (p50/p99/max ms at ~25 rows/s)
  local t=$1 mark
  mark=$(q "SELECT max(id) FROM $t")
  q "DO \$\$ BEGIN FOR i IN 1..500 LOOP INSERT INTO $t (description) SELECT description FROM lat_texts WHERE g = i; COMMIT; PERFORM pg_sleep(0.04); END LOOP; END \$\$"
  until [ "$(q "SELECT count(*) FROM $t c JOIN cdcvec.public_$t v USING (id) WHERE c.id > $mark")" -ge 500 ]; do sleep 0.05; done
  lat=$(q "SELECT format('p50 %s ms, p99 %s ms, max %s ms',
      round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms)::numeric, 1),
      round(percentile_cont(0.99) WITHIN GROUP (ORDER BY ms)::numeric, 1), round(max(ms)::numeric, 1))
    FROM (SELECT extract(epoch FROM v.updated_at - c.created) * 1000 AS ms FROM $t c
          JOIN cdcvec.public_$t v USING (id) WHERE c.id > $mark) x")
}

sustained sync t_sync
r_sync=$rate
latency t_sync
l_sync=$lat
stop_all
sustained kafka1 t_k1
r_k1=$rate
latency t_k1
l_k1=$lat
stop_all
sustained kafka2 t_k2
r_k2=$rate
stop_all
printf 'sustained, in-process cdcvec sync (anchor): %.1f rows/s\n' "$r_sync"
printf 'sustained, Kafka (capture -> broker -> 1 worker -> sink): %.1f rows/s = %.0f%% of sync\n' "$r_k1" "$(calc "100 * $r_k1 / $r_sync")"
printf 'sustained, Kafka with 2 workers in one group: %.1f rows/s = %.0f%% of 1 worker\n' "$r_k2" "$(calc "100 * $r_k2 / $r_k1")"
echo "commit-to-searchable at ~25 rows/s, in-process sync: $l_sync"
echo "commit-to-searchable at ~25 rows/s, Kafka (1 worker, fetch.wait.max.ms=$FETCH_WAIT_MS):  $l_k1"
