#!/usr/bin/env bash
# test_chunks_remote.sh: long texts stored as chunks in Qdrant or Upstash (the stand-ins of
# tests/standins/), read back through the vendor's client (tests/chunk_check.py), with the
# fixture of test_chunks.sh (tests/chunk_docs.py) and a real PostgreSQL 15: a 5,000-token
# document, a short and a medium one are one point per (key, chunk) with the documented ids; one
# sentence rewritten in the middle re-embeds at most 2 chunks (cdcvec_chunks_embedded_total) and
# the store then equals a fresh backfill into another collection; a paragraph inserted; search
# returns each row once with its passage (JSON and the page); verify finds a missing chunk, a
# stale one and an orphan past the end, and --repair fixes them; a run without chunking on a
# chunked Qdrant collection is refused; a shorter text leaves no chunk
# past its end (once /wait answers for its LSN); kill -9 during changes of long texts converges
# with no orphan chunk; a deleted row none, TRUNCATE none; the tutorial's
# ranking is unchanged with chunking on (short texts: one chunk each). With the mock broker, the
# Kafka path (capture -> worker --chunk-max-tokens -> sink into another collection / namespace):
# the same points as sync stored (hashes, offsets, vectors within 1e-6), a shorter text and a
# deleted row leave no chunk behind, a replayed topic changes nothing.
#   usage: test_chunks_remote.sh qdrant|upstash path/to/cdcvec [path/to/kafka_mock_broker]
set -u
store=$1
. "$(dirname "$0")/sync_lib.sh"
test_begin "chunks-$store" 45000 "$2"
PY=$(bash "$root/scripts/test-venv.sh") || { echo "FAIL the tests' Python venv"; exit 1; }
sync_pid=
pg_up books
q "CREATE TABLE docs (id int PRIMARY KEY, title text, body text NOT NULL)"
python3 "$root/tests/chunk_docs.py" "$work"
psql -qX "$DB" -f "$work/load.sql" >/dev/null
q "CREATE TABLE docs_orig AS SELECT * FROM docs" # the texts as loaded, to restore (not published)

echo "s3cret-$$" >"$work/key"
if [ "$store" = qdrant ]; then
  standin qdrant --api-key-file "$work/key" || exit 1
  export QDRANT_URL=http://127.0.0.1:$standin_port QDRANT_API_KEY_FILE=$work/key
  sink() { echo "qdrant://127.0.0.1:$standin_port/$1"; }
  nsopt() { :; }
else
  standin upstash --token-file "$work/key" --dimension 384 || exit 1
  export UPSTASH_VECTOR_REST_URL=http://127.0.0.1:$standin_port UPSTASH_VECTOR_REST_TOKEN_FILE=$work/key
  sink() { echo "upstash://"; }
  nsopt() { echo "--namespace $1"; }
fi
sport=$standin_port
CH="--chunk-max-tokens 256 --chunk-overlap 32"
hport=$(free_port $((sport + 5)))
start_sync() {
  # shellcheck disable=SC2046,SC2086
  CDCVEC_LOG=${LOG:-warn} "$bin" sync --source "$DB" --table public.docs --text-column body --sink "$(sink docs)" \
    $(nsopt docs) $CH --batch-ms 10 --threads 2 --http 127.0.0.1:$hport "$@" >>"$work/sync.log" 2>&1 &
  sync_pid=$!
  watch "$sync_pid" sync "$work/sync.log"
}
stop_sync() { [ -n "$sync_pid" ] && kill -TERM "$sync_pid" && wait "$sync_pid"; local rc=$?; sync_pid=; return $rc; }
metric() { curl -sf "http://127.0.0.1:$hport/metrics" | awk -v m="$1" '$1 == m {print $2}'; }
cc() { "$PY" "$root/tests/chunk_check.py" "$store" "$@"; }
mismatches() {
  q "SELECT coalesce(json_agg(json_build_object('id', id, 'text', body)), '[]') FROM docs" >"$work/src.json" &&
    cc docs public.docs mismatches "$work/src.json" 2>"$work/mm.txt"
}
converged() {
  wait_until '[ "$(mismatches)" = 0 ]' 'mismatches; wc -c <"$work/sync.log"' &&
    return 0
  echo "  mismatches: $(mismatches) $(head -3 "$work/mm.txt")"
  return 1
}
count() { cc docs public.docs count "$1"; }

start_sync
check "$store: long, short and medium texts stored as chunks (ids, numbers, hashes, offsets)" converged
n1=$(count 1)
check "$store: the 5,000-token document is many points ($n1), the short text one" '[ "$n1" -ge 20 ] && [ "$(count 2)" = 1 ]'
WATCH_PID=$sync_pid wait_until '[ -n "$(metric cdcvec_chunks_embedded_total)" ]' 'wc -l <"$work/sync.log"'
e0=$(metric cdcvec_chunks_embedded_total)
psql -qX "$DB" -f "$work/edit.sql" >/dev/null
check "$store: one sentence rewritten in the middle: converged" converged
e1=$(metric cdcvec_chunks_embedded_total)
check "$store: one sentence rewritten: 1 or 2 chunks embedded again ($((${e1%.*} - ${e0%.*})))" \
  '[ $((${e1%.*} - ${e0%.*})) -ge 1 ] && [ $((${e1%.*} - ${e0%.*})) -le 2 ]'
# the store equals what a fresh backfill writes (another collection / namespace, same options)
# shellcheck disable=SC2046,SC2086
CDCVEC_LOG=warn "$bin" backfill --source "$DB" --table public.docs --text-column body --sink "$(sink fresh)" \
  $(nsopt fresh) $CH --threads 2 --slot fresh_docs 2>"$work/bf.log"; rc=$?
cc docs public.docs dump "$work/live.json" && cc fresh public.docs dump "$work/fresh.json"
d=$("$PY" "$root/tests/chunk_check.py" same "$work/live.json" "$work/fresh.json" 2>"$work/same.txt")
check "$store: after the edit the store equals a fresh backfill (exit $rc, $d differences)" '[ $rc -eq 0 ] && [ "$d" = 0 ]' ||
  { head -5 "$work/same.txt"; tail -3 "$work/bf.log"; }
e1=$(metric cdcvec_chunks_embedded_total)
psql -qX "$DB" -f "$work/insert.sql" >/dev/null
check "$store: a paragraph inserted in the middle: converged" converged
e2=$(metric cdcvec_chunks_embedded_total)
check "$store: a paragraph inserted: $n1 -> $(count 1) points, $((${e2%.*} - ${e1%.*})) embedded" \
  '[ "$(count 1)" -gt "$n1" ] && [ $((${e2%.*} - ${e1%.*})) -le 3 ]'

# search by row: each row once, its best chunk's passage cut from the text
json=$(curl -sf "http://127.0.0.1:$hport/search?q=ancient+river+bridge+at+morning&limit=3&format=json")
check "$store: /search: 3 rows, each once, each with its passage (the chunk's text)" "echo \"\$json\" | \"$PY\" -c '
import json, sys, hashlib
r = json.load(sys.stdin)[\"results\"]
keys = [h[\"key\"] for h in r]
assert len(r) == 3 and len(set(keys)) == 3, keys
for h in r:
    p = h[\"passage\"]
    assert p[\"text\"] and p[\"text\"] == h[\"text\"][p[\"char_off\"]:p[\"char_off\"] + p[\"char_len\"]], h
'" || echo "  $json" | head -c 600
page=$(curl -sf "http://127.0.0.1:$hport/?q=ancient+river+bridge+at+morning&limit=3")
check "$store: the search page marks the passage" 'echo "$page" | grep -q "<mark class=passage>"'

# verify per chunk: a chunk deleted, a stale chunk hash, an orphan past the end
stop_sync
vf() {
  # shellcheck disable=SC2046,SC2086
  CDCVEC_LOG=warn "$bin" verify --source "$DB" --table public.docs --text-column body --sink "$(sink docs)" \
    $(nsopt docs) $CH --threads 2 "$@"
}
vf >"$work/v0.txt" 2>&1; rc=$?
check "$store: verify: none (exit $rc)" '[ $rc -eq 0 ]' || tail -3 "$work/v0.txt"
"$PY" "$root/tests/chunk_damage.py" "$store" docs public.docs 3 2>&1
vf --show 0 >"$work/v1.txt" 2>&1; rc=$?
check "$store: verify finds the missing, stale and orphan chunks (exit $rc)" \
  '[ $rc -eq 3 ] && grep -q "^missing_chunk key=3" "$work/v1.txt" && grep -q "^stale_chunk key=1" "$work/v1.txt" && grep -q "^orphan_chunk key=2" "$work/v1.txt"' ||
  cat "$work/v1.txt"
vf --repair 1 >"$work/v2.txt" 2>&1
vf >"$work/v3.txt" 2>&1; rc=$?
check "$store: verify --repair fixed them (verify: exit $rc)" '[ $rc -eq 0 ] && [ "$(mismatches)" = 0 ]' ||
  { cat "$work/v2.txt" "$work/v3.txt"; head -3 "$work/mm.txt"; }
if [ "$store" = qdrant ]; then
  CH= vf >"$work/v4.txt" 2>&1; rc=$?
  check "qdrant: a run without chunking on the chunked collection is refused with the fix (exit $rc)" \
    '[ $rc -eq 1 ] && grep -q "event=chunk_layout_mismatch.*--chunk-max-tokens" "$work/v4.txt"' || tail -3 "$work/v4.txt"
fi
start_sync

WATCH_PID=$sync_pid wait_until 'curl -sf "http://127.0.0.1:$hport/metrics" >/dev/null' 'wc -c <"$work/sync.log"'
n3=$(count 3)
psql -qX "$DB" -f "$work/shorten.sql" >/dev/null
lsn=$(q "SELECT pg_current_wal_lsn()")
w=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$hport/wait?lsn=$lsn&timeout_ms=60000")
check "$store: /wait covers the shortened row's chunks: 200, then at once none past its end ($n3 -> $(count 3))" \
  '[ "$w" = 200 ] && [ "$(mismatches)" = 0 ] && [ "$(count 3)" -lt "$n3" ]' || head -3 "$work/mm.txt"
# kill -9 at random moments while long texts grow, shrink and change: converges, no orphan chunk
(for i in $(seq 16); do
  case $((i % 4)) in
  0) q "UPDATE docs d SET body = o.body FROM docs_orig o WHERE d.id = o.id" ;;
  1) q "UPDATE docs SET body = left(body, 1500 + 50 * $i) || ' End.' WHERE id = 1" ;;
  2) psql -qX "$DB" -f "$work/shorten.sql" ;;
  3) psql -qX "$DB" -f "$work/edit.sql" ;;
  esac >/dev/null
  sleep 0.$((RANDOM % 5 + 3))
done) &
load_pid=$!
kill_sync_during_load
check "$store: kill -9 during 16 changes of long texts ($kills kills): converged, no orphan chunk" converged
q "DELETE FROM docs WHERE id = 1"
check "$store: a deleted row: none of its chunks left" 'converged && [ "$(count 1)" = 0 ]'
q "TRUNCATE docs"
check "$store: truncate: no chunk left" 'converged && [ "$(cc docs public.docs dump /dev/stdout)" = "{}" ]'
stop_sync

# ---- the Kafka path into the same store: capture -> mock broker -> worker (chunking) -> sink ----
if [ -n "${3:-}" ]; then
  . "$root/tests/kafka_lib.sh"
  kmock_start "$3" --topic cdc:2 --topic emb:2 || { echo "FAIL cannot start the mock broker"; exit 1; }
  K=$KMOCK_BOOTSTRAP
  start_sync # the reference: what sync stores for the rows loaded again
  q "INSERT INTO docs SELECT * FROM docs_orig"
  check "$store: the documents loaded again, through sync: converged" converged
  stop_sync
  cc docs public.docs dump "$work/sync.json"
  kport=$(free_port $((hport + 1)))
  wport=$(free_port $((kport + 1)))
  CDCVEC_LOG=${LOG:-warn} "$bin" capture --source "$DB" --table public.docs --text-column body --to "kafka://$K/cdc" \
    --batch-ms 10 >>"$work/capture.log" 2>&1 &
  cap_pid=$!
  watch $cap_pid capture "$work/capture.log"
  CDCVEC_LOG=${LOG:-warn} "$bin" worker --from "kafka://$K/cdc" --to "kafka://$K/emb" --threads 2 \
    $CH --http 127.0.0.1:$wport >>"$work/worker.log" 2>&1 &
  w_pid=$!
  watch $w_pid worker "$work/worker.log"
  start_ksink() {
    # shellcheck disable=SC2046
    CDCVEC_LOG=${LOG:-warn} "$bin" sink --from "kafka://$K/emb" --sink "$(sink kdocs)" $(nsopt kdocs) \
      --http 127.0.0.1:$kport "$@" >>"$work/ksink.log" 2>&1 &
    ks_pid=$!
    watch $ks_pid ksink "$work/ksink.log"
  }
  start_ksink
  kmetric() { curl -sf "http://127.0.0.1:$1/metrics" | awk -v m="$2" '$1 == m {print $2}'; }
  kmismatches() {
    q "SELECT coalesce(json_agg(json_build_object('id', id, 'text', body)), '[]') FROM docs" >"$work/src.json" &&
      cc kdocs public.docs mismatches "$work/src.json" 2>"$work/kmm.txt"
  }
  kconverged() {
    WATCH_PID=$ks_pid wait_until '[ "$(kmismatches)" = 0 ]' 'kmismatches; cat "$work"/*.log | wc -c' && return 0
    echo "  mismatches: $(kmismatches) $(head -3 "$work/kmm.txt")"
    grep -h "level=error" "$work/ksink.log" | tail -2
    return 1
  }
  ksame() { # differences between the Kafka store and $1 (a dump), vectors within 1e-6
    cc kdocs public.docs dump "$work/k.json" &&
      "$PY" "$root/tests/chunk_check.py" same "$1" "$work/k.json" 1e-6 2>"$work/ksame.txt"
  }
  check "$store: Kafka path: the documents stored as chunks, as sync stored them (ids, hashes, offsets, vectors within 1e-6)" \
    'kconverged && [ "$(ksame "$work/sync.json")" = 0 ]' || head -3 "$work/ksame.txt"
  n1=$(cc kdocs public.docs count 1)
  psql -qX "$DB" -f "$work/insert.sql" >/dev/null
  check "$store: Kafka path: a paragraph inserted in the middle: the chunks after it renumbered, converged" \
    'kconverged && [ "$(cc kdocs public.docs count 1)" -gt "$n1" ]'
  n3=$(cc kdocs public.docs count 3)
  psql -qX "$DB" -f "$work/shorten.sql" >/dev/null
  check "$store: Kafka path: a shorter text: no chunk past its end (had $n3)" \
    'kconverged && [ "$(cc kdocs public.docs count 3)" -lt "$n3" ]'
  q "DELETE FROM docs WHERE id = 1"
  check "$store: Kafka path: a deleted row: none of its chunks left" 'kconverged && [ "$(cc kdocs public.docs count 1)" = 0 ]'
  # the whole topic again (a sink whose offsets were lost): idempotent, the same store
  cc kdocs public.docs dump "$work/k_before.json"
  kill -TERM $ks_pid; wait $ks_pid; unwatch $ks_pid
  start_ksink --group replay
  q "INSERT INTO docs VALUES (4, 'last', 'The last document.')"
  replayed() { # caught up (no lag), converged, and the store as before but for the one new document
    [ "$(kmetric $kport 'cdcvec_kafka_consumer_lag_messages{stage="sink"}')" = 0 ] && [ "$(kmismatches)" = 0 ] &&
      [ "$(ksame "$work/k_before.json")" = 1 ] && grep -q "^differs 4/0: None" "$work/ksame.txt"
  }
  check "$store: Kafka path: the topic replayed from its start: the same chunks (idempotent)" \
    'WATCH_PID=$ks_pid wait_until replayed "kmetric $kport cdcvec_kafka_messages_total; cat $work/*.log | wc -c"' ||
    { kmismatches; head -3 "$work/kmm.txt" "$work/ksame.txt"; }
  kill -TERM $ks_pid $w_pid $cap_pid; wait $ks_pid $w_pid $cap_pid; unwatch $ks_pid $w_pid $cap_pid
  kmock_stop
fi

# the tutorial's ranking with chunking on: short texts are one chunk each
search() {
  # shellcheck disable=SC2046,SC2086
  CDCVEC_LOG=error "$bin" search "books like star wars" --source "$DB" --table public.books --sink "$(sink books)" \
    $(nsopt books) --limit 3 --threads 2 2>&1
}
tut() {
  # shellcheck disable=SC2046,SC2086
  CDCVEC_LOG=warn "$bin" backfill --source "$DB" --table public.books --sink "$(sink books)" $(nsopt books) $CH \
    --threads 2 2>>"$work/tut.log"
}
tut
out=$(search)
check "$store: chunking on, after batch 1: \"books like star wars\" ranks Dune first, as one chunk" \
  'echo "$out" | head -1 | grep -q "^ 1\. 0\.[0-9]*  key=[0-9]*  {.*\"name\":\"Dune\".*chunk=0 "' || echo "$out"
books 2
tut
out=$(search)
check "$store: chunking on, after batch 2: Old Man's War then Dune" \
  'echo "$out" | sed -n 1p | grep -q "Old Man" && echo "$out" | sed -n 2p | grep -q "\"Dune\""' || echo "$out"

test_end
