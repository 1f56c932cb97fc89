#!/usr/bin/env bash
# test_sink_values.sh: rows whose values other code paths choke on, through every store and the
# Kafka path, against a real PostgreSQL 15 (scripts/pg.sh), the Qdrant and Upstash stand-ins
# (tests/standins/) and librdkafka's mock broker:
#   - numbers beyond int64 and a double (numeric 9223372036854775808 and 1e400, jsonb 1e300, a
#     22-digit decimal) beside ordinary rows: every row stored, pgvector and the Kafka messages
#     keep every digit, Qdrant and Upstash get a string where a double cannot hold the value,
#     and verify finds no drift in any store;
#   - a SQL_ASCII database with a byte that is not UTF-8: that row is a dead letter naming its
#     key and column, the others are stored (backfill and stream);
#   - two tables with integer keys in one Qdrant collection (refused, or distinct ids with
#     --point-ids uuid, TRUNCATE of one leaves the other) and in one Upstash namespace (refused);
#   - a row the store refuses on a Kafka sink without --state: its message reaches the
#     dead-letter topic with its key and reason;
#   - the same numbers in the tutorial's format (capture, worker --format quix, sink): every
#     digit kept, nothing a dead letter.
#   usage: test_sink_values.sh path/to/cdcvec path/to/kafka_mock_broker
set -u
. "$(dirname "$0")/sync_lib.sh"
. "$root/tests/kafka_lib.sh"
test_begin values 43000 "$1"
broker=$2
kafka_venv "$root"
pg_up
run() { # LOG ARGS...: cdcvec in the foreground, its log in $work/LOG.log; the exit status
  local log=$1
  shift
  CDCVEC_LOG=${LOG:-warn} "$bin" "$@" --threads 2 >>"$work/$log.log" 2>&1
}
bg() { # LOG ARGS...: cdcvec in the background, its pid in $!
  local log=$1
  shift
  CDCVEC_LOG=${LOG:-warn} "$bin" "$@" >>"$work/$log.log" 2>&1 &
}
standin qdrant || exit 1
qport=$qdrant_port
echo "tok-$$" >"$work/token"
standin upstash --token-file "$work/token" --dimension 384 || exit 1
uport=$upstash_port
export UPSTASH_VECTOR_REST_URL=http://127.0.0.1:$uport UPSTASH_VECTOR_REST_TOKEN_FILE=$work/token
Q=qdrant://127.0.0.1:$qport
qpoints() { # COLLECTION: "id table payload-json" per point, sorted
  curl -s -XPOST "http://127.0.0.1:$qport/collections/$1/points/scroll" -H 'Content-Type: application/json' \
    -d '{"limit":100,"with_payload":true}' | "$PY" -c '
import json, sys
for p in json.load(sys.stdin)["result"]["points"]:
    c = p["payload"].pop("cdcvec")
    print(p["id"], c["table"], json.dumps(p["payload"], sort_keys=True))' | sort
}

# ---- numbers beyond int64 and a double ---------------------------------------------------------
q "CREATE EXTENSION vector" >/dev/null
NUMS="(1, 'an ordinary row', 1, '{\"x\": 1}'), (2, 'a numeric beyond int64', 9223372036854775808, '{\"x\": -9223372036854775809}'),
  (3, 'a double at the edge in jsonb', 3, '{\"x\": 1e300, \"y\": [1.5, 0.1]}'), (4, 'a numeric beyond a double', 1e400, NULL),
  (5, 'a decimal longer than a double', 0.1000000000000000000001, '{\"y\": [0.1000000000000000000001]}')"
q "CREATE TABLE nums (id int PRIMARY KEY, description text, n numeric, j jsonb); INSERT INTO nums VALUES $NUMS"
EXACT="SELECT count(*) FROM nums s JOIN cdcvec.public_nums v USING (id) WHERE v.payload::text = (to_jsonb(s) - 'id' - 'description')::text"
run bf_pg backfill --source "$DB" --table public.nums
check "big numbers, pgvector: every row stored, every digit kept" '[ "$(q "$EXACT")" = 5 ]' || q "SELECT id, payload FROM cdcvec.public_nums"
run verify_pg verify --source "$DB" --table public.nums; rc=$?
check "big numbers, pgvector: verify finds no drift" '[ $rc = 0 ] && grep -q "payload_drift=0 .*differences=0" "$work/verify_pg.log"' || tail -3 "$work/verify_pg.log"
run verify_pg2 verify --source "$DB" --table public.nums --repair 1; rc=$?
check "big numbers, pgvector: verify --repair 1 has nothing to repair" '[ $rc = 0 ]' || tail -3 "$work/verify_pg2.log"

run bf_q backfill --source "$DB" --table public.nums --sink "$Q/nums"; rc=$?
check "big numbers, Qdrant: the backfill exits 0" '[ $rc = 0 ]' || tail -3 "$work/bf_q.log"
qpoints nums >"$work/qnums.txt"
check "big numbers, Qdrant: all 5 rows stored" '[ "$(wc -l <"$work/qnums.txt")" = 5 ]' || cat "$work/qnums.txt"
check "big numbers, Qdrant: a number a double cannot hold is its exact text, the others numbers" \
  'grep -q "^2 public.nums .*\"n\": \"9223372036854775808\"" "$work/qnums.txt" &&
   grep -q "\"x\": \"-9223372036854775809\"" "$work/qnums.txt" &&
   grep -q "^3 public.nums .*\"x\": 1e+300, \"y\": \[1.5, 0.1\]" "$work/qnums.txt" &&
   grep -q "^4 public.nums .*\"n\": \"1000000000" "$work/qnums.txt" &&
   grep -q "^5 public.nums .*\"n\": \"0.1000000000000000000001\"" "$work/qnums.txt" &&
   grep -q "^1 public.nums .*\"n\": 1}" "$work/qnums.txt"' || cat "$work/qnums.txt"
run verify_q verify --source "$DB" --table public.nums --sink "$Q/nums"; rc=$?
check "big numbers, Qdrant: verify finds no drift" '[ $rc = 0 ]' || tail -3 "$work/verify_q.log"
run bf_u backfill --source "$DB" --table public.nums --sink upstash://; rc=$?
check "big numbers, Upstash: the backfill exits 0" '[ $rc = 0 ]' || tail -3 "$work/bf_u.log"
run verify_u verify --source "$DB" --table public.nums --sink upstash://; rc=$?
check "big numbers, Upstash: all 5 stored, verify finds no drift" \
  '[ $rc = 0 ] && grep -q "store_rows=5 .*differences=0" "$work/verify_u.log"' || tail -3 "$work/verify_u.log"

# ---- two tables with integer keys in one collection / namespace --------------------------------
q "CREATE TABLE other (id int PRIMARY KEY, description text); INSERT INTO other VALUES (1, 'another table, row one'), (2, 'another table, row two')"
run shared_q backfill --source "$DB" --table public.other --sink "$Q/nums"; rc=$?
check "Qdrant: a second table with integer ids in the collection is refused, the fix named" \
  '[ $rc = 1 ] && grep -q "event=sink_collection_shared.*public.nums.*--point-ids uuid" "$work/shared_q.log"' || tail -3 "$work/shared_q.log"
bg sync_other sync --source "$DB" --table public.other --sink "$Q/nums" --point-ids uuid --batch-ms 10 --threads 2
other_pid=$!
WATCH_PID=$other_pid wait_until '[ "$(qpoints nums | grep -c " public.other ")" = 2 ]' 'qpoints nums'
check "Qdrant: with --point-ids uuid both tables are stored, neither overwrites the other" \
  '[ "$(qpoints nums | grep -c " public.other ")" = 2 ] && [ "$(qpoints nums | grep -c "^[0-9]* public.nums ")" = 5 ]' || qpoints nums
# a row the store refuses (the stand-in answers 400 to the batch's upsert, then to the first row
# alone): that row is a dead letter with the store's reason, the rest of the batch is written
curl -sf -XPOST "http://127.0.0.1:$qport/__standin/faults" -H 'Content-Type: application/json' \
  -d '{"status":400,"count":2,"method":"PUT","path":"/points\\?wait"}' >/dev/null
q "INSERT INTO other VALUES (10, 'refused by the store'), (11, 'taken'), (12, 'taken too')"
WATCH_PID=$other_pid wait_until '[ "$(qpoints nums | grep -c " public.other ")" = 4 ] && [ "$(q "SELECT count(*) FROM cdcvec.dead_letters WHERE key = '"'"'10'"'"'")" = 1 ]' 'qpoints nums; q "SELECT count(*) FROM cdcvec.dead_letters"'
check "Qdrant: a row the store refuses is a dead letter with the store's reason, the rest of its batch is written" \
  '[ "$(q "SELECT count(*) FROM cdcvec.dead_letters WHERE key = '"'"'10'"'"' AND reason LIKE '"'"'%status 400%'"'"'")" = 1 ] &&
   [ "$(qpoints nums | grep -c " public.other ")" = 4 ] && kill -0 $other_pid' || { q "SELECT * FROM cdcvec.dead_letters"; qpoints nums; }
q "TRUNCATE other"
WATCH_PID=$other_pid wait_until '[ "$(qpoints nums | grep -c " public.other ")" = 0 ]' 'qpoints nums'
check "Qdrant: TRUNCATE of one table leaves the other's points" \
  '[ "$(qpoints nums | grep -c " public.other ")" = 0 ] && [ "$(qpoints nums | grep -c "^[0-9]* public.nums ")" = 5 ]' || qpoints nums
kill -TERM "$other_pid"
wait "$other_pid"
run shared_u backfill --source "$DB" --table public.other --sink upstash:// --namespace nums; rc=$?
check "Upstash: a second table in the namespace is refused, the fix named" \
  '[ $rc = 1 ] && grep -q "event=sink_namespace_shared.*public.nums.*--namespace" "$work/shared_u.log"' || tail -3 "$work/shared_u.log"

# ---- SQL_ASCII: a byte that is not UTF-8 -------------------------------------------------------
q "CREATE DATABASE asc_db ENCODING 'SQL_ASCII' TEMPLATE template0 LC_COLLATE 'C' LC_CTYPE 'C'"
ADB=${DB%/*}/asc_db
q "CREATE EXTENSION vector; CREATE TABLE t (id int PRIMARY KEY, description text, note text);
   INSERT INTO t VALUES (1, 'first row', 'a'), (2, E'caf\\xe9 in Latin-1', 'b'), (3, 'third row', 'c')" "$ADB"
run bf_asc backfill --source "$ADB" --table public.t; rc=$?
check "SQL_ASCII backfill: the row that is not UTF-8 is a dead letter naming key and column, the others are stored" \
  '[ $rc = 0 ] && [ "$(q "SELECT array_agg(id ORDER BY id) FROM cdcvec.public_t" "$ADB")" = "{1,3}" ] &&
   [ "$(q "SELECT count(*) FROM cdcvec.dead_letters WHERE key = '"'"'2'"'"' AND reason LIKE '"'"'column description %UTF-8%'"'"'" "$ADB")" = 1 ]' ||
  { tail -3 "$work/bf_asc.log"; q "SELECT * FROM cdcvec.dead_letters" "$ADB"; }
bg sync_asc sync --source "$ADB" --table public.t --batch-ms 10 --threads 2
asc_pid=$!
q "INSERT INTO t VALUES (4, 'fourth row', 'd'), (5, 'fifth row', E'bad \\xff note'), (6, 'sixth row', 'f')" "$ADB"
WATCH_PID=$asc_pid wait_until '[ "$(q "SELECT count(*) FROM cdcvec.public_t" "$ADB")" = 4 ] && [ "$(q "SELECT count(*) FROM cdcvec.dead_letters WHERE key = '"'"'5'"'"'" "$ADB")" = 1 ]' \
  'sink_progress cdcvec.public_t "$ADB"'
check "SQL_ASCII stream: the row that is not UTF-8 is a dead letter naming key and column, the stream goes on" \
  '[ "$(q "SELECT array_agg(id ORDER BY id) FROM cdcvec.public_t" "$ADB")" = "{1,3,4,6}" ] &&
   [ "$(q "SELECT count(*) FROM cdcvec.dead_letters WHERE key = '"'"'5'"'"' AND reason LIKE '"'"'column note %'"'"'" "$ADB")" = 1 ] && kill -0 $asc_pid'
kill -TERM "$asc_pid"
wait "$asc_pid"

# ---- the Kafka path: capture -> worker -> sink ---------------------------------------------------
kmock_start "$broker" --topic cdc:2 --topic emb:2 --topic dlq-worker:1 --topic dlq-sink:1 --topic dlq-up:1 \
  --topic qcdc:1 --topic qemb:1 --topic dlq-qworker:1 || { echo "FAIL cannot start the mock broker"; exit 1; }
K=$KMOCK_BOOTSTRAP
q "CREATE TABLE knums (id int PRIMARY KEY, description text, n numeric, j jsonb, notes text); INSERT INTO knums (id, description, n, j) VALUES $NUMS"
bg capture capture --source "$DB" --table public.knums --to "kafka://$K/cdc" --batch-ms 10
cap_pid=$!
bg worker worker --from "kafka://$K/cdc" --to "kafka://$K/emb" --dead-letter dlq-worker --threads 2
bg sink sink --from "kafka://$K/emb" --sink "$DB" --dead-letter dlq-sink
sink_pid=$!
# a second sink into Upstash without --state: its refusals must reach its dead-letter topic
bg usink sink --from "kafka://$K/emb" --sink upstash:// --namespace knums --group up --dead-letter dlq-up
usink_pid=$!
KEXACT="SELECT count(*) FROM knums s JOIN cdcvec.public_knums v USING (id) WHERE v.payload::text = (to_jsonb(s) - 'id' - 'description')::text"
has_table() { [ "$(q "SELECT to_regclass('cdcvec.public_knums') IS NOT NULL")" = t ]; }
WATCH_PID=$sink_pid wait_until 'has_table && [ "$(q "$KEXACT")" = 5 ]' 'has_table && sink_progress cdcvec.public_knums'
check "big numbers, Kafka path: the worker reads capture's messages, every row stored with every digit" \
  'has_table && [ "$(q "$KEXACT")" = 5 ]' || tail -5 "$work/worker.log"
q "INSERT INTO knums (id, description, n, notes) VALUES (6, 'a row with huge notes', 6, repeat('x', 50000)), (7, 'and a small one', 99999999999999999999.5, 'short')"
WATCH_PID=$sink_pid wait_until '[ "$(q "$KEXACT")" = 7 ]' 'sink_progress cdcvec.public_knums'
check "big numbers, Kafka path: streamed rows too" '[ "$(q "$KEXACT")" = 7 ]'
run verify_k verify --source "$DB" --table public.knums; rc=$?
check "big numbers, Kafka path: verify finds no drift" '[ $rc = 0 ]' || tail -3 "$work/verify_k.log"
"$PY" "$root/tests/kafka_tutorial.py" consume --bootstrap "$K" --topic dlq-up --count 1 --timeout-s 60 >"$work/dlq-up.json" 2>"$work/dlq-up.err"
dlq_has() { # FILE KEY TEXT: a dead-letter message of FILE (kafka_tutorial.py consume) names KEY, its reason TEXT
  "$PY" -c 'import json, sys
for line in open(sys.argv[1]):
    v = json.loads(json.loads(line)["value"])
    if v.get("key") == sys.argv[2] and sys.argv[3] in v["reason"] and v["stage"] == "sink": sys.exit(0)
sys.exit(1)' "$@"
}
check "Kafka sink without --state: a row the store refuses reaches the dead-letter topic with its key and reason" \
  'dlq_has "$work/dlq-up.json" 6 "48 KB" && kill -0 $usink_pid' ||
  { cat "$work/dlq-up.json" "$work/dlq-up.err"; tail -5 "$work/usink.log"; }
check "Kafka path: nothing went to the worker's dead-letter topic" \
  '! "$PY" "$root/tests/kafka_tutorial.py" consume --bootstrap "$K" --topic dlq-worker --count 1 --timeout-s 10 >/dev/null 2>&1'

# ---- the same rows in the tutorial's format: capture --format quix -> worker --format quix -> sink
q "CREATE TABLE qnums (id int PRIMARY KEY, description text, n numeric, j jsonb); INSERT INTO qnums VALUES $NUMS"
bg qcapture capture --source "$DB" --table public.qnums --to "kafka://$K/qcdc" --format quix --batch-ms 10
qcap_pid=$!
bg qworker worker --from "kafka://$K/qcdc" --to "kafka://$K/qemb" --format quix --dead-letter dlq-qworker --threads 2
qworker_pid=$!
bg qsink sink --from "kafka://$K/qemb" --sink "$DB" --group qsink --dead-letter dlq-qworker
qsink_pid=$!
# integers every digit (numeric 9223372036854775808, 1e400: 401 digits); jsonb is a string in
# wal2json's format: its text as the source's; a fraction is a double by the format's definition
# (docs/TUTORIAL_FORMAT.md: the tutorial's json.loads), so row 5's n is 0.1
QEXACT="SELECT count(*) FROM qnums s JOIN cdcvec.public_qnums v USING (id)
  WHERE (v.payload->'n')::text = CASE WHEN id = 5 THEN '0.1' ELSE to_jsonb(s.n)::text END
    AND (v.payload->>'j') IS NOT DISTINCT FROM s.j::text"
has_q() { [ "$(q "SELECT to_regclass('cdcvec.public_qnums') IS NOT NULL")" = t ]; }
WATCH_PID=$qsink_pid wait_until 'has_q && [ "$(q "$QEXACT")" = 5 ]' 'has_q && sink_progress cdcvec.public_qnums; tail -c 300 "$work/qworker.log"'
check "big numbers, --format quix: the worker reads capture's messages, every row stored with every digit" \
  'has_q && [ "$(q "$QEXACT")" = 5 ]' || { q "SELECT id, payload FROM cdcvec.public_qnums"; tail -5 "$work/qworker.log"; }
check "--format quix: nothing went to the dead-letter topic" \
  '! "$PY" "$root/tests/kafka_tutorial.py" consume --bootstrap "$K" --topic dlq-qworker --count 1 --timeout-s 5 >/dev/null 2>&1'
check "no stage exited on its own" 'kill -0 $cap_pid && kill -0 $sink_pid && kill -0 $usink_pid && kill -0 $qcap_pid && kill -0 $qworker_pid && kill -0 $qsink_pid'
test_end 15
