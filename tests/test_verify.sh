#!/usr/bin/env bash
# test_verify.sh: `cdcvec verify [--repair 1]` against a real PostgreSQL 15 (scripts/pg.sh) and
# pgvector, or the Qdrant or Upstash stand-in (tests/standins/). Four faults are planted in the store by
# hand (a deleted vector, a corrupted text hash, an edited payload, an extra row); verify must
# name each (exit 3), --repair 1 must fix them through the apply stage, and verify must then
# find nothing (exit 0). A repair beside a running sync is refused. On pgvector, thousands of
# faults of every kind over many pages, on an integer key and a text key, are counted exactly;
# then cdcvec dead-letters list|retry|clear and sync --embed's own --http (/metrics, /wait,
# search). On Upstash, a backfill sends its O(N) delete by filter only when stale vectors can exist.
#   usage: test_verify.sh pgvector|qdrant|upstash path/to/cdcvec
set -u
store=$1
. "$(dirname "$0")/sync_lib.sh"
test_begin "verify-$store" 45000 "$2"
sync_pid=
pg_up vector
books all
q "INSERT INTO books (name, description, author, year) SELECT 'gen ' || g, 'generated book ' || g || ' about ' || md5(g::text), 'gen', 2000 + g % 20 FROM generate_series(1, 1200) g"

SINK=
if [ "$store" != pgvector ]; then
  PY=$(bash "$root/scripts/test-venv.sh") || { echo "SKIPPED: the tests' Python venv"; exit 77; }
  echo "s3cret-$$" >"$work/key"
fi
if [ "$store" = qdrant ]; then
  standin qdrant --api-key-file "$work/key" || exit 1
  sport=$standin_port
  export QDRANT_API_KEY_FILE=$work/key
  SINK=qdrant://127.0.0.1:$sport/books
  qd() { curl -sf -X "$1" "http://127.0.0.1:$sport/collections/books/$2" -H "api-key: $(cat "$work/key")" -H 'Content-Type: application/json' -d "$3" >/dev/null; }
elif [ "$store" = upstash ]; then
  standin upstash --token-file "$work/key" --dimension 384 || exit 1
  sport=$standin_port
  export UPSTASH_VECTOR_REST_URL=http://127.0.0.1:$sport UPSTASH_VECTOR_REST_TOKEN_FILE=$work/key
  SINK=upstash://
  up() { curl -sf -X POST "http://127.0.0.1:$sport/$1/books" -H "Authorization: Bearer $(cat "$work/key")" -H 'Content-Type: application/json' -d "$2" >/dev/null; }
fi
sinkopt() { [ -n "$SINK" ] && echo "--sink $SINK"; }
verify() { CDCVEC_LOG=error "$bin" verify --source "$DB" --table public.books $(sinkopt) --threads 2 "$@" 2>>"$work/verify.err"; }

CDCVEC_LOG=warn "$bin" sync --source "$DB" --table public.books $(sinkopt) --batch-ms 10 --threads 2 >>"$work/sync.log" 2>&1 &
sync_pid=$!
watch $sync_pid sync "$work/sync.log"
WATCH_PID=$sync_pid wait_until '[ "$(q "SELECT count(*) FROM cdcvec.state WHERE backfill_done" 2>/dev/null)" = 1 ]' \
  'q "SELECT lsn FROM cdcvec.state"; tail -c 300 "$work/sync.log"'
WATCH_PID=$sync_pid wait_until 'verify >"$work/v0.out"' 'cat "$work/v0.out"'
check "$store: a store in step with the source: verify exits 0, no differences" 'grep -q "differences=0" "$work/v0.out"'
verify --repair 1 >"$work/busy.out"; rc=$?
check "$store: --repair beside a running sync is refused (exit 1, named)" '[ $rc = 1 ] && grep -q "sync of this table is running" "$work/verify.err"'
kill -TERM $sync_pid && wait $sync_pid
sync_pid=

# the faults: id 2's vector deleted, id 3's hash corrupted, id 4's payload edited, an extra row
if [ "$store" = pgvector ]; then
  q "DELETE FROM cdcvec.public_books WHERE id = 2"
  q "UPDATE cdcvec.public_books SET text_hash = sha256('not the text') WHERE id = 3"
  q "UPDATE cdcvec.public_books SET payload = payload || '{\"name\": \"edited by hand\"}' WHERE id = 4"
  q "INSERT INTO cdcvec.public_books SELECT 999999, embedding, payload, text_hash, model, source_lsn, updated_at FROM cdcvec.public_books WHERE id = 5"
elif [ "$store" = upstash ]; then
  up delete '["2"]'
  up update '{"id":"3","metadataUpdateMode":"PATCH","metadata":{"cdcvec":{"text_hash":"'"$(printf %064d 0)"'"}}}'
  up update '{"id":"4","metadataUpdateMode":"PATCH","metadata":{"name":"edited by hand"}}'
  vec=$(python3 -c 'print([0.05] * 384)')
  up upsert '[{"id":"999999","vector":'"$vec"',"metadata":{"name":"extra","cdcvec":{"table":"public.books","key":"999999","text_hash":"'"$(printf %064d 0)"'"}}}]'
else
  qd POST "points/delete?wait=true" '{"points":[2]}'
  qd POST "points/payload?wait=true" '{"points":[3],"payload":{"cdcvec":{"table":"public.books","key":"3","text_hash":"'"$(printf %064d 0)"'"}}}'
  qd POST "points/payload?wait=true" '{"points":[4],"payload":{"name":"edited by hand"}}'
  vec=$(python3 -c 'print([0.05] * 384)')
  qd PUT "points?wait=true" '{"points":[{"id":999999,"vector":'"$vec"',"payload":{"name":"extra","cdcvec":{"table":"public.books","key":"999999","text_hash":"'"$(printf %064d 0)"'"}}}]}'
fi
verify >"$work/v1.out"; rc=$?
check "$store: verify finds the planted faults: exit 3" '[ $rc = 3 ]'
check "$store: the deleted vector is reported missing" 'grep -qx "missing key=2" "$work/v1.out"'
check "$store: the corrupted hash is reported stale" 'grep -qx "stale key=3" "$work/v1.out"'
check "$store: the edited payload is reported as payload drift" 'grep -qx "payload_drift key=4" "$work/v1.out"'
check "$store: the extra row is reported as an orphan" 'grep -qx "orphan key=999999" "$work/v1.out"'
check "$store: nothing else, and the summary counts them" 'grep -q "source_rows=1216 .*missing=1 stale=1 payload_drift=1 orphans=1 differences=4" "$work/v1.out" && [ "$(wc -l <"$work/v1.out")" = 5 ]' || cat "$work/v1.out"
# a dead letter of the missing row, where the store keeps them (pgvector: its own database;
# Qdrant, Upstash: the source database under the state key): listed, then resolved by the repair
q "INSERT INTO cdcvec.dead_letters (stream, lsn, key, reason) SELECT stream, '0/1', '2', 'planted' FROM cdcvec.state"
CDCVEC_LOG=error "$bin" dead-letters list --source "$DB" --table public.books $(sinkopt) >"$work/dl0.out" 2>>"$work/verify.err"
check "$store: dead-letters list finds the table's entry in its store's state" \
  'grep -q "^dead_letter id=[0-9]* table=public.books key=\"2\" .*reason=\"planted\"" "$work/dl0.out" && grep -q "count=1$" "$work/dl0.out"' || cat "$work/dl0.out"
verify --repair 1 >"$work/v2.out"; rc=$?
check "$store: --repair 1: exit 3 (differences were found) and repaired=1" '[ $rc = 3 ] && grep -q "repaired=1" "$work/v2.out"'
check "$store: --repair 1 removed the dead letter of the row it repaired" \
  '[ "$(q "SELECT count(*) FROM cdcvec.dead_letters")" = 0 ] && grep -q "^dead_letters_cleared .* count=1$" "$work/v2.out"'
verify >"$work/v3.out"; rc=$?
check "$store: after --repair, verify finds zero differences (exit 0)" '[ $rc = 0 ] && grep -q "differences=0" "$work/v3.out"' || cat "$work/v3.out"
if [ "$store" = upstash ]; then # issue 20 #17: no O(N) delete by filter after a backfill when nothing can be stale
  fdel() { curl -sf "http://127.0.0.1:$sport/__standin/stats" | python3 -c 'import json, sys; print(json.load(sys.stdin).get("filter_deletes", 0))'; }
  check "upstash: the first backfill (into an empty namespace) sent no delete by filter" '[ "$(fdel)" = 0 ]'
  resnap() {
    : >"$work/resnap.log"
    CDCVEC_LOG=info "$bin" sync --source "$DB" --table public.books $(sinkopt) --batch-ms 10 --threads 2 --resnapshot 1 >"$work/resnap.log" 2>&1 &
    sync_pid=$!
    WATCH_PID=$sync_pid wait_until 'grep -q "event=backfill_done" "$work/resnap.log"' 'wc -c <"$work/resnap.log"'
    kill -TERM $sync_pid && wait $sync_pid
    sync_pid=
  }
  vec=$(python3 -c 'print([0.05] * 384)')
  up upsert '[{"id":"888888","vector":'"$vec"',"metadata":{"name":"left by an earlier backfill","cdcvec":{"table":"public.books","key":"888888","lsn":1,"text_hash":"'"$(printf %064d 0)"'"}}}]'
  resnap
  check "upstash: a backfill over a namespace with a vector it did not write deletes by filter, and the stale vector is gone" \
    '[ "$(fdel)" = 1 ] && grep -q "event=backfill_cleanup .*method=filter" "$work/resnap.log" && verify >"$work/v4.out"' || { cat "$work/v4.out"; grep backfill_cleanup "$work/resnap.log"; }
  resnap
  check "upstash: a backfill that rewrote every vector of the namespace sends no delete by filter" \
    '[ "$(fdel)" = 1 ] && grep -q "event=backfill_cleanup .*namespace_vectors=1216 method=none" "$work/resnap.log"' || grep backfill_cleanup "$work/resnap.log"
fi
if [ "$store" = pgvector ]; then
  MISMATCH="SELECT count(*) FROM books b FULL JOIN cdcvec.public_books v USING (id)
    WHERE b.id IS NULL OR v.id IS NULL OR v.text_hash <> sha256(convert_to(b.description, 'UTF8'))
       OR v.payload->>'name' IS DISTINCT FROM b.name OR (v.payload->>'year')::int IS DISTINCT FROM b.year"
  check "pgvector: after --repair the sink equals the source (SQL)" '[ "$(q "$MISMATCH")" = 0 ]'
fi

# many faults over many pages (pgvector: issue 20 #5, a store walk that sorted its keys as text
# and paged them as integers skipped rows and never reported their orphans): thousands of
# planted faults of every kind, on an integer key and on a text key, counted exactly
many_faults() { # TABLE KEY STORE_TABLE
  local t=$1 k=$2 st=$3 tag=$1 rc
  local cls="(abs(hashtext($k::text)) % 7)" # the class of a key: 1 missing, 2 stale, 3 drift, 5 orphan
  local miss stale drift orph
  miss=$(q "SELECT count(*) FROM $st WHERE $cls = 1")
  stale=$(q "SELECT count(*) FROM $st WHERE $cls = 2")
  drift=$(q "SELECT count(*) FROM $st WHERE $cls = 3")
  orph=$(q "SELECT count(*) FROM $st WHERE $cls = 5")
  q "DELETE FROM $st WHERE $cls = 1; UPDATE $st SET text_hash = sha256('not the text') WHERE $cls = 2;
     UPDATE $st SET payload = payload || '{\"planted\": 1}' WHERE $cls = 3;
     DELETE FROM public.$t WHERE $cls = 5" # source rows gone: their vectors are orphans between the others
  if [ "$t" = books ]; then # and 2,000 past the last key
    q "INSERT INTO $st SELECT 100000 + g, embedding, payload, text_hash, model, source_lsn, updated_at
       FROM $st, generate_series(1, 2000) g WHERE id = 5"
  else
    q "INSERT INTO $st SELECT 'zz orphan ' || g, embedding, payload, text_hash, model, source_lsn, updated_at
       FROM $st, generate_series(1, 2000) g WHERE code = (SELECT min(code) FROM $st)"
  fi
  orph=$((orph + 2000))
  local srows strows
  srows=$(q "SELECT count(*) FROM public.$t")
  strows=$(q "SELECT count(*) FROM $st")
  q "SELECT $k::text FROM $st v WHERE NOT EXISTS (SELECT 1 FROM public.$t b WHERE b.$k = v.$k)" | sort >"$work/$tag.orph.want"
  tv() { CDCVEC_LOG=error "$bin" verify --source "$DB" --table public.$t --text-column "$TEXTCOL" --threads 2 "$@" 2>>"$work/verify.err"; }
  tv >"$work/$tag.m1.out"; rc=$?
  local sum="source_rows=$srows store_rows=$strows missing=$miss stale=$stale payload_drift=$drift orphans=$orph differences=$((miss + stale + drift + orph))"
  check "$tag: $((miss + stale + drift + orph)) planted faults over $((strows / 500 + 1)) store pages counted exactly (exit 3; $sum)" \
    '[ $rc = 3 ] && grep -q "$sum" "$work/$tag.m1.out"' || tail -3 "$work/$tag.m1.out"
  check "$tag: 20 lines per kind, and a not_shown line counts the rest of each" \
    '[ "$(grep -c "^orphan key=" "$work/$tag.m1.out")" = 20 ] && [ "$(grep -c "^missing key=" "$work/$tag.m1.out")" = 20 ] &&
     grep -q "^not_shown kind=orphan count=$((orph - 20)) " "$work/$tag.m1.out" &&
     grep -q "^not_shown kind=missing count=$((miss - 20)) " "$work/$tag.m1.out"'
  tv --show 0 >"$work/$tag.m2.out"
  sed -n 's/^orphan key=//p' "$work/$tag.m2.out" | sort >"$work/$tag.orph.got"
  check "$tag: --show 0 names every orphan (exactly the store rows the source lacks) and every missing row" \
    'cmp -s "$work/$tag.orph.want" "$work/$tag.orph.got" && [ "$(grep -c "^missing key=" "$work/$tag.m2.out")" = $miss ] &&
     ! grep -q "^not_shown" "$work/$tag.m2.out"' || diff "$work/$tag.orph.want" "$work/$tag.orph.got" | head -5
  tv --repair 1 >"$work/$tag.m3.out"; rc=$?
  check "$tag: --repair 1 over many pages: exit 3, repaired=1" '[ $rc = 3 ] && grep -q "repaired=1" "$work/$tag.m3.out"'
  tv >"$work/$tag.m4.out"; rc=$?
  check "$tag: after --repair, zero differences and the store has one row per source row" \
    '[ $rc = 0 ] && grep -q "source_rows=$srows store_rows=$srows .*differences=0" "$work/$tag.m4.out"' || tail -3 "$work/$tag.m4.out"
  check "$tag: after --repair the store equals the source (SQL)" \
    '[ "$(q "SELECT count(*) FROM public.$t b FULL JOIN $st v USING ($k) WHERE b.$k IS NULL OR v.$k IS NULL
              OR v.text_hash <> sha256(convert_to(b.$TEXTCOL, '"'UTF8'"')) OR v.payload ? '"'planted'"'")" = 0 ]'
}
if [ "$store" = pgvector ]; then
  TEXTCOL=description many_faults books id cdcvec.public_books
  # a text key: the store walk pages in the key's own (collation) order
  q "CREATE TABLE tags (code text PRIMARY KEY, label text NOT NULL)"
  q "INSERT INTO tags SELECT CASE g % 3 WHEN 0 THEN upper(md5(g::text)) WHEN 1 THEN 'k ' || g ELSE 'Ä-' || g END,
     'tag ' || g FROM generate_series(1, 1500) g"
  CDCVEC_LOG=warn "$bin" sync --source "$DB" --table public.tags --text-column label --batch-ms 10 --threads 2 >>"$work/sync.log" 2>&1 &
  sync_pid=$!
  WATCH_PID=$sync_pid wait_until '[ "$(q "SELECT count(*) FROM cdcvec.state WHERE backfill_done" 2>/dev/null)" = 2 ]' \
    'q "SELECT count(*) FROM cdcvec.public_tags"; tail -c 300 "$work/sync.log"'
  kill -TERM $sync_pid && wait $sync_pid
  sync_pid=
  TEXTCOL=label many_faults tags code cdcvec.public_tags
fi

# cdcvec dead-letters list | retry | clear, verify --repair's clean-up, and sync --embed with its
# own --http (/metrics, /wait): rows over --max-text-bytes (checked before they are sent to the
# remote server) are dead letters until their cause is fixed
dead_letters_checks() {
  local sport hport sp= rc L dl
  sport=$(free_port $((port + 40)))
  CDCVEC_LOG=info "$bin" serve --listen "tcp://127.0.0.1:$sport" --http '' --threads 2 >>"$work/serve.log" 2>&1 &
  sp=$!
  WATCH_PID=$sp wait_until '(exec 3<>/dev/tcp/127.0.0.1/$sport) 2>/dev/null' 'wc -c <"$work/serve.log"' || return
  q "CREATE TABLE notes (id int PRIMARY KEY, body text NOT NULL)"
  q "INSERT INTO notes SELECT g, CASE WHEN g IN (3, 5, 7) THEN 'a long note ' || repeat('x', 100) ELSE 'note ' || g END
     FROM generate_series(1, 10) g"
  hport=$(free_port $((port + 50)))
  local E=(--source "$DB" --table public.notes --text-column body --embed "tcp://127.0.0.1:$sport" --threads 2)
  CDCVEC_LOG=warn "$bin" sync "${E[@]}" --max-text-bytes 50 --http "127.0.0.1:$hport" --batch-ms 10 >>"$work/sync.log" 2>&1 &
  sync_pid=$!
  WATCH_PID=$sync_pid wait_until '[ "$(q "SELECT count(*) FROM cdcvec.public_notes" 2>/dev/null)" = 7 ]' 'q "SELECT count(*) FROM cdcvec.public_notes" 2>/dev/null; wc -c <"$work/sync.log"'
  q "INSERT INTO notes VALUES (11, 'another long note ' || repeat('y', 100)), (12, 'note 12')"
  L=$(q "SELECT pg_current_wal_lsn()")
  check "sync --embed --http: /wait answers once the stream covers a commit" \
    'curl -sf "http://127.0.0.1:$hport/wait?lsn=$L&timeout_ms=30000" | grep -q applied_lsn'
  check "sync --embed --http: the search page embeds the query through the remote server" \
    'curl -sf "http://127.0.0.1:$hport/search?q=note+12&limit=1" | grep -q "\"key\":\"12\""'
  curl -sf "http://127.0.0.1:$hport/metrics" >"$work/embed-metrics.txt"
  check "sync --embed --http: its own /metrics counts the dead letters (4) and exports the lag" \
    'grep -q "^cdcvec_sync_dead_letters_total 4" "$work/embed-metrics.txt" && grep -q "^cdcvec_sync_replication_lag_bytes" "$work/embed-metrics.txt"'
  kill -TERM $sync_pid && wait $sync_pid
  sync_pid=
  dl() { CDCVEC_LOG=error "$bin" dead-letters "$1" "${E[@]}" "${@:2}" 2>>"$work/dl.err"; }
  dl list >"$work/dl1.out"; rc=$?
  check "dead-letters list: one line per entry (key, table, position, time, reason) and the count" \
    '[ $rc = 0 ] && [ "$(grep -c "^dead_letter id=[0-9]* table=public.notes key=\"[0-9]*\" position=[0-9A-F]*/[0-9A-F]* failed_at=20[0-9-]*T[0-9:]*Z reason=\".*max-text-bytes" "$work/dl1.out")" = 4 ] &&
     grep -q "^dead_letters table=public.notes store=pgvector count=4$" "$work/dl1.out"' || cat "$work/dl1.out"
  dl list --key 5 >"$work/dl2.out"
  check "dead-letters list --key: that key's entry only" '[ "$(grep -c "^dead_letter " "$work/dl2.out")" = 1 ] && grep -q "key=\"5\"" "$work/dl2.out"'
  # the causes of two are fixed in the source (3 shortened, 5 deleted); 7 and 11 still fail
  q "UPDATE notes SET body = 'short now' WHERE id = 3; DELETE FROM notes WHERE id = 5"
  q "INSERT INTO cdcvec.public_notes SELECT 5, embedding, payload, text_hash, model, source_lsn, updated_at FROM cdcvec.public_notes WHERE id = 1"
  dl retry --max-text-bytes 50 >"$work/dl3.out"; rc=$?
  check "dead-letters retry: the fixed ones applied (3 embedded, 5's vector deleted), the others fail again and are named (exit 3)" \
    '[ $rc = 3 ] && grep -q "^dead_letters_retried table=public.notes keys=4 applied=2 failed=2 skipped=0" "$work/dl3.out" &&
     grep -q "^retry_failed key=\"7\"" "$work/dl3.out" && grep -q "^retry_failed key=\"11\"" "$work/dl3.out" &&
     [ "$(q "SELECT count(*) FROM cdcvec.public_notes WHERE id = 3 AND text_hash = sha256(convert_to('"'short now'"', '"'UTF8'"'))")" = 1 ] &&
     [ "$(q "SELECT count(*) FROM cdcvec.public_notes WHERE id = 5")" = 0 ]' || cat "$work/dl3.out"
  dl list >"$work/dl4.out"
  check "dead-letters list after the retry: only the two that failed again, as new entries" \
    'grep -q "count=2$" "$work/dl4.out" && [ "$(sed -n "s/^dead_letter id=\([0-9]*\) .*/\1/p" "$work/dl4.out" | sort -n | head -1)" -gt "$(sed -n "s/^dead_letter id=\([0-9]*\) .*/\1/p" "$work/dl1.out" | sort -n | tail -1)" ]' || cat "$work/dl4.out"
  dl clear --key 11 >"$work/dl5.out"
  check "dead-letters clear --key: that key's entry removed, the other kept" \
    'grep -q "^dead_letters_cleared table=public.notes count=1$" "$work/dl5.out" && [ "$(q "SELECT string_agg(key, '"','"') FROM cdcvec.dead_letters")" = 7 ]'
  # the cause fixed for 7 by a larger limit: verify --repair re-embeds it and resolves its entry
  CDCVEC_LOG=error "$bin" verify "${E[@]}" --repair 1 >"$work/dl6.out" 2>>"$work/dl.err"; rc=$?
  check "verify --repair: the dead-lettered rows repaired (7, 11) and their entries removed" \
    '[ $rc = 3 ] && grep -q "missing=2 " "$work/dl6.out" && grep -q "^dead_letters_cleared table=\"public\".\"notes\" count=1$" "$work/dl6.out" &&
     [ "$(q "SELECT count(*) FROM cdcvec.dead_letters")" = 0 ] && [ "$(q "SELECT count(*) FROM cdcvec.public_notes")" = 11 ]' || cat "$work/dl6.out"
  q "INSERT INTO cdcvec.dead_letters (stream, lsn, key, reason) SELECT stream, '0/1', k, 'planted' FROM cdcvec.state, unnest('{1,2}'::text[]) k WHERE stream ~ 'notes'"
  dl clear >"$work/dl7.out"
  dl retry >"$work/dl8.out"; rc=$?
  check "dead-letters clear: every entry of the table removed; retry with none: exit 0" \
    'grep -q "count=2$" "$work/dl7.out" && [ $rc = 0 ] && grep -q "keys=0 applied=0 failed=0" "$work/dl8.out" && [ "$(q "SELECT count(*) FROM cdcvec.dead_letters")" = 0 ]'
  CDCVEC_LOG=warn "$bin" sync "${E[@]}" --batch-ms 10 >>"$work/sync.log" 2>&1 &
  sync_pid=$!
  WATCH_PID=$sync_pid wait_until '[ "$(q "SELECT count(*) FROM pg_replication_slots WHERE active AND slot_name ~ '"'notes'"'")" = 1 ]' 'wc -c <"$work/sync.log"'
  dl retry >"$work/dl9.out"; rc=$?
  check "dead-letters retry beside a running sync of the table is refused (exit 1, named)" '[ $rc = 1 ] && grep -q "sync of this table is running" "$work/dl.err"'
  kill -TERM $sync_pid && wait $sync_pid
  sync_pid=
}
[ "$store" = pgvector ] && dead_letters_checks
[ $fail -ne 0 ] && { echo "--- verify stderr (tail)"; tail -20 "$work/verify.err"; tail -5 "$work/sync.log"; }
exit $fail
