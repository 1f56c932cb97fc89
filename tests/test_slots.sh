#!/usr/bin/env bash
# test_slots.sh: replication slots and the one-writer lock across databases and processes, on
# one PostgreSQL (replication slots are cluster-wide), the model served once by `cdcvec serve`:
#   1. the same public.books in two databases: each sync has a slot of its own; a sync of one
#      database never takes over or drops the other's (a restart of the first after the second
#      ran converges, the row written meanwhile included); a --slot naming the other database's
#      slot is refused (exit 1, slot_clash); an earlier version's slot (cdcvec_public_books_<hash>)
#      is adopted, not left holding WAL beside a new one; a second store of the table gets a slot
#      of its own, the first store's inactive slot named
#   2. a second sync of the same table with its own --slot waits (table_busy, no slot created),
#      its retry line saying so; verify --repair beside the sync is refused; a refused
#      connection's retry line says so
#   3. two syncs started at once on a fresh database (no extension, no schema cdcvec), 5 rounds:
#      both come up (they raced on CREATE SCHEMA cdcvec)
#   usage: test_slots.sh path/to/cdcvec
set -u
. "$(dirname "$0")/sync_lib.sh"
test_begin slots 43000 "$1"
pg_up
dbof() { echo "${DB%/*}/$1"; }
dump() { local f; for f in "$@"; do echo "  --- $f"; tail -n 15 "$f" | sed 's/^/  /'; done; }

sp=
for try in 1 2 3; do # another port if this one was taken meanwhile
  sport=$(free_port $((port + 100 + 10 * try)))
  CDCVEC_LOG=info "$bin" serve --listen "tcp://127.0.0.1:$sport" --http '' --threads 2 >>"$work/serve.log" 2>&1 &
  sp=$!
  WATCH_PID=$sp wait_until '(exec 3<>/dev/tcp/127.0.0.1/$sport) 2>/dev/null' 'wc -c <"$work/serve.log"' >/dev/null && break
  sp=
done
[ -n "$sp" ] || { echo "FAIL cdcvec serve did not start"; dump "$work/serve.log"; exit 1; }
EMBED=tcp://127.0.0.1:$sport

# start_sync LOG SOURCE [options]: sets spid
start_sync() {
  local log=$1 src=$2
  shift 2
  CDCVEC_LOG=info "$bin" sync --source "$src" --table public.books --batch-ms 10 --embed "$EMBED" "$@" \
    >>"$work/$log.log" 2>&1 &
  spid=$!
}
stop_sync() { kill -TERM "$1" 2>/dev/null; wait "$1" 2>/dev/null; }
# logged PID NAME EVENT: waits, while PID runs, until $work/NAME.log has an event=EVENT line
logged() { WATCH_PID=$1 wait_until "grep -q 'event=$3' '$work/$2.log'" "wc -c <'$work/$2.log'" >/dev/null; }
MISMATCH="SELECT count(*) FROM books b FULL JOIN cdcvec.public_books v USING (id)
  WHERE b.id IS NULL OR v.id IS NULL OR v.text_hash <> sha256(convert_to(b.description, 'UTF8'))"
# conv PID DATABASE: the database's index converges while PID runs
conv() { WATCH_PID=$1 converged_q "$MISMATCH" cdcvec.public_books "$(dbof "$2")"; }

for d in shop_a shop_b shop_c; do
  q "CREATE DATABASE $d" >/dev/null
  q "CREATE EXTENSION vector" "$(dbof $d)" >/dev/null
  books 1 "$(dbof $d)"
done

echo "# 1. the same table in two databases"
start_sync a1 "$(dbof shop_a)"
pa=$spid
check "shop_a: backfill" 'conv $pa shop_a' || dump "$work/a1.log"
# --embed: the store stamped with the model the remote serve declares (its id and revision)
ameta() { q "SELECT model || ' ' || coalesce(model_revision, '-') FROM cdcvec.state" "$(dbof shop_a)"; }
model_recorded "shop_a (--embed): the store records the remote serve's model id and revision" ameta
check "  ... and every row carries it" \
  '[ "$(q "SELECT count(*) FROM cdcvec.public_books WHERE model_revision IS DISTINCT FROM '"'$want_rev'"'" "$(dbof shop_a)")" = 0 ]'
stop_sync $pa
start_sync b1 "$(dbof shop_b)"
pb=$spid
check "shop_b (shop_a's sync stopped): backfill" 'conv $pb shop_b' || dump "$work/b1.log"
q "INSERT INTO books (name, description, author, year) VALUES ('Written in shop_a', 'while its sync was stopped', 'x', 2024)" "$(dbof shop_a)"
start_sync a2 "$(dbof shop_a)"
pa=$spid
check "shop_a restarted: the row written meanwhile arrives (its slot was not taken over)" 'conv $pa shop_a' ||
  dump "$work/a2.log" "$work/b1.log"
check "shop_a restarted on its own slot (no new slot, no second backfill)" \
  '! grep -Eq "event=slot_(created|recreate)" "$work/a2.log"' || dump "$work/a2.log"
check "shop_b's sync neither dropped nor recreated a slot" '! grep -Eq "event=slot_(recreate|clash)" "$work/b1.log"'
check "two slots, one per database, both active" \
  '[ "$(q "SELECT count(DISTINCT database) || '"'"' '"'"' || count(*) FROM pg_replication_slots WHERE active AND slot_name LIKE '"'"'cdcvec\_%'"'"'")" = "2 2" ]'
slot_a=$(q "SELECT slot_name FROM pg_replication_slots WHERE database = 'shop_a'")
check "the default slot name carries the database ($slot_a)" '[[ $slot_a =~ ^cdcvec_shop_a_public_books_[0-9a-f]{8}$ ]]'
stop_sync $pb
wsa=$(q "SELECT active_pid FROM pg_replication_slots WHERE slot_name = '$slot_a'")
timeout 120 "$bin" sync --source "$(dbof shop_b)" --table public.books --embed "$EMBED" --slot "$slot_a" \
  >"$work/clash.log" 2>&1
rc=$?
check "a --slot naming another database's slot is refused: exit 1, slot_clash naming both databases and the fix" \
  '[ $rc = 1 ] && grep -q "event=slot_clash slot=$slot_a slot_database=shop_a .*database=shop_b .*fix=.*--slot" "$work/clash.log"' ||
  dump "$work/clash.log"
check "shop_a's slot is untouched: same database, same walsender" \
  '[ "$(q "SELECT database || '"'"' '"'"' || active_pid FROM pg_replication_slots WHERE slot_name = '"'"'$slot_a'"'"'")" = "shop_a $wsa" ]'

# an install from before: its sync used cdcvec_public_books_<hash of public, books> by default
legacy=cdcvec_public_books_$(printf 'public\0books' | sha256sum | cut -c1-8)
start_sync c1 "$(dbof shop_c)" --slot "$legacy"
pc=$spid
check "shop_c, as an earlier version ran it ($legacy): backfill" 'conv $pc shop_c' || dump "$work/c1.log"
stop_sync $pc
q "INSERT INTO books (name, description, author, year) VALUES ('Written in shop_c', 'during the upgrade', 'x', 2024)" "$(dbof shop_c)"
start_sync c2 "$(dbof shop_c)"
pc=$spid
check "upgrade: the earlier slot is adopted (event=slot_adopted) and the row written meanwhile arrives" \
  'conv $pc shop_c && grep -q "event=slot_adopted slot=$legacy" "$work/c2.log"' || dump "$work/c2.log"
check "upgrade: no new slot, no second backfill" \
  '! grep -Eq "event=slot_(created|recreate)" "$work/c2.log" && [ "$(q "SELECT string_agg(slot_name, '"'"','"'"') FROM pg_replication_slots WHERE database = '"'"'shop_c'"'"'")" = "$legacy" ]'
stop_sync $pc
# the same table into a second store (pgvector in another database: the writer lock is held there,
# on a connection of its own): a slot of its own; the first store's, inactive, is named
start_sync c3 "$(dbof shop_c)" --sink "$(dbof shop_b)"
pc=$spid
logged $pc c3 streaming
check "a second store of the table: a slot of its own, and the first store's inactive slot is named (slot_other)" \
  'grep -q "event=slot_other table=\"public\".\"books\" slots=\"$legacy\"" "$work/c3.log" && [ "$(q "SELECT count(*) FROM pg_replication_slots WHERE database = '"'"'shop_c'"'"'")" = 2 ]' ||
  dump "$work/c3.log"
check "its writer lock is held in the store's database (cdcvec sync (writer lock) in shop_b)" \
  '[ "$(q "SELECT count(*) FROM pg_stat_activity WHERE datname = '"'"'shop_b'"'"' AND application_name = '"'"'cdcvec sync (writer lock)'"'"'")" = 1 ]'
stop_sync $pc

echo "# 2. one writer per table and store"
start_sync second "$(dbof shop_a)" --slot cdcvec_second_slot
po=$spid
logged $po second sync_retry
check "a second sync of the table with its own --slot waits (table_busy) and creates no slot" \
  'kill -0 $po && grep -q "event=table_busy table=\"public\".\"books\" store=pgvector: holder=\"pid=" "$work/second.log" && [ "$(q "SELECT count(*) FROM pg_replication_slots WHERE slot_name = '"'"'cdcvec_second_slot'"'"'")" = 0 ]' ||
  dump "$work/second.log"
check "its retry line says what happened (table_busy), not \"timed out\"" \
  'grep "event=sync_retry" "$work/second.log" | head -1 | grep -q "error=\"table_busy: " && ! grep -q "timed out" "$work/second.log"'
stop_sync $po
q "INSERT INTO books (name, description, author, year) VALUES ('After the second', 'the first still syncs', 'x', 2025)" "$(dbof shop_a)"
check "the first sync goes on" 'conv $pa shop_a' || dump "$work/a2.log"
timeout 120 "$bin" verify --source "$(dbof shop_a)" --table public.books --embed "$EMBED" --repair 1 >"$work/verify.log" 2>&1
rc=$?
check "verify --repair beside the sync is refused (exit 1), naming the holder" \
  '[ $rc = 1 ] && grep -q "event=verify_stopped table=\"public\".\"books\" holder=\"pid=" "$work/verify.log"' || dump "$work/verify.log"
timeout 120 "$bin" backfill --source "$(dbof shop_a)" --table public.books --embed "$EMBED" >"$work/backfill.log" 2>&1
rc=$?
check "backfill beside the sync is refused the same way (exit 1), naming the holder and the fix" \
  '[ $rc = 1 ] && grep -q "event=backfill_stopped table=\"public\".\"books\" holder=\"pid=.* fix=\"stop it" "$work/backfill.log"' || dump "$work/backfill.log"
stop_sync $pa
cport=$(free_port $((port + 300)))
start_sync refused "postgres://postgres@127.0.0.1:$cport/postgres"
pr=$spid
logged $pr refused sync_retry
check "a refused connection: the retry line says so, not \"timed out\"" \
  'grep "event=sync_retry" "$work/refused.log" | head -1 | grep -q "error=\".*Connection refused"' || dump "$work/refused.log"
stop_sync $pr

echo "# 3. two syncs started at once on a fresh database"
# round 0 forces the race: a transaction creating the extension and the schema is held open until
# both syncs wait behind it, then rolled back, so both go for the catalogs' unique indexes at once
for r in 0 1 2 3 4 5; do
  d=fresh_$r
  q "CREATE DATABASE $d" >/dev/null
  q "CREATE TABLE t1 (id int PRIMARY KEY, description text); CREATE TABLE t2 (id int PRIMARY KEY, description text);
     INSERT INTO t1 VALUES (1, 'one'), (2, 'two'); INSERT INTO t2 VALUES (1, 'uno'), (2, 'dos')" "$(dbof $d)" >/dev/null
  if [ $r = 0 ]; then
    mkfifo "$work/hold"
    psql -qX "$(dbof $d)" -v ON_ERROR_STOP=1 <"$work/hold" >/dev/null 2>&1 &
    hp=$!
    exec 7>"$work/hold"
    echo "BEGIN; CREATE EXTENSION vector; CREATE SCHEMA cdcvec;" >&7
    WATCH_PID=$hp wait_until '[ "$(q "SELECT count(*) FROM pg_stat_activity WHERE datname = '"'"'$d'"'"' AND state = '"'"'idle in transaction'"'"'")" = 1 ]' true >/dev/null
  fi
  for t in t1 t2; do
    CDCVEC_LOG=info "$bin" sync --source "$(dbof $d)" --table public.$t --text-column description --embed "$EMBED" \
      >"$work/$d-$t.log" 2>&1 7>&- &
    eval "p_$t=\$!"
  done
  if [ $r = 0 ]; then
    wait_until '! kill -0 $p_t1 2>/dev/null || ! kill -0 $p_t2 2>/dev/null ||
      [ "$(q "SELECT count(*) FROM pg_stat_activity WHERE datname = '"'"'$d'"'"' AND wait_event_type = '"'"'Lock'"'"'")" = 2 ]' \
      'cat "$work/$d-t1.log" "$work/$d-t2.log" | wc -c' >/dev/null
    echo "ROLLBACK;" >&7
    exec 7>&-
    wait $hp
  fi
  # (a sync that exits ends the wait at once)
  wait_until '! kill -0 $p_t1 2>/dev/null || ! kill -0 $p_t2 2>/dev/null ||
    [ "$(q "SELECT count(*) FROM cdcvec.state WHERE backfill_done" "$(dbof $d)" 2>/dev/null)" = 2 ]' \
    'cat "$work/$d-t1.log" "$work/$d-t2.log" | wc -c' >/dev/null
  check "round $r: both syncs come up$([ $r = 0 ] && echo " (both released at once behind a held CREATE)")" \
    'kill -0 $p_t1 2>/dev/null && kill -0 $p_t2 2>/dev/null && [ "$(q "SELECT count(*) FROM cdcvec.state WHERE backfill_done" "$(dbof $d)")" = 2 ]' ||
    dump "$work/$d-t1.log" "$work/$d-t2.log"
  stop_sync $p_t1
  stop_sync $p_t2
  q "SELECT count(pg_drop_replication_slot(slot_name)) FROM pg_replication_slots WHERE database = '$d'" >/dev/null
done

exit $fail
