#!/usr/bin/env bash
# test_chunks.sh: long texts stored as chunks in pgvector (--chunk-max-tokens), against a real
# PostgreSQL 15: a 5,000-token document, a short one and a medium one are chunked (every chunk's
# character offsets give back its hash, numbers 0..n-1, the row's text hash on each); one
# sentence rewritten in the middle re-embeds at most 2 chunks (cdcvec_chunks_embedded_total),
# the others keep their vectors; a shorter text leaves no chunk past its end; a deleted row
# leaves none; search returns each row once with its passage; verify finds a missing, a stale and
# an orphan chunk and --repair fixes them; the tutorial's ranking is unchanged with chunking on; a
# store table of the other layout and bad options are refused. Then the Kafka
# path (capture -> librdkafka's mock cluster -> worker --chunk-max-tokens -> sink into pgvector):
# the same documents give the same chunks and vectors as sync; an edit re-embeds at most 2 chunks
# (the worker's cache holds the others) and rewrites at most 2 in the store; a shorter text and a deleted
# row leave no chunk behind; a replayed topic changes nothing. Last, `cdcvec sync` killed -9
# during 2,000 changes of long documents (32-token chunks: inserts, one-sentence edits,
# shortenings, deletes): after a restart it converges to what a fresh backfill gives (the same
# chunks, offsets and vectors), with no chunk past a row's end and none of a deleted row.
#   usage: test_chunks.sh path/to/cdcvec [path/to/kafka_mock_broker]
set -u
. "$(dirname "$0")/sync_lib.sh"
test_begin chunks 44000 "$1"
sync_pid=
pg_up vector
q "CREATE TABLE docs (id int PRIMARY KEY, title text, body text NOT NULL)"

# documents of paragraphs of 2..7 sentences (deterministic; tests/chunk_docs.py)
python3 "$root/tests/chunk_docs.py" "$work"
psql -qX "$DB" -f "$work/load.sql" >/dev/null

hport=$(free_port $((port + 2)))
start_sync() {
  CDCVEC_LOG=${LOG:-warn} "$bin" sync --source "$DB" --table public.docs --text-column body --batch-ms 10 \
    --threads 2 --http 127.0.0.1:$hport "$@" >>"$work/sync.log" 2>&1 &
  sync_pid=$!
  watch "$sync_pid" sync "$work/sync.log"
}
stop_sync() { [ -n "$sync_pid" ] && kill -TERM "$sync_pid" && wait "$sync_pid"; local rc=$?; sync_pid=; return $rc; }
metric() { curl -sf "http://127.0.0.1:$hport/metrics" | awk -v m="$1" '$1 == m {print $2}'; }

# every source row's chunks: numbers 0..n-1, the row's text hash, offsets that give back the
# chunk's hash; no chunk of a row that is gone
MISMATCH="SELECT (SELECT count(*) FROM docs d FULL JOIN (SELECT id, count(*) n, max(chunk) m, min(chunk) lo
                    FROM cdcvec.public_docs GROUP BY id) c USING (id)
                  WHERE d.id IS NULL OR c.id IS NULL OR c.n <> c.m + 1 OR c.lo <> 0)
   + (SELECT count(*) FROM cdcvec.public_docs v JOIN docs d USING (id)
       WHERE v.text_hash <> sha256(convert_to(d.body, 'UTF8'))
          OR v.chunk_hash <> sha256(convert_to(substr(d.body, v.char_off + 1, v.char_len), 'UTF8')))"
converged() { converged_q "$MISMATCH" cdcvec.public_docs; }

start_sync --chunk-max-tokens 256 --chunk-overlap 32
check "long, short and medium texts stored as chunks, offsets giving back each chunk's hash" converged
q "CREATE TABLE sync_copy AS SELECT * FROM cdcvec.public_docs" # what the Kafka path must give too
n1=$(q "SELECT count(*) FROM cdcvec.public_docs WHERE id = 1")
check "the 5,000-token document is many chunks ($n1), the short text one, the whole text" \
  '[ "$n1" -ge 20 ] && [ "$(q "SELECT count(*)::text || char_off || char_len FROM cdcvec.public_docs v JOIN docs d USING (id) WHERE id = 2 AND char_len = length(d.body) GROUP BY char_off, char_len")" = 1039 ]'
q "SELECT chunk, embedding::text FROM cdcvec.public_docs WHERE id = 1 ORDER BY chunk" >"$work/before.txt"
WATCH_PID=$sync_pid wait_until '[ -n "$(metric cdcvec_chunks_embedded_total)" ]' 'cat "$work/sync.log" | wc -l'
e0=$(metric cdcvec_chunks_embedded_total)
psql -qX "$DB" -f "$work/edit.sql" >/dev/null
check "one sentence rewritten in the middle: converged" converged
e1=$(metric cdcvec_chunks_embedded_total)
kept=$(metric cdcvec_chunks_kept_total)
check "one sentence rewritten: 1 or 2 chunks embedded again ($((${e1%.*} - ${e0%.*}))), $kept kept" \
  '[ $((${e1%.*} - ${e0%.*})) -ge 1 ] && [ $((${e1%.*} - ${e0%.*})) -le 2 ] && [ "${kept%.*}" -ge $((n1 - 3)) ]'
q "SELECT chunk, embedding::text FROM cdcvec.public_docs WHERE id = 1 ORDER BY chunk" >"$work/after.txt"
check "the other chunks kept their vectors (at most 2 lines differ, numbers shifted or not)" \
  '[ "$(sort "$work/before.txt" | cut -d"|" -f2 | sort >"$work/b"; sort "$work/after.txt" | cut -d"|" -f2 | sort >"$work/a"; comm -13 "$work/b" "$work/a" | wc -l)" -le 2 ]'
# a paragraph inserted in the middle: the chunks after it move up one number, vectors kept
e1=$(metric cdcvec_chunks_embedded_total)
psql -qX "$DB" -f "$work/insert.sql" >/dev/null
check "a paragraph inserted in the middle: converged (renumbered chunks' offsets give back their hashes)" converged
e2=$(metric cdcvec_chunks_embedded_total)
n1b=$(q "SELECT count(*) FROM cdcvec.public_docs WHERE id = 1")
check "a paragraph inserted: $n1 -> $n1b chunks, $((${e2%.*} - ${e1%.*})) embedded" \
  '[ "$n1b" -gt "$n1" ] && [ $((${e2%.*} - ${e1%.*})) -ge 1 ] && [ $((${e2%.*} - ${e1%.*})) -le 3 ]'
# search by row: each row once, with its nearest chunk's passage (cut from the row's text)
json=$(curl -sf "http://127.0.0.1:$hport/search?q=ancient+river+bridge+at+morning&limit=3&format=json")
check "/search: 3 rows, each once, each with its passage (the chunk's text)" "echo \"\$json\" | python3 -c '
import json, sys
r = json.load(sys.stdin)[\"results\"]
keys = [h[\"key\"] for h in r]
assert len(r) == 3 and len(set(keys)) == 3, keys
for h in r:
    p = h[\"passage\"]
    assert p[\"text\"] and p[\"text\"] == h[\"text\"][p[\"char_off\"]:p[\"char_off\"] + p[\"char_len\"]], h
'" || echo "  $json" | head -c 600
check "the search page marks the passage" \
  'curl -sf "http://127.0.0.1:$hport/?q=ancient+river+bridge+at+morning&limit=3" | grep -q "<mark class=passage>"'
# verify per chunk: a chunk deleted, a stale chunk hash, an orphan past the end; --repair fixes them
stop_sync
vf() { CDCVEC_LOG=warn "$bin" verify --source "$DB" --table public.docs --text-column body --chunk-max-tokens 256 --threads 2 "$@"; }
vf >"$work/v0.txt" 2>&1; rc=$?
check "verify: none (exit $rc)" '[ $rc -eq 0 ]' || tail -3 "$work/v0.txt"
q "DELETE FROM cdcvec.public_docs WHERE id = 3 AND chunk = 1; UPDATE cdcvec.public_docs SET chunk_hash = sha256('x') WHERE id = 1 AND chunk = 2;
   INSERT INTO cdcvec.public_docs (id, chunk, chunk_hash, char_off, char_len, embedding, payload, text_hash, model, source_lsn, updated_at)
   SELECT id, 1, chunk_hash, char_off, char_len, embedding, payload, text_hash, model, source_lsn, updated_at FROM cdcvec.public_docs WHERE id = 2 AND chunk = 0" >/dev/null
vf --show 0 >"$work/v1.txt" 2>&1; rc=$?
check "verify finds the missing, stale and orphan chunks (exit $rc)" \
  '[ $rc -eq 3 ] && grep -q "^missing_chunk key=3" "$work/v1.txt" && grep -q "^stale_chunk key=1" "$work/v1.txt" && grep -q "^orphan_chunk key=2" "$work/v1.txt"' ||
  cat "$work/v1.txt"
vf --repair 1 >"$work/v2.txt" 2>&1
vf >"$work/v3.txt" 2>&1; rc=$?
check "verify --repair fixed them (verify: exit $rc)" '[ $rc -eq 0 ] && converged' || cat "$work/v2.txt" "$work/v3.txt"
start_sync --chunk-max-tokens 256 --chunk-overlap 32
n3=$(q "SELECT count(*) FROM cdcvec.public_docs WHERE id = 3")
psql -qX "$DB" -f "$work/shorten.sql" >/dev/null
check "a shorter text: no chunk past its end" 'converged && [ "$(q "SELECT count(*) FROM cdcvec.public_docs WHERE id = 3")" -lt "$n3" ]'
q "DELETE FROM docs WHERE id = 1"
check "a deleted row: none of its chunks left" 'converged && [ "$(q "SELECT count(*) FROM cdcvec.public_docs WHERE id = 1")" = 0 ]'
q "TRUNCATE docs"
check "truncate: no chunk left" 'converged && [ "$(q "SELECT count(*) FROM cdcvec.public_docs")" = 0 ]'
stop_sync

# ---- the Kafka path: the worker chunks, the sink stores the chunks -----------------------------
if [ -n "${2:-}" ]; then
  . "$root/tests/kafka_lib.sh"
  kmock_start "$2" --topic cdc:2 --topic emb:2 || { echo "FAIL cannot start the mock broker"; exit 1; }
  K=$KMOCK_BOOTSTRAP
  q "DROP TABLE cdcvec.public_docs" # a new store table: the sink makes it chunked (the messages say so)
  psql -qX "$DB" -f "$work/load.sql" >/dev/null
  kport=$(free_port $((hport + 1)))
  wport=$(free_port $((kport + 1)))
  CDCVEC_LOG=${LOG:-warn} "$bin" capture --source "$DB" --table public.docs --text-column body --to "kafka://$K/cdc" \
    --batch-ms 10 >>"$work/capture.log" 2>&1 &
  cap_pid=$!
  watch $cap_pid capture "$work/capture.log"
  CDCVEC_LOG=${LOG:-warn} "$bin" worker --from "kafka://$K/cdc" --to "kafka://$K/emb" --threads 2 \
    --chunk-max-tokens 256 --chunk-overlap 32 --http 127.0.0.1:$wport >>"$work/worker.log" 2>&1 &
  w_pid=$!
  watch $w_pid worker "$work/worker.log"
  start_ksink() {
    CDCVEC_LOG=${LOG:-warn} "$bin" sink --from "kafka://$K/emb" --sink "$DB" --http 127.0.0.1:$kport "$@" >>"$work/ksink.log" 2>&1 &
    ks_pid=$!
    watch $ks_pid ksink "$work/ksink.log"
  }
  start_ksink
  kmetric() { curl -sf "http://127.0.0.1:$1/metrics" | awk -v m="$2" '$1 == m {print $2}'; }
  kconverged() {
    WATCH_PID=$ks_pid wait_until '[ "$(q "SELECT to_regclass('"'"'cdcvec.public_docs'"'"') IS NOT NULL")" = t ]' \
      'cat "$work"/*.log | wc -c' && converged
  }
  SAME="SELECT count(*) FROM sync_copy s FULL JOIN cdcvec.public_docs k USING (id, chunk)
    WHERE s.id IS NULL OR k.id IS NULL OR s.chunk_hash <> k.chunk_hash OR s.char_off <> k.char_off
       OR s.char_len <> k.char_len OR s.text_hash <> k.text_hash OR (s.embedding <=> k.embedding) > 1e-6"
  check "Kafka path: the documents stored as chunks, as sync stored them (chunks, offsets, vectors)" \
    'kconverged && [ "$(q "$SAME")" = 0 ]'
  WATCH_PID=$ks_pid wait_until '[ -n "$(kmetric $kport cdcvec_chunks_embedded_total)" ]' 'cat "$work"/*.log | wc -c'
  s0=$(kmetric $kport cdcvec_chunks_embedded_total) w0=$(kmetric $wport 'cdcvec_chunks_embedded_total{stage="worker"}')
  psql -qX "$DB" -f "$work/edit.sql" >/dev/null
  check "Kafka path: one sentence rewritten in the middle: converged" kconverged
  n1e=$(q "SELECT count(*) FROM cdcvec.public_docs WHERE id = 1")
  s1=$(kmetric $kport cdcvec_chunks_embedded_total) w1=$(kmetric $wport 'cdcvec_chunks_embedded_total{stage="worker"}')
  c1=$(kmetric $wport 'cdcvec_chunks_cached_total{stage="worker"}')
  check "Kafka path: one sentence rewritten: the worker embedded $((${w1%.*} - ${w0%.*})) chunk(s) (1 or 2; ${c1%.*} from its cache), the sink wrote $((${s1%.*} - ${s0%.*})) (1 or 2) and kept the others" \
    '[ $((${s1%.*} - ${s0%.*})) -ge 1 ] && [ $((${s1%.*} - ${s0%.*})) -le 2 ] &&
     [ $((${w1%.*} - ${w0%.*})) -ge 1 ] && [ $((${w1%.*} - ${w0%.*})) -le 2 ] && [ $((${w1%.*} - ${w0%.*} + ${c1%.*})) -eq "$n1e" ]'
  n3=$(q "SELECT count(*) FROM cdcvec.public_docs WHERE id = 3")
  psql -qX "$DB" -f "$work/shorten.sql" >/dev/null
  check "Kafka path: a shorter text: no chunk past its end" \
    'kconverged && [ "$(q "SELECT count(*) FROM cdcvec.public_docs WHERE id = 3")" -lt "$n3" ]'
  q "DELETE FROM docs WHERE id = 1"
  check "Kafka path: a deleted row: none of its chunks left" \
    'kconverged && [ "$(q "SELECT count(*) FROM cdcvec.public_docs WHERE id = 1")" = 0 ]'
  # the whole topic again (a sink whose offsets were lost): idempotent, the same store
  q "CREATE TABLE k_copy AS SELECT id, chunk, chunk_hash, char_off, char_len, text_hash, embedding FROM cdcvec.public_docs"
  kill -TERM $ks_pid; wait $ks_pid; unwatch $ks_pid
  start_ksink --group replay
  KSAME="SELECT count(*) FROM k_copy s FULL JOIN cdcvec.public_docs k USING (id, chunk)
    WHERE s.id IS NULL OR k.id IS NULL OR s.chunk_hash <> k.chunk_hash OR s.embedding <> k.embedding"
  q "INSERT INTO docs VALUES (4, 'last', 'The last document.')"
  replayed() { # caught up (no lag) and the store as before, with the one new document
    [ "$(kmetric $kport 'cdcvec_kafka_consumer_lag_messages{stage="sink"}')" = 0 ] && [ "$(q "$KSAME")" = 1 ]
  }
  check "Kafka path: the topic replayed from its start: the same chunks (idempotent)" \
    'kconverged && WATCH_PID=$ks_pid wait_until replayed "kmetric $kport cdcvec_kafka_messages_total; cat $work/*.log | wc -c"'
  kill -TERM $ks_pid $w_pid $cap_pid; wait $ks_pid $w_pid $cap_pid; unwatch $ks_pid $w_pid $cap_pid
  "$bin" worker --from "kafka://$K/cdc" --to "kafka://$K/emb" --chunk-max-tokens 256 --embed tcp://127.0.0.1:1 \
    >"$work/bad.log" 2>&1; rc=$?
  check "worker --chunk-max-tokens with --embed: refused with the fix (exit $rc)" '[ $rc -ne 0 ] && grep -q "drop --embed" "$work/bad.log"'
  kmock_stop
fi

# a store table of the other layout is refused, with the fix; so are bad options
unwatch
timeout 120 "$bin" sync --source "$DB" --table public.docs --text-column body --threads 2 >"$work/off.log" 2>&1; rc=$?
check "chunking off on a chunked store table: refused with the fix, the sync stopped (exit $rc)" \
  '[ $rc -ne 0 ] && [ $rc -ne 124 ] && grep -q "event=chunk_layout_mismatch.*fix=" "$work/off.log" && grep -q "kind=config" "$work/off.log"'
"$bin" sync --source "$DB" --table public.docs --chunk-max-tokens 8 >/dev/null 2>"$work/bad.log"; rc=$?
check "--chunk-max-tokens 8: exit 2 with a message" '[ $rc -eq 2 ] && grep -q "max_tokens" "$work/bad.log"'
"$bin" sync --source "$DB" --table public.docs --chunk-max-tokens 256 --embed tcp://127.0.0.1:1 >/dev/null 2>"$work/bad.log"; rc=$?
check "--chunk-max-tokens with --embed: exit 2 with the fix" '[ $rc -eq 2 ] && grep -q "drop --embed" "$work/bad.log"'
printf 'source: %s\ntables:\n  - table: public.docs\n    text: body\n    chunk: {max_tokens: 10, overlap: 2}\n' "$DB" >"$work/p.yaml"
"$bin" sync --config "$work/p.yaml" >/dev/null 2>"$work/bad.log"; rc=$?
check "the pipeline file's chunk: reaches the same options (max_tokens 10: exit 2 with the message)" \
  '[ $rc -eq 2 ] && grep -q "tables\[0\].*chunk max_tokens 10" "$work/bad.log"'

# the tutorial's ranking with chunking on (short texts: one chunk each)
books 1
tut() { CDCVEC_LOG=warn "$bin" backfill --source "$DB" --table public.books --chunk-max-tokens 256 --threads 2 2>>"$work/tut.log"; }
search() { CDCVEC_LOG=error "$bin" search "books like star wars" --source "$DB" --table public.books --limit 3 --threads 2 2>&1; }
tut
out=$(search)
check "chunking on, after batch 1: \"books like star wars\" ranks Dune first, as one chunk" \
  'echo "$out" | head -1 | grep -q "^ 1\. 0\.[0-9]*  key=[0-9]*  {.*\"name\": \"Dune\".*chunk=0 "' || echo "$out"
books 2
tut
out=$(search)
check "chunking on, after batch 2: Old Man's War then Dune" \
  'echo "$out" | sed -n 1p | grep -q "Old Man" && echo "$out" | sed -n 2p | grep -q "\"Dune\""' || echo "$out"

# ---- kill -9 during 2,000 changes of long documents ---------------------------------------------
q "CREATE TABLE longdocs (id int PRIMARY KEY, body text NOT NULL)"
python3 "$root/tests/chunk_workload.py" load longdocs 60 25 >"$work/long_load.sql"
python3 "$root/tests/chunk_workload.py" changes longdocs 60 2000 20 25 >"$work/long_changes.sql"
psql -qX "$DB" -f "$work/long_load.sql" >/dev/null
LONG_OPTS=(--table public.longdocs --text-column body --chunk-max-tokens 32 --chunk-overlap 4 --threads 2)
start_long() {
  CDCVEC_LOG=${LOG:-warn} "$bin" sync --source "$DB" "${LONG_OPTS[@]}" --batch-ms 10 >>"$work/long.log" 2>&1 &
  long_pid=$!
  watch $long_pid long_sync "$work/long.log"
}
LMISMATCH="SELECT (SELECT count(*) FROM longdocs d FULL JOIN (SELECT id, count(*) n, max(chunk) m, min(chunk) lo
                    FROM cdcvec.public_longdocs GROUP BY id) c USING (id)
                  WHERE d.id IS NULL OR c.id IS NULL OR c.n <> c.m + 1 OR c.lo <> 0)
   + (SELECT count(*) FROM cdcvec.public_longdocs v JOIN longdocs d USING (id)
       WHERE v.text_hash <> sha256(convert_to(d.body, 'UTF8'))
          OR v.chunk_hash <> sha256(convert_to(substr(d.body, v.char_off + 1, v.char_len), 'UTF8')))"
lconverged() { WATCH_PID=$long_pid converged_q "$LMISMATCH" cdcvec.public_longdocs; }
start_long
check "long documents: the initial backfill as 32-token chunks" lconverged
psql -qX "$DB" -v ON_ERROR_STOP=1 -f "$work/long_changes.sql" >"$work/long_load.log" 2>&1 &
load_pid=$!
# killed once the sync has applied about a third of the changes (of the documents they insert)
third=$(($(grep -c '^INSERT' "$work/long_changes.sql") / 3))
WATCH_PID=$long_pid wait_until '[ "$(q "SELECT count(DISTINCT id) FROM cdcvec.public_longdocs WHERE id > 60")" -ge $third ]' \
  'q "SELECT count(*), max(updated_at) FROM cdcvec.public_longdocs"'
kill -9 $long_pid; wait $long_pid 2>/dev/null; unwatch $long_pid
wait $load_pid; lrc=$?
applied=$(q "SELECT count(DISTINCT id) FROM cdcvec.public_longdocs WHERE id > 60")
inserted=$(q "SELECT count(*) FROM longdocs WHERE id > 60")
left=$(q "$LMISMATCH")
check "the sync killed -9 in the middle of the 2,000 changes ($applied of $inserted new documents stored, $left rows differing)" \
  '[ $lrc = 0 ] && [ "$applied" -lt "$inserted" ] && [ "$left" -gt 0 ]'
start_long
check "after a restart: converged (numbers 0..n-1, offsets giving back each chunk's hash, no chunk past a row's end, none of a deleted row)" lconverged
q "CREATE DATABASE fresh" >/dev/null
FRESH=${DB%/*}/fresh
q "CREATE EXTENSION vector" "$FRESH" >/dev/null
CDCVEC_LOG=warn timeout 300 "$bin" backfill --source "$DB" --sink "$FRESH" "${LONG_OPTS[@]}" >"$work/fresh.log" 2>&1; frc=$?
q "CREATE TABLE fresh_copy (id int, chunk int, chunk_hash bytea, char_off int, char_len int, text_hash bytea, embedding vector)"
psql -qAtX "$FRESH" -c "COPY (SELECT id, chunk, chunk_hash, char_off, char_len, text_hash, embedding FROM cdcvec.public_longdocs) TO STDOUT" |
  psql -qX "$DB" -c "COPY fresh_copy FROM STDIN"
LSAME="SELECT count(*) FROM fresh_copy f FULL JOIN cdcvec.public_longdocs v USING (id, chunk)
  WHERE f.id IS NULL OR v.id IS NULL OR f.chunk_hash <> v.chunk_hash OR f.char_off <> v.char_off
     OR f.char_len <> v.char_len OR f.text_hash <> v.text_hash OR (f.embedding <=> v.embedding) > 1e-6"
nl=$(q "SELECT count(*) || ' chunks of ' || count(DISTINCT id) || ' rows' FROM cdcvec.public_longdocs")
check "the store equals a fresh backfill's ($nl: chunks, offsets, hashes, vectors)" \
  '[ $frc = 0 ] && [ "$(q "SELECT count(*) FROM fresh_copy")" -gt 0 ] && [ "$(q "$LSAME")" = 0 ]' ||
  { echo "  backfill exit $frc; differing: $(q "$LSAME")"; tail -5 "$work/fresh.log"; }
kill -TERM $long_pid; wait $long_pid; unwatch $long_pid

[ $fail -ne 0 ] && { echo "--- sync log (tail)"; tail -40 "$work/sync.log"; }
test_end
