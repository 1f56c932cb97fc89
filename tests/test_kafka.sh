#!/usr/bin/env bash
# test_kafka.sh: the Kafka path end to end: `cdcvec capture` (a real PostgreSQL 15 with
# pgvector, started by scripts/pg.sh as a non-root user) → librdkafka's mock cluster (a real
# Kafka protocol peer over TCP, tests/kafka_mock_broker.c) → `cdcvec worker` → `cdcvec sink`
# into pgvector. After every step the store must equal the source (every id on both sides, the
# text hash, the payload: no loss, no orphan): inserts, text updates, payload-only updates
# (vector untouched), deletes, multi-row transactions, truncate, TOASTed texts; then faults:
# the broker down for 30 s, produce and fetch errors, two workers with one killed -9 (the group
# rebalances), kill -9 of capture and of the sink during 10,000 changes, and a message no one
# can read (it reaches the dead-letter topic with its reason).
#   usage: test_kafka.sh path/to/cdcvec path/to/kafka_mock_broker
set -u
. "$(dirname "$0")/sync_lib.sh"
. "$root/tests/kafka_lib.sh"
test_begin kafka 43000 "$1"
broker=$2
kafka_venv "$root"
cap_pid= sink_pid= w1_pid= w2_pid= qsink_pid= q_pid=
pg_up vector books
kmock_start "$broker" --topic cdc:4 --topic emb:4 || { echo "FAIL cannot start the mock broker"; exit 1; }
K=$KMOCK_BOOTSTRAP
echo "mock broker at $K"

run() { # LOGNAME ARGS...: a stage in the background, watched, its pid in $!
  local log=$1
  shift
  CDCVEC_LOG=${LOG:-warn} "$bin" "$@" >>"$work/$log.log" 2>&1 &
  watch $! "$log" "$work/$log.log"
}
# the stages with an HTTP port start through start_listener: a port taken meanwhile by another
# program moves to another one instead of failing the test (or hanging it)
cap_http=$(free_port $((port + 100)))
sink_http=$(free_port $((cap_http + 1)))
start_capture() {
  start_listener capture "$work/capture.log" cap_http env CDCVEC_LOG="${LOG:-warn}" "$bin" capture --source "$DB" \
    --table public.books --to "kafka://$K/cdc" --batch-ms 10 --http "127.0.0.1:@PORT@" ||
    { echo "FAIL capture did not start"; fail=1; test_end; } # nothing after it could pass: end now
  cap_pid=$LISTENER_PID
}
start_worker() { run "worker$1" worker --from "kafka://$K/cdc" --to "kafka://$K/emb" --threads 1; eval "w$1_pid=$!"; }
start_sink() {
  start_listener sink "$work/sink.log" sink_http env CDCVEC_LOG="${LOG:-warn}" "$bin" sink --from "kafka://$K/emb" \
    --sink "$DB" --http "127.0.0.1:@PORT@" || { echo "FAIL sink did not start"; fail=1; test_end; }
  sink_pid=$LISTENER_PID
}
metric() { # PORT SERIES: its value (0 when absent)
  curl -s "http://127.0.0.1:$1/metrics" | awk -v s="$2" 'index($0, s " ") == 1 { v = $2 } END { print v + 0 }'
}

MISMATCH="SELECT count(*) FROM (SELECT * FROM books WHERE description IS NOT NULL) b
  FULL JOIN cdcvec.public_books v USING (id)
  WHERE b.id IS NULL OR v.id IS NULL OR v.text_hash <> sha256(convert_to(b.description, 'UTF8'))
     OR v.payload->>'name' IS DISTINCT FROM b.name OR (v.payload->>'year')::int IS DISTINCT FROM b.year"
# the sink table exists only once the first message arrived: until then, every source row is a mismatch
# (progress: messages through capture and the sink, and the stages' logs)
stages_progress() {
  metric "$cap_http" 'cdcvec_kafka_messages_total{stage="capture",direction="out"}'
  metric "$sink_http" 'cdcvec_kafka_messages_total{stage="sink",direction="in"}'
  cat "$work"/*.log 2>/dev/null | wc -c
}
converged() {
  wait_until '[ "$(q "SELECT to_regclass('"'"'cdcvec.public_books'"'"') IS NOT NULL")" = t ]' stages_progress &&
    converged_q "$MISMATCH" cdcvec.public_books
}

start_capture
start_worker 1
start_sink
check "rows existing before capture started reach the store (backfill through the topic)" converged
check "capture's slot has its own name (cdcvec_capture_<database>_public_books_<hash>)" \
  '[ "$(q "SELECT count(*) FROM pg_replication_slots WHERE slot_name ~ '"'"'^cdcvec_capture_postgres_public_books_[0-9a-f]{8}$'"'"'")" = 1 ]'
check "capture keeps no vectors in the source (state only)" \
  '[ "$(q "SELECT count(*) FROM cdcvec.state WHERE stream LIKE '"'"'cdcvec_capture_%'"'"'")" = 1 ]'
"$bin" verify --source "$DB" --table public.books --sink "$DB" --threads 1 --repair 1 >"$work/verify.log" 2>&1
rc=$?
check "verify --repair beside the running sink stage of the table is refused (exit 1), naming it" \
  '[ $rc = 1 ] && grep -q "event=verify_stopped .*holder=\"pid=[0-9]* application=cdcvec sink (writer lock)" "$work/verify.log"' ||
  tail -5 "$work/verify.log"

check "capture's /metrics: messages produced and their acknowledgement latency" \
  '[ "$(metric $cap_http "cdcvec_kafka_messages_total{stage=\"capture\",direction=\"out\"}")" -ge 8 ] &&
   [ "$(metric $cap_http "cdcvec_kafka_produce_latency_seconds_count{stage=\"capture\"}")" -ge 8 ]'
check "capture's HTTP port serves no embeddings (it has no model): 404" \
  '[ "$(curl -s -o /dev/null -w "%{http_code}" -d "{\"input\":\"x\"}" http://127.0.0.1:$cap_http/v1/embeddings)" = 404 ]'
check "sink's /metrics: messages consumed, consumer lag exported" \
  '[ "$(metric $sink_http "cdcvec_kafka_messages_total{stage=\"sink\",direction=\"in\"}")" -ge 8 ] &&
   curl -s http://127.0.0.1:$sink_http/metrics | grep -q "^cdcvec_kafka_consumer_lag_messages{stage=\"sink\"} "'

# a second sink stage on the same embeddings topic, into Qdrant (the stand-in of tests/standins/:
# Qdrant's own engine behind its REST models; no Qdrant server can run here). It follows the
# topic from here on, through every fault below, like a second store would. (It does not replay
# the whole topic at the end: the mock broker keeps only the last 5 MB of each partition.)
standin qdrant --storage "$work/qdrant" || fail=1
q_pid=$standin_pid qport=$standin_port
LOG=${QLOG:-${LOG:-warn}} run qsink sink --from "kafka://$K/emb" --sink "qdrant://127.0.0.1:$qport/books" --group qdrant-sink
qsink_pid=$!
qcount() { curl -s -XPOST "http://127.0.0.1:$qport/collections/books/points/count" -H 'Content-Type: application/json' \
  -d '{"exact":true}' | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["result"]["count"])' 2>/dev/null; }

basic_changes
q "UPDATE books SET id = 1000 WHERE id = 3"
check "an update that changes the primary key (old key deleted)" converged
toast_changes
q "BEGIN; INSERT INTO books (name, description, author, year) VALUES ('Before truncate', 'gone soon', 'x', 1); TRUNCATE books; INSERT INTO books (name, description, author, year) VALUES ('After truncate', 'the only book left', 'x', 2); COMMIT"
check "truncate (one copy per partition, applied once all partitions reached it)" \
  'converged && [ "$(q "SELECT count(*) FROM cdcvec.public_books")" = 1 ]'
q "INSERT INTO books (name, description, author, year) SELECT 'Book ' || i, 'A story about the number ' || i, 'x', 2000 + i % 20 FROM generate_series(1, 200) i"
check "inserts after a truncate" converged

# ---- faults ----------------------------------------------------------------------------------
DOWN_S=${CDCVEC_KAFKA_DOWN_S:-30}
kmock_cmd "down -1"
q "UPDATE books SET description = description || ' (edited while the broker was down)' WHERE id % 3 = 0"
q "DELETE FROM books WHERE id % 7 = 0"
sleep "$DOWN_S" # the fault itself lasts this long; nothing waits on a guess
kmock_cmd "up -1"
check "broker down for ${DOWN_S}s mid-stream: nothing lost once it is back" converged

kmock_cmd "errors Produce 6 NOT_LEADER_FOR_PARTITION REQUEST_TIMED_OUT NOT_ENOUGH_REPLICAS _TRANSPORT NOT_LEADER_FOR_PARTITION REQUEST_TIMED_OUT"
kmock_cmd "errors Fetch 4 NOT_LEADER_FOR_PARTITION _TRANSPORT REQUEST_TIMED_OUT NOT_LEADER_FOR_PARTITION"
q "UPDATE books SET year = year + 1 WHERE id % 2 = 0"
q "INSERT INTO books (name, description, author, year) SELECT 'Err ' || i, 'Written while requests failed ' || i, 'x', 1990 FROM generate_series(1, 100) i"
check "produce and fetch errors: retried, nothing lost" converged

start_worker 2
q "INSERT INTO books (name, description, author, year) SELECT 'Two ' || i, 'Two workers share this ' || i, 'x', 1980 FROM generate_series(1, 300) i"
check "two workers in one group" converged
q "UPDATE books SET description = description || ' again' WHERE name LIKE 'Two %'"
sleep 0.5
kill -9 "$w1_pid" 2>/dev/null
wait "$w1_pid" 2>/dev/null
w1_pid=
check "one worker killed -9 mid-stream: the group rebalances, nothing lost" converged

# 10,000 changes in 100 transactions, with capture killed -9 in the middle of them
tx100() { # SQL with $i: 100 transactions, one statement each
  q "DO \$\$ BEGIN FOR i IN 0..99 LOOP $1; COMMIT; END LOOP; END \$\$"
}
killed_during() { # PID RESTART SQL: tx100 SQL in the background, PID killed -9 2 s in; RESTART once it is done
  tx100 "$3" &
  local load=$!
  sleep 2
  kill -9 "$1" 2>/dev/null
  wait "$1" 2>/dev/null
  wait "$load"
  $2
}
killed_during "$cap_pid" start_capture "INSERT INTO books (name, description, author, year) SELECT 'Bulk ' || (i * 50 + g), 'Bulk text number ' || (i * 50 + g), 'x', 1900 + g FROM generate_series(1, 50) g; UPDATE books SET year = year + 1 WHERE name LIKE 'Bulk %' AND id % 100 = i"
check "capture killed -9 during 10,000 changes (5,000 inserts + 5,000 updates): converges after restart" converged

# 10,000 changes (payload-only updates, re-embedded texts, deletes, inserts), the sink killed -9 meanwhile
killed_during "$sink_pid" start_sink "UPDATE books SET year = year + 1 WHERE name LIKE 'Bulk %' AND id % 100 = i; UPDATE books SET description = 'Rewritten ' || id WHERE name LIKE 'Bulk %' AND id % 100 = i AND id % 5 = 0; DELETE FROM books WHERE name LIKE 'Bulk %' AND id % 100 = i AND id % 10 = 1; INSERT INTO books (name, description, author, year) SELECT 'Late ' || (i * 35 + g), 'Late text ' || (i * 35 + g), 'x', 2001 FROM generate_series(1, 35) g"
check "sink killed -9 during 10,000 changes: converges after restart" converged

# a message no stage can read: the dead-letter topic gets it with the reason, the rest goes on
echo '{"key":"x","value":"this is not JSON"}' | $PY "$root/tests/kafka_tutorial.py" produce --bootstrap "$K" --topic cdc >/dev/null 2>&1
q "UPDATE books SET year = 1 WHERE id = (SELECT min(id) FROM books)"
# (the topic holds other dead letters too, e.g. the Qdrant sink's for rows it joined too late to
# have seen: read one at a time until this one, or until none came for 60 s)
unreadable_dead_lettered() {
  local m
  while m=$($PY "$root/tests/kafka_tutorial.py" consume --bootstrap "$K" --topic cdcvec-dead-letters --count 1 --timeout-s 60); do
    grep -q "not JSON" <<<"$m" && return 0
  done
  return 1
}
check "a message no one can read goes to the dead-letter topic with its reason" unreadable_dead_lettered
check "...and the pipeline goes on" converged

check "the second sink, into Qdrant, followed every change and fault: as many points as source rows" \
  'WATCH_PID=$qsink_pid wait_until "[ \"\$(qcount)\" = \"\$(q \"SELECT count(*) FROM books WHERE description IS NOT NULL\")\" ]" qcount'
kill -TERM "$qsink_pid" "$q_pid" 2>/dev/null
wait "$qsink_pid" "$q_pid" 2>/dev/null
qsink_pid= q_pid=

check "no stage exited on its own" 'kill -0 $cap_pid && kill -0 $w2_pid && kill -0 $sink_pid'
stop_all $cap_pid $w2_pid $sink_pid
check "the stages stop on SIGTERM with status 0 ($rcs)" '[ "$rcs" = 000 ]'
test_end 30
