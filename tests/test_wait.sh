#!/usr/bin/env bash
# test_wait.sh: read-your-writes against a real PostgreSQL 15 (scripts/pg.sh). 200 rounds of
# commit -> SELECT pg_current_wal_insert_lsn() -> GET /wait -> GET /search must find the row
# every time (and /search?min_lsn= alone must too); an LSN of a transaction that did not touch
# the table is covered once the stream passed it; timeouts answer 504 with JSON; a malformed LSN
# 400; the API key rule of /search applies; cdcvec wait exits 0 / 1; the applied LSN is a metric.
#   usage: test_wait.sh path/to/cdcvec
set -u
. "$(dirname "$0")/sync_lib.sh"
test_begin wait 43000 "$1"
sync_pid=
pg_up vector books
q "CREATE TABLE unrelated (id serial PRIMARY KEY, v text)"

hport=$(free_port $((port + 2)))
export CDCVEC_API_KEY=wait-test-key
AUTH="Authorization: Bearer $CDCVEC_API_KEY"
CDCVEC_LOG=warn "$bin" sync --source "$DB" --table public.books --batch-ms 10 --threads 2 \
  --http 127.0.0.1:$hport >>"$work/sync.log" 2>&1 &
sync_pid=$!
watch $sync_pid sync "$work/sync.log"
base="http://127.0.0.1:$hport"
WATCH_PID=$sync_pid wait_until '[ "$(q "SELECT count(*) FROM cdcvec.state WHERE backfill_done" 2>/dev/null)" = 1 ] && curl -sf -H "$AUTH" "$base/healthz" >/dev/null' \
  'sink_progress cdcvec.public_books'

# the LSN of a commit, read on the committing connection after it
commit_lsn() { psql -qAtX "$DB" -c "$1" -c "SELECT pg_current_wal_insert_lsn()" | tail -1; }

code() { curl -s -o "$work/body" -w "%{http_code}" -H "$AUTH" "$@"; }

lsn=$(commit_lsn "INSERT INTO unrelated (v) VALUES ('not in the publication')")
check "an LSN of a transaction that did not touch the table is covered (200)" \
  '[ "$(code "$base/wait?lsn=$lsn&timeout_ms=30000")" = 200 ] && grep -q "\"applied_lsn\"" "$work/body"'
check "the API key rule of /search applies to /wait (401 without it)" \
  '[ "$(curl -s -o /dev/null -w "%{http_code}" "$base/wait?lsn=0/1")" = 401 ]'
check "a malformed LSN is answered 400" '[ "$(code "$base/wait?lsn=zz/1")" = 400 ] && [ "$(code "$base/wait?lsn=1/2/3")" = 400 ] && [ "$(code "$base/wait")" = 400 ]'
check "a bad timeout_ms is answered 400" '[ "$(code "$base/wait?lsn=0/1&timeout_ms=-1")" = 400 ]'
t0=$SECONDS
check "a position not reached times out: 504 with JSON naming both positions" \
  '[ "$(code "$base/wait?lsn=FFFFFFFF/0&timeout_ms=300")" = 504 ] && python3 -c "import json,sys; d=json.load(open(sys.argv[1])); assert d[\"error\"][\"type\"] == \"timeout\" and d[\"lsn\"] == \"FFFFFFFF/0\" and \"/\" in d[\"applied_lsn\"]" "$work/body"'
check "the timeout is honoured (not much longer)" '[ $((SECONDS - t0)) -le 5 ]'
check "/search?min_lsn= not reached: 504" '[ "$(code "$base/search?q=x&min_lsn=FFFFFFFF/0&timeout_ms=200")" = 504 ]'
check "/search?min_lsn= malformed: 400" '[ "$(code "$base/search?q=x&min_lsn=nope")" = 400 ]'

# 100 rounds through /wait then /search, 100 through /search?min_lsn= alone: zero misses
misses=0
for i in $(seq 1 200); do
  text="read your writes round $i: a $(printf '%s' "$RANDOM$i" | md5sum | cut -c1-12) zeppelin crosses the tundra"
  out=$(psql -qAtX "$DB" -c "INSERT INTO books (name, description, author, year) VALUES ('ryw $i', '$text', 'ryw', 2000) RETURNING id" -c "SELECT pg_current_wal_insert_lsn()")
  id=$(echo "$out" | head -1)
  lsn=$(echo "$out" | tail -1)
  qs=$(python3 -c 'import sys, urllib.parse; print(urllib.parse.quote_plus(sys.argv[1]))' "$text")
  if [ $((i % 2)) = 0 ]; then
    c=$(code "$base/wait?lsn=$lsn&timeout_ms=30000")
    [ "$c" = 200 ] || { echo "  round $i: /wait answered $c: $(cat "$work/body")"; misses=$((misses + 1)); continue; }
    c=$(code "$base/search?q=$qs&limit=10")
  else
    c=$(code "$base/search?q=$qs&limit=10&min_lsn=$lsn&timeout_ms=30000")
  fi
  if [ "$c" != 200 ] || ! python3 -c 'import json, sys; r = json.load(open(sys.argv[1]))["results"]; sys.exit(0 if any(h["key"] == sys.argv[2] for h in r) else 1)' "$work/body" "$id"; then
    echo "  round $i: id $id not found (status $c)"
    misses=$((misses + 1))
  fi
done
check "200 rounds of commit, wait, search: zero misses ($misses)" '[ $misses = 0 ]'

lsn=$(commit_lsn "UPDATE books SET year = 1999 WHERE id = 1")
CDCVEC_SYNC_HTTP=127.0.0.1:$hport "$bin" wait --lsn "$lsn" --timeout-ms 30000 >"$work/w.out" 2>&1; rc=$?
check "cdcvec wait: exit 0 once covered, prints the answer" '[ $rc = 0 ] && grep -q applied_lsn "$work/w.out"'
"$bin" wait --http 127.0.0.1:$hport --lsn FFFFFFFF/0 --timeout-ms 200 >"$work/w.out" 2>&1; rc=$?
check "cdcvec wait: exit 1 on timeout" '[ $rc = 1 ] && grep -q timeout "$work/w.out"'
"$bin" wait --http 127.0.0.1:$hport >/dev/null 2>&1; rc=$?
check "cdcvec wait without --lsn: exit 2" '[ $rc = 2 ]'

num=$(python3 -c 'import sys; h, l = sys.argv[1].split("/"); print(int(h, 16) << 32 | int(l, 16))' "$lsn")
check "cdcvec_sync_applied_lsn is exported as a number >= the last LSN waited for" \
  'curl -sf -H "$AUTH" "$base/metrics" | tee "$work/m.txt" | awk -v n="$num" "/^cdcvec_sync_applied_lsn /{ok = (\$2 + 0 >= n + 0)} END {exit !ok}"'
check "/wait answers are counted" 'grep -q "^cdcvec_sync_wait_total{outcome=\"timeout\"} [1-9]" "$work/m.txt"'

kill -TERM $sync_pid && wait $sync_pid
rc=$?
sync_pid=
check "SIGTERM: sync exits 0" '[ $rc = 0 ]'
test_end 20 "$work/sync.log"
