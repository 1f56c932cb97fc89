#!/usr/bin/env bash
# test_verify.sh: `cdcvec verify [--repair 1]` against a real PostgreSQL 15 (scripts/pg.sh) and
# pgvector, or the Qdrant or Upstash stand-in (tests/standins/). Four faults are planted in the store by
# hand (a deleted vector, a corrupted text hash, an edited payload, an extra row); verify must
# name each (exit 3), --repair 1 must fix them through the apply stage, and verify must then
# find nothing (exit 0). A repair beside a running sync is refused. On pgvector, thousands of
# faults of every kind over many pages, on an integer key and a text key, are counted exactly.
#   usage: test_verify.sh pgvector|qdrant|upstash path/to/cdcvec
set -u
store=$1
bin=$(cd "$(dirname "$2")" && pwd)/$(basename "$2")
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(bash "$root/scripts/pg.sh" dir "$(dirname "$bin")/test-verify-$store-$$")
. "$root/tests/sync_lib.sh"
port=$(free_port $((45000 + $$ % 8000)))
sync_pid= standin_pid=
cleanup() {
  [ -n "$sync_pid" ] && kill -9 "$sync_pid" 2>/dev/null
  [ -n "$standin_pid" ] && kill "$standin_pid" 2>/dev/null
  bash "$root/scripts/pg.sh" stop "$work/pg" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$work"
pg_start_retry "$work/pg" || { echo "FAIL cannot start PostgreSQL"; exit 1; }
q "CREATE EXTENSION vector" >/dev/null
psql -qX "$DB" -f "$root/tests/data/books.sql" >/dev/null
q "INSERT INTO books (name, description, author, year) SELECT 'gen ' || g, 'generated book ' || g || ' about ' || md5(g::text), 'gen', 2000 + g % 20 FROM generate_series(1, 1200) g"

SINK=
if [ "$store" = qdrant ]; then
  PY=$(bash "$root/scripts/test-venv.sh") || { echo "SKIPPED: the tests' Python venv"; exit 77; }
  sport=$(free_port $((port + 5)))
  echo "s3cret-$$" >"$work/key"
  "$PY" "$root/tests/standins/qdrant_standin.py" --port "$sport" --api-key-file "$work/key" >"$work/standin.log" 2>&1 &
  standin_pid=$!
  export QDRANT_API_KEY_FILE=$work/key
  SINK=qdrant://127.0.0.1:$sport/books
  WATCH_PID=$standin_pid wait_until 'grep -q "^READY" "$work/standin.log"' 'wc -c <"$work/standin.log"' || exit 1
  qd() { curl -sf -X "$1" "http://127.0.0.1:$sport/collections/books/$2" -H "api-key: $(cat "$work/key")" -H 'Content-Type: application/json' -d "$3" >/dev/null; }
elif [ "$store" = upstash ]; then
  PY=$(bash "$root/scripts/test-venv.sh") || { echo "SKIPPED: the tests' Python venv"; exit 77; }
  sport=$(free_port $((port + 5)))
  echo "s3cret-$$" >"$work/key"
  "$PY" "$root/tests/standins/upstash_standin.py" --port "$sport" --token-file "$work/key" --dimension 384 >"$work/standin.log" 2>&1 &
  standin_pid=$!
  export UPSTASH_VECTOR_REST_URL=http://127.0.0.1:$sport UPSTASH_VECTOR_REST_TOKEN_FILE=$work/key
  SINK=upstash://
  WATCH_PID=$standin_pid wait_until 'grep -q "^READY" "$work/standin.log"' 'wc -c <"$work/standin.log"' || exit 1
  up() { curl -sf -X POST "http://127.0.0.1:$sport/$1/books" -H "Authorization: Bearer $(cat "$work/key")" -H 'Content-Type: application/json' -d "$2" >/dev/null; }
fi
sinkopt() { [ -n "$SINK" ] && echo "--sink $SINK"; }
verify() { CDCVEC_LOG=error "$bin" verify --source "$DB" --table public.books $(sinkopt) --threads 2 "$@" 2>>"$work/verify.err"; }

CDCVEC_LOG=warn "$bin" sync --source "$DB" --table public.books $(sinkopt) --batch-ms 10 --threads 2 >>"$work/sync.log" 2>&1 &
sync_pid=$!
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
verify --repair 1 >"$work/v2.out"; rc=$?
check "$store: --repair 1: exit 3 (differences were found) and repaired=1" '[ $rc = 3 ] && grep -q "repaired=1" "$work/v2.out"'
verify >"$work/v3.out"; rc=$?
check "$store: after --repair, verify finds zero differences (exit 0)" '[ $rc = 0 ] && grep -q "differences=0" "$work/v3.out"' || cat "$work/v3.out"
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
[ $fail -ne 0 ] && { echo "--- verify stderr (tail)"; tail -20 "$work/verify.err"; tail -5 "$work/sync.log"; }
exit $fail
