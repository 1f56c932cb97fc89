#!/usr/bin/env bash
# test_health.sh: lag, readiness and signals of `cdcvec sync` against a real PostgreSQL 15
# (scripts/pg.sh) and the Qdrant stand-in (tests/standins/), stopped and started under writes:
#   - /readyz 200 while streaming, 503 while the store is down, 200 again after; /healthz (the
#     liveness probe) 200 throughout;
#   - cdcvec_sync_replication_lag_bytes / _seconds and the slot's retained WAL grow while the
#     store is down (the server's figures, read on a connection of their own), a warning once
#     the retained WAL passes --wal-warn-mb, and the lag falls once the store is back;
#   - the source database down: /readyz 503, cdcvec_sync_source_up 0; back: ready;
#   - max_slot_wal_keep_size passed while the store is down: the invalidated slot is an error
#     with the fix (event=slot_lost), and the index is rebuilt once the store is back;
#   - SIGHUP leaves sync running and logs event=sighup_ignored;
#   - SIGTERM while the store is down (requests being retried) exits 0 within 2 s;
#   - pgvector with its table locked by another transaction: /readyz 503, and SIGTERM exits 0
#     within 2 s (the statement waiting on the lock is cancelled);
#   - --embed a server that accepts and never answers: SIGTERM exits 0 within 2 s.
#   usage: test_health.sh path/to/cdcvec
set -u
. "$(dirname "$0")/sync_lib.sh"
test_begin health 43000 "$1"
PY=$(bash "$root/scripts/test-venv.sh") || { echo "FAIL the tests' Python venv"; exit 1; }
sync_pid=
pg_up books
q "CREATE TABLE unrelated (id serial PRIMARY KEY, pad text)"

sport=$(free_port $((port + 5)))
# the store stopped and started again on its port, with its storage
start_standin() { standin qdrant --port "$sport" --storage "$work/qdrant" || exit 1; }
stop_standin() { kill -TERM "$standin_pid" && wait "$standin_pid"; standin_pid=; }
start_standin

hport=$(free_port $((sport + 3)))
base=http://127.0.0.1:$hport
CDCVEC_LOG=info "$bin" sync --source "$DB" --table public.books --sink "qdrant://127.0.0.1:$sport/books" \
  --batch-ms 10 --threads 2 --http 127.0.0.1:$hport --ready-lag-s 2 --wal-warn-mb 8 >>"$work/sync.log" 2>&1 &
sync_pid=$!
export WATCH_PID=$sync_pid
code() { curl -s -o "$work/body" -w "%{http_code}" "$base$1"; }
metric() { curl -sf "$base/metrics" | awk -v n="$1" '$1 == n {print $2}'; }
progress() { tail -c 300 "$work/sync.log"; curl -s "$base/metrics" | grep -E "^cdcvec_sync_(replication_lag|slot_retained)"; }

wait_until '[ "$(code /readyz)" = 200 ]' progress
check "/readyz 200 once streaming" '[ "$(code /readyz)" = 200 ] && grep -q "\"status\":\"ready\"" "$work/body"'
check "/healthz 200" '[ "$(code /healthz)" = 200 ]'

kill -HUP $sync_pid
wait_until 'grep -q "event=sighup_ignored" "$work/sync.log"' progress
check "SIGHUP: sync keeps running and logs event=sighup_ignored" 'kill -0 $sync_pid && grep -q "event=sighup_ignored" "$work/sync.log"'

# the store goes down under writes: a change of the table waits, other WAL piles up behind it
stop_standin
q "INSERT INTO books (name, description, author, year) VALUES ('lag 1', 'a book written while the store is down', 'x', 2001)"
q "INSERT INTO unrelated (pad) SELECT repeat(md5(g::text), 4) FROM generate_series(1, 60000) g"
q "INSERT INTO books (name, description, author, year) VALUES ('lag 2', 'another book written while the store is down', 'x', 2002)"
wait_until '[ "$(code /readyz)" = 503 ]' progress
check "/readyz 503 while the store is down, with the reason" '[ "$(code /readyz)" = 503 ] && grep -q "\"reason\"" "$work/body"'
check "/healthz stays 200 (liveness) while the store is down" '[ "$(code /healthz)" = 200 ]'
wait_until '[ "$(metric cdcvec_sync_slot_retained_wal_over_threshold)" = 1 ]' progress
lag=$(metric cdcvec_sync_replication_lag_bytes)
check "lag bytes: the server's figure, grown past the WAL written meanwhile ($lag)" '[ "${lag%.*}" -gt 8000000 ]'
check "lag seconds: the oldest unapplied commit's age ($(metric cdcvec_sync_replication_lag_seconds))" \
  'awk -v v="$(metric cdcvec_sync_replication_lag_seconds)" "BEGIN {exit !(v > 0)}"'
check "retained WAL over --wal-warn-mb: warned (event=wal_retained_high)" 'grep -q "event=wal_retained_high" "$work/sync.log"'

start_standin
q "CHECKPOINT" >/dev/null # logs the running transactions, so that the slot's restart_lsn can move
wait_until '[ "$(code /readyz)" = 200 ]' progress
check "/readyz 200 again once the store is back" '[ "$(code /readyz)" = 200 ]'
wait_until 'l=$(metric cdcvec_sync_replication_lag_bytes); [ -n "$l" ] && [ "${l%.*}" -lt 1000000 ]' progress
check "lag bytes fall once the store is back ($(metric cdcvec_sync_replication_lag_bytes))" \
  '[ "$(metric cdcvec_sync_replication_lag_bytes | cut -d. -f1)" -lt 1000000 ]'

# the source database down: not ready, and said so; back: ready again
bash "$root/scripts/pg.sh" stop "$work/pg"
wait_until '[ "$(code /readyz)" = 503 ] && [ "$(metric cdcvec_sync_source_up)" = 0 ]' progress
check "the source down: /readyz 503 naming it, cdcvec_sync_source_up 0" \
  '[ "$(code /readyz)" = 503 ] && grep -q "source database" "$work/body" && [ "$(metric cdcvec_sync_source_up)" = 0 ]'
bash "$root/scripts/pg.sh" start "$work/pg" "$port" >/dev/null || { echo "FAIL cannot restart PostgreSQL"; exit 1; }
wait_until '[ "$(code /readyz)" = 200 ]' progress
check "the source back: /readyz 200" '[ "$(code /readyz)" = 200 ] && [ "$(metric cdcvec_sync_source_up)" = 1 ]'

# max_slot_wal_keep_size: the store down while the server moves on past it invalidates the slot
q "ALTER SYSTEM SET max_slot_wal_keep_size = '1MB'" >/dev/null
q "SELECT pg_reload_conf()" >/dev/null
stop_standin
q "INSERT INTO books (name, description, author, year) VALUES ('lost 1', 'written before the slot was lost', 'x', 2005)"
for _ in 1 2 3 4 5; do q "INSERT INTO unrelated (pad) VALUES ('x')"; q "SELECT pg_switch_wal()" >/dev/null; done
q "CHECKPOINT"
wait_until 'grep -q "event=slot_lost" "$work/sync.log"' 'progress; q "SELECT wal_status FROM pg_replication_slots"'
check "an invalidated slot (wal_status lost) is an error with the fix, and not ready" \
  'grep -q "level=error event=slot_lost .*fix=" "$work/sync.log" && [ "$(code /readyz)" = 503 ]'
q "ALTER SYSTEM RESET max_slot_wal_keep_size" >/dev/null
q "SELECT pg_reload_conf()" >/dev/null
start_standin
wait_until '[ "$(code /readyz)" = 200 ] && [ "$(metric cdcvec_sync_slot_lost)" = 0 ]' progress
check "...rebuilt from a new snapshot once the store is back: ready again, the row written meanwhile indexed" \
  'grep -q "slot_recreate.*max_slot_wal_keep_size" "$work/sync.log" && [ "$(code /readyz)" = 200 ] &&
   [ "$(curl -s -XPOST "http://127.0.0.1:$sport/collections/books/points/count" -H "Content-Type: application/json" -d "{\"exact\":true}" | python3 -c "import json,sys; print(json.load(sys.stdin)[\"result\"][\"count\"])")" = "$(q "SELECT count(*) FROM books WHERE description IS NOT NULL")" ]'

# SIGTERM while the store is down and a batch is being retried
stop_standin
q "INSERT INTO books (name, description, author, year) VALUES ('lag 3', 'written before the stop', 'x', 2003)"
wait_until 'grep -q "event=sink_retry" "$work/sync.log"' progress
stop_timed $sync_pid
sync_pid=
check "SIGTERM while the store is down: exit 0 within 2 s (rc $rc after $ms ms)" '[ "$rc" = 0 ] && [ $ms -le 2000 ]'

# pgvector, its table locked by another transaction: the sink's statement waits on the lock
q "CREATE EXTENSION IF NOT EXISTS vector" >/dev/null
hport=$(free_port $((hport + 1)))
base=http://127.0.0.1:$hport
CDCVEC_LOG=info "$bin" sync --source "$DB" --table public.books --slot health_pg --batch-ms 10 --threads 2 \
  --http 127.0.0.1:$hport --ready-lag-s 2 >>"$work/sync.log" 2>&1 &
sync_pid=$!
WATCH_PID=$sync_pid
wait_until '[ "$(code /readyz)" = 200 ]' progress
psql -qX "$DB" -c "BEGIN" -c "LOCK TABLE cdcvec.public_books IN ACCESS EXCLUSIVE MODE" -c "SELECT pg_sleep(600)" >/dev/null 2>&1 &
locker=$!
WATCH_PID=$locker wait_until '[ "$(q "SELECT count(*) FROM pg_locks WHERE relation = '"'"'cdcvec.public_books'"'"'::regclass AND mode = '"'"'AccessExclusiveLock'"'"' AND granted")" = 1 ]' progress
q "INSERT INTO books (name, description, author, year) VALUES ('lag 4', 'written while the index table is locked', 'x', 2004)"
wait_until '[ "$(q "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE '"'"'cdcvec%'"'"' AND wait_event_type = '"'"'Lock'"'"'")" -ge 1 ] && [ "$(code /readyz)" = 503 ]' progress
check "pgvector table locked: /readyz 503 (the oldest unapplied change is older than --ready-lag-s)" \
  '[ "$(code /readyz)" = 503 ] || { cat "$work/body"; false; }'
stop_timed $sync_pid
sync_pid=
check "SIGTERM while the sink waits on a lock: exit 0 within 2 s (rc $rc after $ms ms)" '[ "$rc" = 0 ] && [ $ms -le 2000 ]'
kill $locker 2>/dev/null
q "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(600)%' AND pid <> pg_backend_pid()" >/dev/null
wait $locker 2>/dev/null

# --embed: an embedding server that accepts connections and never answers
eport=$(free_port $((hport + 1)))
python3 -c 'import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(8); held = []
while True:
    held.append(s.accept()); print("accepted", flush=True)' "$eport" >"$work/hold.log" 2>&1 &
holder=$!
WATCH_PID=$holder wait_until '(exec 3<>/dev/tcp/127.0.0.1/'"$eport"') 2>/dev/null' 'cat "$work/hold.log"'
CDCVEC_LOG=info "$bin" sync --source "$DB" --table public.books --slot health_embed --embed "tcp://127.0.0.1:$eport" \
  --batch-ms 10 >>"$work/sync.log" 2>&1 &
sync_pid=$!
# (the session asks the server which model it runs, for the store's stamp, and waits on it)
WATCH_PID=$sync_pid wait_until 'grep -q "event=embed_unreachable url=tcp://127.0.0.1:$eport" "$work/sync.log" && [ "$(grep -c accepted "$work/hold.log")" -ge 2 ]' progress
stop_timed $sync_pid
sync_pid=
check "SIGTERM while the embedding server does not answer: exit 0 within 2 s (rc $rc after $ms ms)" '[ "$rc" = 0 ] && [ $ms -le 2000 ]'
kill $holder 2>/dev/null
wait $holder 2>/dev/null
test_end 30 "$work/sync.log"
