#!/usr/bin/env bash
# test_kafka_health.sh: read-your-writes, readiness and a dead broker on the Kafka path (issue 20):
# `cdcvec capture` (a real PostgreSQL 15) -> librdkafka's mock cluster (tests/kafka_mock_broker.c)
# -> `cdcvec worker` -> `cdcvec sink --http` into pgvector.
#   - the sink's /wait answers covered for a committed LSN, and the row is in the store then
#     (position marks through every partition); an LSN of a transaction that did not touch
#     the table is covered too; cdcvec_sync_applied_lsn moves;
#   - the broker down past --broker-down-s: every stage says so at error level
#     (event=kafka_brokers_unreachable), cdcvec_kafka_broker_up is 0 and /readyz 503; back up:
#     /readyz 200 again, /wait answers again;
#   - SIGTERM while the broker is down: the worker and the sink exit 0 within 2 s.
#   usage: test_kafka_health.sh path/to/cdcvec path/to/kafka_mock_broker
set -u
. "$(dirname "$0")/sync_lib.sh"
. "$root/tests/kafka_lib.sh"
test_begin kafka-health 43000 "$1"
broker=$2
cap_pid= sink_pid= w_pid= down_pid=
pg_up vector books
q "CREATE TABLE unrelated (id serial PRIMARY KEY, v text)"
kmock_start "$broker" --topic cdc:4 --topic emb:4 || { echo "FAIL cannot start the mock broker"; exit 1; }
K=$KMOCK_BOOTSTRAP

run() { # LOGNAME ARGS...: a stage in the background, its pid in $!
  local log=$1
  shift
  CDCVEC_LOG=${LOG:-info} "$bin" "$@" --broker-down-s 3 >>"$work/$log.log" 2>&1 &
}
cap_http=$(free_port $((port + 100)))
sink_http=$(free_port $((cap_http + 1)))
run capture capture --source "$DB" --table public.books --to "kafka://$K/cdc" --batch-ms 10 --http "127.0.0.1:$cap_http"
cap_pid=$!
start_worker() { run worker worker --from "kafka://$K/cdc" --to "kafka://$K/emb" --threads 1; w_pid=$!; }
start_worker
run sink sink --from "kafka://$K/emb" --sink "$DB" --http "127.0.0.1:$sink_http"
sink_pid=$!
alive() { kill -0 $cap_pid && kill -0 $w_pid && kill -0 $sink_pid; }
code() { curl -s -o "$work/body" -w "%{http_code}" "http://127.0.0.1:$1$2"; }
metric() { curl -s "http://127.0.0.1:$1/metrics" | awk -v s="$2" 'index($0, s " ") == 1 { v = $2 } END { print v + 0 }'; }
progress() { tail -qc 200 "$work"/*.log; }

MISMATCH="SELECT count(*) FROM (SELECT * FROM books WHERE description IS NOT NULL) b
  FULL JOIN cdcvec.public_books v USING (id)
  WHERE b.id IS NULL OR v.id IS NULL OR v.text_hash <> sha256(convert_to(b.description, 'UTF8'))"
WATCH_PID=$sink_pid wait_until '[ "$(q "SELECT to_regclass('"'"'cdcvec.public_books'"'"') IS NOT NULL")" = t ] && [ "$(q "$MISMATCH")" = 0 ]' progress
check "the pipeline converged" '[ "$(q "$MISMATCH")" = 0 ]'
check "/readyz 200 on capture and sink" '[ "$(code $cap_http /readyz)" = 200 ] && [ "$(code $sink_http /readyz)" = 200 ]'

ryw() { # ROUND: commit, then /wait on the sink: 200, and the row is in the store at that moment
  local out id lsn c
  out=$(psql -qAtX "$DB" -c "INSERT INTO books (name, description, author, year) VALUES ('ryw $1', 'read your writes on the Kafka path, round $1', 'x', 2000) RETURNING id" -c "SELECT pg_current_wal_insert_lsn()")
  id=$(echo "$out" | head -1)
  lsn=$(echo "$out" | tail -1)
  c=$(code $sink_http "/wait?lsn=$lsn&timeout_ms=30000")
  [ "$c" = 200 ] || { echo "  round $1: /wait answered $c: $(cat "$work/body")"; return 1; }
  [ "$(q "SELECT count(*) FROM cdcvec.public_books WHERE id = $id")" = 1 ] || { echo "  round $1: covered, but id $id is not in the store"; return 1; }
}
misses=0
for i in 1 2 3 4 5 6; do ryw $i || misses=$((misses + 1)); done
check "the sink's /wait answers covered, the row in the store then: 6 of 6 ($misses missed)" '[ $misses = 0 ]'
lsn=$(psql -qAtX "$DB" -c "INSERT INTO unrelated (v) VALUES ('x')" -c "SELECT pg_current_wal_insert_lsn()" | tail -1)
check "an LSN of a transaction that did not touch the table is covered (200)" \
  '[ "$(code $sink_http "/wait?lsn=$lsn&timeout_ms=30000")" = 200 ]'
check "the sink exports cdcvec_sync_applied_lsn" '[ "$(metric $sink_http cdcvec_sync_applied_lsn)" != 0 ]'

# a sink whose store is down (nothing listens on its port): the retry line says what happened
down_port=$(free_port $((sink_http + 1)))
run sink_down sink --from "kafka://$K/emb" --sink "postgres://postgres@127.0.0.1:$down_port/postgres" --group down
down_pid=$!
WATCH_PID=$down_pid wait_until 'grep -q "event=sink_retry" "$work/sink_down.log"' 'wc -c <"$work/sink_down.log"'
check "a sink whose store is down: its retry line names the cause (the store, Connection refused), not \"timed out\"" \
  'grep "event=sink_retry" "$work/sink_down.log" | head -1 | grep -q "error=\"the store failed (connection): .*Connection refused" &&
   ! grep "event=sink_retry" "$work/sink_down.log" | grep -q "timed out"' || tail -5 "$work/sink_down.log"
kill -TERM $down_pid; wait $down_pid; down_pid=

# the broker goes away
kmock_cmd "down -1"
WATCH_PID=$sink_pid wait_until 'grep -q "event=kafka_brokers_unreachable stage=sink" "$work/sink.log" &&
  grep -q "event=kafka_brokers_unreachable stage=worker" "$work/worker.log" &&
  grep -q "event=kafka_brokers_unreachable stage=capture" "$work/capture.log"' progress
check "no broker past --broker-down-s: every stage says so at error level" \
  'grep -q "level=error event=kafka_brokers_unreachable" "$work/sink.log" && grep -q "level=error event=kafka_brokers_unreachable" "$work/worker.log" && grep -q "level=error event=kafka_brokers_unreachable" "$work/capture.log"'
check "...exports it (cdcvec_kafka_broker_up 0)" \
  '[ "$(metric $sink_http "cdcvec_kafka_broker_up{stage=\"sink\"}")" = 0 ] && [ "$(metric $cap_http "cdcvec_kafka_broker_up{stage=\"capture\"}")" = 0 ]'
check "...and fails readiness (/readyz 503 on sink and capture)" \
  '[ "$(code $sink_http /readyz)" = 503 ] && grep -q "Kafka broker" "$work/body" && [ "$(code $cap_http /readyz)" = 503 ]'
check "...while the stages keep running" alive
check "/healthz stays 200 (liveness; sink and capture, which load no model)" \
  '[ "$(code $sink_http /healthz)" = 200 ] && [ "$(code $cap_http /healthz)" = 200 ]'

stop_checked() { # PID NAME: SIGTERM, then a check that it exited 0 within 2 s
  local ms rc
  stop_timed $1
  check "SIGTERM while the broker is down: the $2 exits 0 within 2 s (rc $rc after $ms ms)" '[ "$rc" = 0 ] && [ $ms -le 2000 ]'
}
stop_checked $w_pid worker
start_worker
stop_checked $sink_pid sink
run sink sink --from "kafka://$K/emb" --sink "$DB" --http "127.0.0.1:$sink_http"
sink_pid=$!

kmock_cmd "up -1"
WATCH_PID=$sink_pid wait_until '[ "$(code $sink_http /readyz)" = 200 ] && [ "$(code $cap_http /readyz)" = 200 ]' progress
check "the broker back: /readyz 200 again" '[ "$(code $sink_http /readyz)" = 200 ] && [ "$(code $cap_http /readyz)" = 200 ]'
check "the broker back: read-your-writes again" 'ryw 7'
check "no stage exited on its own" alive
stop_all $cap_pid $w_pid $sink_pid
check "the stages stop on SIGTERM with status 0 ($rcs)" '[ "$rcs" = 000 ]'
test_end
