#!/usr/bin/env bash
# test_sink_writers.sh: `cdcvec sync --sink-writers N` (pgvector sink: N connections write each
# batch in parallel, rows partitioned by a hash of the primary key; the parts commit first,
# then connection 0 commits its own part with the position) against a real PostgreSQL 15 with
# pgvector started by scripts/pg.sh. The sink must equal the source once its recorded position
# covers the last commit: the same ids (none missing, no orphan), text_hash = sha256 of the
# description, payload = the row's other columns (to_jsonb minus key and text), no dead letter.
#   1. --sink-writers 4 backfills; under load, pg_stat_activity shows 3 "cdcvec sink writer"
#   2. kill -9 at random points during 10,000 changes (multi-row transactions), restarts
#   3. CDCVEC_TEST_FAULT=parts_committed:1: the process SIGKILLs itself after the parts of a
#      60-key transaction committed; the position is not recorded; the replay converges
#   4. --sink-writers 0 / 17 (and CDCVEC_SINK_WRITERS=17) refused: exit 2 naming the option;
#      16 accepted (15 writer connections)
#   5. SIGTERM: exit 0
#   6. a citext key (equal keys spelled differently): one connection, logged; converges
#   usage: test_sink_writers.sh path/to/cdcvec
set -u
. "$(dirname "$0")/sync_lib.sh"
test_begin sink-writers 45000 "$1"
sync_pid=
pg_up vector books
# enough rows for the backfill to write batches of several parts
q "INSERT INTO books (name, description, author, year) SELECT 'pre ' || g, 'an older book ' || g, 'pre', 1900 + g % 100 FROM generate_series(1, 300) g"

# start_sync [ARGS...]: the sync in the background, 4 writers; $FAULT, when set, is passed as
# CDCVEC_TEST_FAULT.
start_sync() {
  env ${FAULT:+CDCVEC_TEST_FAULT=$FAULT} CDCVEC_LOG=${LOG:-warn} "$bin" sync --source "$DB" --table public.books \
    --sink-writers 4 --threads 2 --batch-ms 10 "$@" >>"$work/sync.log" 2>&1 &
  sync_pid=$!
  # (a sync with a fault exits by itself: waited for by its own check, not watched)
  [ -n "${FAULT:-}" ] || watch "$sync_pid" sync "$work/sync.log"
}
stop_sync() { [ -n "$sync_pid" ] && kill -TERM "$sync_pid" && wait "$sync_pid"; local rc=$?; sync_pid=; return $rc; }

MISMATCH="SELECT count(*) FROM books b FULL JOIN cdcvec.public_books v USING (id)
  WHERE b.id IS NULL OR v.id IS NULL OR v.text_hash IS DISTINCT FROM sha256(convert_to(b.description, 'UTF8'))
     OR v.payload IS DISTINCT FROM to_jsonb(b) - 'id' - 'description'"
# the waits below fail at once when the sync they wait on has exited
converged() { WATCH_PID=$sync_pid converged_q "$MISMATCH" cdcvec.public_books; }
equal_now() { [ "$(q "$MISMATCH")" = 0 ]; }
same_count() { [ "$(q "SELECT count(*) FROM cdcvec.public_books")" = "$(q "SELECT count(*) FROM books")" ]; }
no_dead_letters() { [ "$(q "SELECT count(*) FROM cdcvec.dead_letters")" = 0 ]; }
writers() { q "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'cdcvec sink writer'"; }
state() { q "SELECT coalesce(max(lsn), '0/0') FROM cdcvec.state" 2>/dev/null; }
# state_at_least LSN: the recorded position is at or past LSN
state_at_least() { [ "$(q "SELECT coalesce(max(lsn), '0/0') >= '$1'::pg_lsn FROM cdcvec.state" 2>/dev/null)" = t ]; }
# commit_tx SQL: runs SQL in one transaction; prints the WAL insert position read inside it just
# before COMMIT (the commit record, and any position recorded for it, lies past it)
commit_tx() {
  psql -qAtX -v ON_ERROR_STOP=1 "$DB" <<SQL | tail -1
BEGIN;
$1;
SELECT pg_current_wal_insert_lsn();
COMMIT;
SQL
}
# caught_up LSN: waits until the recorded position covers LSN, while the sink moves
# (wait_until evals the condition in its own frame: $1 there is not ours, a local is seen)
caught_up() { local target=$1; WATCH_PID=$sync_pid wait_until 'state_at_least "$target"' 'sink_progress cdcvec.public_books'; }

# ---- 1. backfill with 4 writers; 3 writer connections under load --------------------------
start_sync
check "1 --sink-writers 4: rows existing before the first start are all embedded" converged
load_start "'book ' || i || ' number ' || g || ' about ' || left(md5((i * g)::text), 6)"
# (or until the load ended: the kills below need the rest of it)
WATCH_PID=$sync_pid wait_until '[ "$(writers)" -ge 3 ] || ! kill -0 "$load_pid" 2>/dev/null' 'sink_progress cdcvec.public_books'
n=$(writers)
check "1 under load: pg_stat_activity shows 3 connections 'cdcvec sink writer' ($n)" '[ "$n" = 3 ]'
check "1 under load: the main connection 'cdcvec sink' is there too" \
  '[ "$(q "SELECT count(*) FROM pg_stat_activity WHERE application_name = '"'"'cdcvec sink'"'"'")" -ge 1 ]'

# ---- 2. crash safety: kill -9 at random points during 10,000 changes ----------------------
kill_sync_during_load
check "2 kill -9 landed during the load ($kills times)" '[ $kills -ge 3 ]'
check "2 load of 10,000 changes ran" '[ "$(q "SELECT count(*) FROM books WHERE author = '"'"'gen'"'"'")" -gt 4000 ]' || tail -3 "$work/load.log"
# a last commit after the load: once the position covers it, the load is all applied
mark=$(commit_tx "UPDATE books SET year = year WHERE id = (SELECT min(id) FROM books)")
check "2 after $kills kill -9 and restarts: the position covers the load's last commit ($mark)" 'caught_up "$mark"'
check "2 then the sink equals the source (ids, hashes, payloads)" equal_now ||
  q "SELECT coalesce(b.id, v.id) FROM books b FULL JOIN cdcvec.public_books v USING (id)
     WHERE b.id IS NULL OR v.id IS NULL OR v.text_hash IS DISTINCT FROM sha256(convert_to(b.description, 'UTF8'))
        OR v.payload IS DISTINCT FROM to_jsonb(b) - 'id' - 'description' LIMIT 5" | sed 's/^/  id /'
check "2 no orphaned or duplicate vectors" same_count
check "2 no dead letters" no_dead_letters

# ---- 5. SIGTERM ----------------------------------------------------------------------------
check "5 SIGTERM: sync --sink-writers 4 exits 0" stop_sync

# ---- 3. deterministic crash between the parts' commits and connection 0's ---------------
before=$(state)
upd=$(q "SELECT string_agg(id::text, ',') FROM (SELECT id FROM books ORDER BY id DESC LIMIT 40) x")
del=$(q "SELECT string_agg(id::text, ',') FROM (SELECT id FROM books ORDER BY id DESC OFFSET 40 LIMIT 5) x")
FAULT=parts_committed:1 start_sync
fpid=$sync_pid
pre=$(commit_tx "UPDATE books SET description = 'rewritten before the crash ' || id WHERE id IN ($upd);
  DELETE FROM books WHERE id IN ($del);
  INSERT INTO books (name, description, author, year)
    SELECT 'fault ' || g, 'inserted before the crash ' || g, 'fault', 2030 FROM generate_series(1, 15) g")
# the keys of that transaction whose sink rows already show it
applied() {
  q "SELECT count(*) FROM (SELECT unnest('{$upd,$del}'::int[]) AS id UNION SELECT id FROM books WHERE author = 'fault') k
       LEFT JOIN books b USING (id) LEFT JOIN cdcvec.public_books v USING (id)
     WHERE (b.id IS NULL AND v.id IS NULL) OR v.text_hash = sha256(convert_to(b.description, 'UTF8'))"
}
# ends when the process is gone (or, when the fault never fires, once the batch is recorded)
wait_until '! kill -0 "$fpid" 2>/dev/null || state_at_least "$pre"' 'sink_progress cdcvec.public_books' 2>/dev/null # (not bash's "Killed" notice)
if kill -0 "$fpid" 2>/dev/null; then
  rc="still running"
  kill -9 "$fpid"
  wait "$fpid" 2>/dev/null
else
  wait "$fpid" 2>/dev/null
  rc=$?
fi
sync_pid=
check "3 CDCVEC_TEST_FAULT=parts_committed:1: the process died by SIGKILL (wait: $rc)" '[ "$rc" = 137 ]' ||
  tail -5 "$work/sync.log"
now=$(state)
check "3 the position was not recorded ($before -> $now, the transaction's WAL at $pre)" '[ -n "$now" ] && ! state_at_least "$pre"'
a=$(applied)
check "3 some of the transaction's 60 keys were written by the committed parts ($a)" '[ "$a" -gt 0 ]'
start_sync
check "3 restarted without the fault: the position covers the transaction" 'caught_up "$pre"'
check "3 the replayed batch converged: sink equals source" equal_now
check "3 no orphaned or duplicate vectors" same_count
check "3 no dead letters" no_dead_letters
check "5 SIGTERM after the replay: exit 0" stop_sync

# ---- 4. out-of-range counts refused ------------------------------------------------------
for n in 0 17; do
  CDCVEC_LOG=warn timeout "$STALL_S" "$bin" sync --source "$DB" --table public.books --sink-writers $n >"$work/bad.log" 2>&1
  rc=$?
  check "4 --sink-writers $n: exit 2 with a message naming the option (rc=$rc)" \
    '[ $rc -eq 2 ] && grep -q -- "sink-writers" "$work/bad.log" && ! grep -q "unknown option" "$work/bad.log"' ||
    tail -2 "$work/bad.log"
done
CDCVEC_SINK_WRITERS=17 CDCVEC_LOG=warn timeout "$STALL_S" "$bin" sync --source "$DB" --table public.books >"$work/bad.log" 2>&1
rc=$?
check "4 CDCVEC_SINK_WRITERS=17: exit 2 naming the variable (rc=$rc)" \
  '[ $rc -eq 2 ] && grep -q CDCVEC_SINK_WRITERS "$work/bad.log"' || tail -2 "$work/bad.log"
# the upper bound is accepted (later options win: 16, not start_sync's 4)
start_sync --sink-writers 16
m16=$(commit_tx "UPDATE books SET year = year + 1 WHERE id IN (SELECT id FROM books ORDER BY id LIMIT 100)")
WATCH_PID=$sync_pid wait_until '[ "$(writers)" -ge 15 ] || state_at_least "$m16"' 'sink_progress cdcvec.public_books'
n=$(writers)
check "4 --sink-writers 16 accepted: 15 connections 'cdcvec sink writer' ($n)" '[ "$n" = 15 ]'
check "4 --sink-writers 16: a 100-row update applied, sink equals source" 'caught_up "$m16" && equal_now'
check "5 SIGTERM: sync --sink-writers 16 exits 0" stop_sync

# ---- 6. a key that does not compare by its text form: one connection ----------------------
# citext: 'Ann@X' and 'ann@x' are one key; hashed by their text they would land in two parts
q "CREATE EXTENSION citext" >/dev/null || { echo "FAIL the citext extension is missing (postgresql-contrib)"; exit 1; }
q "CREATE TABLE mails (email citext PRIMARY KEY, description text NOT NULL, n int NOT NULL)"
q "INSERT INTO mails SELECT 'User' || g || '@Example.org', 'mail number ' || g, g FROM generate_series(1, 40) g"
CMISMATCH="SELECT count(*) FROM mails b FULL JOIN cdcvec.public_mails v ON v.email = b.email
  WHERE b.email IS NULL OR v.email IS NULL OR v.text_hash IS DISTINCT FROM sha256(convert_to(b.description, 'UTF8'))
     OR v.payload IS DISTINCT FROM to_jsonb(b) - 'email' - 'description'"
LOG=info
start_sync --table public.mails
unset LOG
check "6 citext key, --sink-writers 4: backfilled" 'WATCH_PID=$sync_pid converged_q "$CMISMATCH" cdcvec.public_mails'
# every key deleted and inserted again spelled otherwise, in one transaction, twice
for spell in lower upper; do
  q "BEGIN; DELETE FROM mails; INSERT INTO mails SELECT $spell('User' || g || '@Example.org'), '$spell: mail number ' || g, g + 100
     FROM generate_series(1, 40) g; COMMIT"
done
check "6 citext key: deletes and re-inserts spelled otherwise converge" 'WATCH_PID=$sync_pid converged_q "$CMISMATCH" cdcvec.public_mails'
check "6 citext key: no writer connection" '[ "$(writers)" = 0 ]'
check "6 citext key: the sink logged that one connection writes" 'grep -q "event=sink_writers.*table=.*mails.*writers=1" "$work/sync.log"'
check "6 SIGTERM: exit 0" stop_sync

test_end 40 "$work/sync.log"
