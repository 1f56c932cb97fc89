#!/usr/bin/env bash
# test_sync.sh: `cdcvec sync` against a real PostgreSQL 15 (wal_level=logical) with pgvector,
# started here by scripts/pg.sh as a non-root user. After every step the sink must equal the
# source: every id present on both sides, the same text hash (sha256 of the description), the
# same payload. Covers backfill, insert/update/delete, payload-only updates (no re-embedding),
# multi-row transactions, rollbacks, TOASTed texts, truncate, NULL texts, kill -9 during
# 10,000 changes, a PostgreSQL restart under a running sync, bad set-ups, and the model recorded
# in the store (another revision refused; none recorded: adopted).
#   usage: test_sync.sh path/to/cdcvec
set -u
. "$(dirname "$0")/sync_lib.sh"
test_begin sync 41000 "$1"
sync_pid=
pg_up vector books

start_sync() {
  CDCVEC_LOG=${LOG:-warn} "$bin" sync --source "$DB" --table public.books --batch-ms 10 --threads 2 "$@" \
    >>"$work/sync.log" 2>&1 &
  sync_pid=$!
  watch "$sync_pid" sync "$work/sync.log"
}
stop_sync() { [ -n "$sync_pid" ] && kill -TERM "$sync_pid" && wait "$sync_pid"; local rc=$?; sync_pid=; return $rc; }

MISMATCH="SELECT count(*) FROM (SELECT * FROM books WHERE description IS NOT NULL) b
  FULL JOIN cdcvec.public_books v USING (id)
  WHERE b.id IS NULL OR v.id IS NULL OR v.text_hash <> sha256(convert_to(b.description, 'UTF8'))
     OR v.payload->>'name' IS DISTINCT FROM b.name OR (v.payload->>'year')::int IS DISTINCT FROM b.year"
# Waits until the sink equals the source, while it makes progress; $1: the mismatch query
# (default books), $2: the sink table.
converged() { converged_q "${1:-$MISMATCH}" "${2:-cdcvec.public_books}"; }

start_sync
check "rows existing before the first start are all embedded" converged
# the stored vectors are the model's (the sink's binary COPY path: byte order, dimension, values)
q "COPY (SELECT description FROM books WHERE id IN (1, 3, 5) ORDER BY id) TO STDOUT" >"$work/ref.txt"
"$bin" embed --threads 2 --format f32 -o "$work/ref.f32" "$work/ref.txt" 2>/dev/null
q "SELECT embedding::text FROM cdcvec.public_books WHERE id IN (1, 3, 5) ORDER BY id" >"$work/stored.txt"
check "stored vectors equal cdcvec embed's for the same texts (max |diff| < 1e-6)" \
  'python3 -c "
import struct, sys
ref = open(sys.argv[1], \"rb\").read(); rows = open(sys.argv[2]).read().split()
assert len(rows) == 3 and len(ref) == 3 * 384 * 4, (len(rows), len(ref))
for i, line in enumerate(rows):
    got = [float(x) for x in line.strip(\"[]\").split(\",\")]
    want = struct.unpack(\"<384f\", ref[i * 1536:(i + 1) * 1536])
    assert len(got) == 384 and max(abs(a - b) for a, b in zip(got, want)) < 1e-6, i
" "$work/ref.f32" "$work/stored.txt"'
check "the HNSW index is built once the backfill is done" '[ "$(q "SELECT count(*) FROM pg_indexes WHERE schemaname = '"'"'cdcvec'"'"' AND tablename = '"'"'public_books'"'"' AND indexdef LIKE '"'"'%hnsw%vector_cosine_ops%'"'"'")" = 1 ]'
SLOT=$(q "SELECT slot_name FROM pg_replication_slots WHERE slot_name LIKE 'cdcvec_postgres_public_books_%'")
check "the slot exists, is active, and its name is unique to the database and table ($SLOT)" '[ "$(q "SELECT active FROM pg_replication_slots WHERE slot_name = '"'"'$SLOT'"'"'")" = t ] && [[ $SLOT =~ ^cdcvec_postgres_public_books_[0-9a-f]{8}$ ]]'

basic_changes
q "BEGIN; INSERT INTO books (name, description, author, year) VALUES ('Rolled back', 'never committed', 'x', 1); ROLLBACK"
q "UPDATE books SET year = year WHERE id = 3" # a later commit to wait on
check "rollback: nothing applied" 'converged && [ "$(q "SELECT count(*) FROM cdcvec.public_books WHERE payload->>'"'"'name'"'"' = '"'"'Rolled back'"'"'")" = 0 ]'

toast_changes
# no silent truncation: a text over the model's 256 tokens is counted and logged once per table
q "INSERT INTO books (name, description, author, year) VALUES ('Long two', repeat('a long text ', 200), 'x', 1998)"
check "a second text over 256 tokens embedded" converged
check "texts over 256 tokens: logged once per table, with the count and the fix" '[ "$(grep -c "event=text_truncated table=public.books " "$work/sync.log")" = 1 ] && grep "event=text_truncated" "$work/sync.log" | grep -Eq "tokens=(2[6-9][0-9]|[3-9][0-9][0-9]|[0-9]{4,}) max=256 fix=.*--chunk-max-tokens.*chunk:"'

q "ALTER TABLE books ALTER COLUMN description DROP NOT NULL"
q "UPDATE books SET description = NULL WHERE id = 3"
check "NULL text: the row has no vector (documented)" 'converged && [ "$(q "SELECT count(*) FROM cdcvec.public_books WHERE id = 3")" = 0 ]'
q "UPDATE books SET description = 'back again' WHERE id = 3"
check "text set again after NULL" converged

q "TRUNCATE books"
check "truncate empties the index" 'converged && [ "$(q "SELECT count(*) FROM cdcvec.public_books")" = 0 ]'
books 2
check "inserts after truncate" converged

# ---- search: the CLI, the page and its JSON endpoint ------------------------------------
out=$("$bin" search "aliens invade the earth" --source "$DB" --table public.books --limit 3 2>/dev/null)
check "cdcvec search prints ranked results with payloads" 'echo "$out" | grep -q "^ 1\. 0\.[0-9]*  key=[0-9]*  {.*\"name\""'
stop_sync
hport=$(free_port $((port + 2)))
start_sync --http 127.0.0.1:$hport --search-queue-ms 20000
# Searches answer 503 until the session has described the table (the model loaded, the slot
# opened): wait for the first 200, with /readyz's reason as the progress measure.
WATCH_PID=$sync_pid wait_until 'curl -sf "http://127.0.0.1:$hport/search?q=x&limit=1" >/dev/null' \
  'curl -s "http://127.0.0.1:$hport/readyz"'
check "search page is served" 'curl -sf "http://127.0.0.1:$hport/" | grep -q "<form"'
json=$(curl -sf "http://127.0.0.1:$hport/search?q=aliens+invade+the+earth&limit=3")
r0=$(echo "$json" | python3 -c 'import json, sys; r = json.load(sys.stdin)["results"]; print(r[0]["key"] if len(r) == 3 and r[0]["rank"] == 1 else -1)' 2>/dev/null)
check "search JSON: 3 results, the first about an alien invasion" '[ "$(q "SELECT description ~* '"'"'alien|invad'"'"' FROM books WHERE id = ${r0:--1}")" = t ]'
check "search without q: 400 with a JSON message" '[ "$(curl -s -o /dev/null -w "%{http_code}" "http://127.0.0.1:$hport/search?limit=3")" = 400 ]'
# 20 searches at once, each holding its slot 1.5 s (min_lsn far ahead): 16 run, 4 wait for a slot
# (--search-queue-ms) instead of a 503 at once; all end in the min_lsn 504 (issue 27 item 6)
codes=$(python3 - "http://127.0.0.1:$hport" <<'PY'
import sys, threading, urllib.error, urllib.request
out = []
def get():
    try:
        urllib.request.urlopen(sys.argv[1] + "/search?q=x&min_lsn=FFFFFFFF/0&timeout_ms=1500", timeout=60)
        out.append(200)
    except urllib.error.HTTPError as e:
        out.append(e.code)
ts = [threading.Thread(target=get) for _ in range(20)]
[t.start() for t in ts]
[t.join() for t in ts]
print(" ".join(map(str, sorted(out))))
PY
)
check "20 searches at once: the 4 beyond 16 wait for a slot, no 503 ($codes)" '[ "$codes" = "$(printf "504 %.0s" $(seq 20) | sed "s/ $//")" ]'
# filters (issue 27): the rows a SQL query on the source finds, limit rows when more match; 400s name the fault
check "search filters (GET and POST) return the source's rows; unknown or malformed filters are 400s naming them" \
  'python3 "$root/tests/search_filter_check.py" 127.0.0.1:$hport "$DB" books "author=John+Wyndham|10" "year.gte=1950&year.lt=1960|3" "year=1951&author=John+Wyndham|5" -- "authr=x|authr" "year.gte=abc|year.gte" "author.gt=x|author.gt" "year.between=1|year.between" "{\"q\":\"x\",\"filter\":{\"year\":\"1950\"}}|filter.year" "{\"q\":\"x\",\"fliter\":{}}|fliter"'
check "sync metrics on /metrics pass promtool" 'curl -sf "http://127.0.0.1:$hport/metrics" | tee "$work/m.txt" | promtool check metrics && grep -q "^cdcvec_sync_changes_total{kind=\"insert\"}" "$work/m.txt"'
check "cdcvec_texts_truncated_total{table} exists at 0" 'grep -q "^cdcvec_texts_truncated_total{table=\"public.books\"} 0$" "$work/m.txt"'
q "INSERT INTO books (name, description, author, year) VALUES ('Long three', repeat('a long text ', 200), 'x', 1997)"
check "a text over 256 tokens is counted in cdcvec_texts_truncated_total{table}" 'converged && curl -sf "http://127.0.0.1:$hport/metrics" | grep -q "^cdcvec_texts_truncated_total{table=\"public.books\"} 1$"'

# ---- crash safety: kill -9 at random points during 10,000 changes ----------------------
load_start
kill_sync_during_load
check "kill -9 landed during the load ($kills times)" '[ $kills -ge 3 ]'
check "load of 10,000 changes ran" '[ "$(q "SELECT count(*) FROM books WHERE author = '"'"'gen'"'"'")" -gt 4000 ]'
check "after $kills kill -9 and restarts: sink equals source (ids, hashes, payloads)" converged
# pgvector's HNSW scan stops at hnsw.ef_search rows (40 by default): a larger limit gets them all
n60=$("$bin" search "a generated book" --source "$DB" --table public.books --limit 150 2>/dev/null | grep -c '^ *[0-9]*\. ')
check "search --limit 150 over the HNSW index returns 150 results ($n60)" '[ "$n60" = 150 ]'
# a filter over the HNSW index after 10,000 changes (deleted rows in the graph): the iterative
# scan goes on until limit rows pass it (pgvector 0.8), the GIN index on payload serves equality
stop_sync
fport=$(free_port $((hport + 3)))
start_sync --http 127.0.0.1:$fport
WATCH_PID=$sync_pid wait_until 'curl -sf "http://127.0.0.1:$fport/search?q=x&limit=1" >/dev/null' 'curl -s "http://127.0.0.1:$fport/readyz"'
check "filters over the HNSW index with deleted rows: limit rows whenever that many match, the SQL rows otherwise" \
  'python3 "$root/tests/search_filter_check.py" 127.0.0.1:$fport "$DB" books "author=gen&year.gte=2005&year.lte=2006|100" "year.gte=2019|60" "author=John+Wyndham|10"'
check "the payload's GIN index exists (serves equality filters)" '[ "$(q "SELECT count(*) FROM pg_indexes WHERE schemaname = '"'"'cdcvec'"'"' AND indexdef LIKE '"'"'%gin (payload jsonb_path_ops)%'"'"'")" = 1 ]'
check "no orphaned or duplicate vectors" '[ "$(q "SELECT count(*) FROM cdcvec.public_books")" = "$(q "SELECT count(*) FROM books WHERE description IS NOT NULL")" ]'

# ---- PostgreSQL restarted under a running sync -------------------------------------------
bash "$root/scripts/pg.sh" restart "$work/pg"
q "INSERT INTO books (name, description, author, year) VALUES ('After restart', 'written after PostgreSQL came back', 'x', 2026)"
check "PostgreSQL restart: sync reconnects and converges" converged
check "sync is still running" 'kill -0 "$sync_pid"'
check "SIGTERM: sync exits 0" stop_sync
check "the slot's confirmed position advanced to the sink's" '[ "$(q "SELECT confirmed_flush_lsn >= (SELECT lsn FROM cdcvec.state) FROM pg_replication_slots WHERE slot_name = '"'"'$SLOT'"'"'")" = t ]'

# ---- rows written while the initial backfill runs are not lost ---------------------------------
q "CREATE TABLE public.reviews (id serial PRIMARY KEY, description text NOT NULL, stars int)"
q "INSERT INTO reviews (description, stars) SELECT 'review ' || g || ' of a book about ' || md5(g::text), g % 5 FROM generate_series(1, 1500) g"
CDCVEC_LOG=warn "$bin" sync --source "$DB" --table public.reviews --batch-ms 10 --threads 2 >>"$work/sync2.log" 2>&1 &
rpid=$!
watch $rpid "sync of reviews" "$work/sync2.log"
wait_until '[ "$(q "SELECT count(*) FROM cdcvec.state WHERE stream LIKE '"'"'cdcvec_postgres_public_reviews_%'"'"' AND NOT backfill_done" 2>/dev/null)" = 1 ]' true
q "INSERT INTO reviews (description, stars) SELECT 'written during the backfill ' || g, 1 FROM generate_series(1, 200) g"
q "UPDATE reviews SET description = description || ' (edited during the backfill)' WHERE id % 10 = 0"
q "DELETE FROM reviews WHERE id % 7 = 0"
check "the writes landed while the backfill was running" '[ "$(q "SELECT backfill_done FROM cdcvec.state WHERE stream LIKE '"'"'cdcvec_postgres_public_reviews_%'"'"'")" = f ]'
RMISMATCH="SELECT count(*) FROM reviews b FULL JOIN cdcvec.public_reviews v USING (id)
  WHERE b.id IS NULL OR v.id IS NULL OR v.text_hash <> sha256(convert_to(b.description, 'UTF8'))
     OR (v.payload->>'stars')::int IS DISTINCT FROM b.stars"
check "rows written during the backfill are not lost" 'converged "$RMISMATCH" cdcvec.public_reviews'
kill -TERM $rpid; wait $rpid

# ---- cdcvec backfill: on demand, resumable by primary key ------------------------------------
t_before=$(q "SELECT max(updated_at) FROM cdcvec.public_reviews WHERE id <= 1000")
CDCVEC_LOG=debug "$bin" backfill --source "$DB" --table public.reviews --force 1 --after 1000 --threads 2 2>"$work/bf.log"; rc=$?
check "backfill --after: exit 0 with a progress line naming the last key" '[ $rc -eq 0 ] && grep -q "rows/s, ETA .* last key [0-9]" "$work/bf.log"'
# 700 rows after key 1000: two pages, each applied while the next page's statement runs
check "backfill: each page applied with the next page's read in flight" '[ "$(grep -c "event=backfill_page .* read_ms=[0-9.]* apply_ms=[0-9.]* next_in_flight=1" "$work/bf.log")" = 2 ]'
check "backfill --after: rows up to the key untouched, the rest re-embedded" '[ "$(q "SELECT max(updated_at) FROM cdcvec.public_reviews WHERE id <= 1000")" = "$t_before" ] && [ "$(q "SELECT bool_and(updated_at > '"'"'$t_before'"'"') FROM cdcvec.public_reviews WHERE id > 1000")" = t ]'
check "backfill leaves the index equal to the source" 'converged "$RMISMATCH" cdcvec.public_reviews'
# a database restart in the middle: the backfill retries by itself, after the last key applied
t_mark=$(q "SELECT now()")
CDCVEC_LOG=info "$bin" backfill --source "$DB" --table public.reviews --force 1 --threads 2 2>"$work/bf2.log" &
bpid=$!
WATCH_PID=$bpid wait_until '[ "$(q "SELECT count(*) FROM cdcvec.public_reviews WHERE updated_at > '"'"'$t_mark'"'"'" 2>/dev/null)" -gt 0 ]' \
  'sink_progress cdcvec.public_reviews'
bash "$root/scripts/pg.sh" restart "$work/pg" >/dev/null
wait "$bpid"; rc=$?
check "backfill: a database restart mid-way is retried after the last key applied (exit 0)" \
  '[ $rc -eq 0 ] && grep -q "event=backfill_retry .*after=\"[0-9]" "$work/bf2.log" && grep -q event=backfill_done "$work/bf2.log"' || tail -5 "$work/bf2.log"
check "... every row re-embedded by it, the index equal to the source" \
  '[ "$(q "SELECT bool_and(updated_at > '"'"'$t_mark'"'"') FROM cdcvec.public_reviews")" = t ] && converged "$RMISMATCH" cdcvec.public_reviews'
CDCVEC_LOG=warn "$bin" backfill --source "$DB" --table public.reviews --after 1,2 2>"$work/bf.log"; rc=$?
check "backfill --after with the wrong number of key values: exit 1, named" '[ $rc -eq 1 ] && grep -q "event=bad_option option=--after" "$work/bf.log"'

# ---- --sink: the index in another database ----------------------------------------------------
q "CREATE DATABASE vectors" >/dev/null
VDB=${DB%/postgres}/vectors
CDCVEC_LOG=warn "$bin" sync --source "$DB" --table public.reviews --sink "$VDB" --slot other_sink --threads 2 >>"$work/sync3.log" 2>&1 &
opid=$!
watch $opid "sync into another database" "$work/sync3.log"
wait_until '[ "$(q "SELECT count(*) FROM cdcvec.public_reviews" "$VDB" 2>/dev/null)" = "$(q "SELECT count(*) FROM reviews")" ]' \
  'sink_progress cdcvec.public_reviews "$VDB"'
check "--sink writes the index into another database" '[ "$(psql -qAtX "$VDB" -c "SELECT count(*) FROM cdcvec.public_reviews")" = "$(q "SELECT count(*) FROM reviews")" ]'
kill -TERM $opid; wait $opid

# ---- bad set-ups: a clear error at start, exit 1 --------------------------------------------
run_expect() { # name, expected log event, args...
  local name=$1 event=$2; shift 2
  CDCVEC_LOG=warn timeout $((STALL_S * 2)) "$bin" sync --source "$DB" "$@" >"$work/bad.log" 2>&1; local rc=$?
  check "$name: exit 1 and $event" '[ $rc -eq 1 ] && grep -q "event=$event" "$work/bad.log"'
}
q "CREATE TABLE public.nopk (id int, description text)"
run_expect "table without a primary key" no_primary_key --table public.nopk
run_expect "missing text column" text_column_missing --table public.books --text-column blurb
run_expect "missing table" table_missing --table public.nope
q "CREATE ROLE weak LOGIN; GRANT SELECT ON books TO weak"
WEAKDB=${DB/postgres@/weak@}
CDCVEC_LOG=warn timeout $((STALL_S * 2)) "$bin" sync --source "$WEAKDB" --table public.books >"$work/bad.log" 2>&1; rc=$?
check "role without REPLICATION: exit 1 and the fix" '[ $rc -eq 1 ] && grep -q "event=no_replication_privilege.*ALTER ROLE weak REPLICATION" "$work/bad.log"'
q "SELECT pg_drop_replication_slot('$SLOT')" >/dev/null
run_expect "slot dropped externally" slot_missing --table public.books
start_sync --resnapshot 1
q "INSERT INTO books (name, description, author, year) VALUES ('After resnapshot', 'rebuilt from a new snapshot', 'x', 2026)"
check "--resnapshot 1 rebuilds and streams again" converged
stop_sync

# ---- the model stamp (ingest/stamp.c): another model or text source is refused, none adopted ----
meta() { q "SELECT coalesce(model, '-') || ' ' || coalesce(model_revision, '-') FROM cdcvec.state WHERE stream = '$SLOT'"; }
model_recorded "the store records the model's id and its weights' sha256" meta
check "every row carries the stamp: the model's id, revision and the text source recorded" \
  '[ "$(q "SELECT count(*) FROM cdcvec.public_books v, cdcvec.state s WHERE s.stream = '"'$SLOT'"' AND (v.model, v.model_revision, v.text_source) IS DISTINCT FROM (s.model, s.model_revision, s.text_source)")" = 0 ] && [ "$(q "SELECT text_source FROM cdcvec.state WHERE stream = '"'$SLOT'"'")" = "column 3 description" ]' ||
  q "SELECT model, model_revision, text_source, count(*) FROM cdcvec.public_books GROUP BY 1, 2, 3"
gen_model mini-384 # another model of the same dimension (384), random weights
run_expect "another model of the same dimension: refused" model_changed --table public.books --model "$gen/mini-384" --threads 2
check "  ... the recorded and the new model named, stopped as kind=config with the fix naming cdcvec migrate" \
  'grep -q "event=model_changed .*recorded_model=sentence-transformers/all-MiniLM-L6-v2 recorded_revision=$want_rev model=mini-384 revision=[0-9a-f]\{64\}" "$work/bad.log" && grep -q "event=sync_stopped kind=config .*fix=\"run cdcvec migrate with this command.s options but the recorded model and text, plus --to-model DIR (it builds the new index beside the live one.*point --sink at a new table/collection" "$work/bad.log"' ||
  tail -3 "$work/bad.log"
run_expect "a changed --template: refused" text_source_changed --table public.books --template '{name}: {description}' --threads 2
check "  ... both text sources named, the fix naming cdcvec migrate --to-template" \
  'grep -q "event=text_source_changed .*recorded=\"column 3 description\" now=\"template {name}: {description}\"" "$work/bad.log" && grep -q "event=sync_stopped kind=config .*fix=\"run cdcvec migrate .*plus --to-template T (it builds.*point --sink at a new table/collection" "$work/bad.log"' ||
  tail -3 "$work/bad.log"
q "UPDATE cdcvec.state SET model_revision = repeat('0', 64) WHERE stream = '$SLOT'"
run_expect "another revision of the model recorded in the store: refused" model_changed --table public.books --threads 2
q "UPDATE cdcvec.state SET model = NULL, model_revision = NULL WHERE stream = '$SLOT'"
q "ALTER TABLE cdcvec.public_books DROP COLUMN model_revision, DROP COLUMN text_source" # an earlier version's table
LOG=info start_sync
q "INSERT INTO books (name, description, author, year) VALUES ('After adoption', 'a store of an earlier version', 'x', 2026)"
check "a store without a recorded model (an earlier version's) adopts the running one and streams" converged
check "  ... the table's stamp columns added back, the new row stamped" \
  '[ "$(q "SELECT model_revision || '"' '"' || text_source FROM cdcvec.public_books v JOIN books b USING (id) WHERE b.name = '"'After adoption'"'")" = "$want_rev column 3 description" ]'
check "  ... event=stamp_adopted (a warning), and the model and revision recorded" \
  'grep -q "level=warn event=stamp_adopted table=.*books.* model=sentence-transformers/all-MiniLM-L6-v2 revision=$want_rev" "$work/sync.log" && [ "$(meta)" = "sentence-transformers/all-MiniLM-L6-v2 $want_rev" ]' ||
  { grep stamp_ "$work/sync.log" | tail -3; echo "  recorded: $(meta)"; }
stop_sync
: >"$work/sync.log"
LOG=info start_sync
q "INSERT INTO books (name, description, author, year) VALUES ('Same model', 'restarted with the recorded model', 'x', 2026)"
check "the same model and text source restart fine (nothing adopted or refused)" \
  'converged && ! grep -q "event=stamp_adopted\|event=model_changed\|event=text_source_changed" "$work/sync.log"'
stop_sync
pg_start_retry "$work/pg2" DB2 "$(free_port $((port + 10)))" # a second cluster
psql -qAtX "$DB2" -c "ALTER SYSTEM SET wal_level = replica" >/dev/null
bash "$root/scripts/pg.sh" restart "$work/pg2"
psql -qAtX "$DB2" -c "CREATE TABLE books (id int PRIMARY KEY, description text)" >/dev/null
CDCVEC_LOG=warn timeout $((STALL_S * 2)) "$bin" sync --source "$DB2" --table public.books >"$work/bad.log" 2>&1; rc=$?
check "wal_level not logical: exit 1 and the fix" '[ $rc -eq 1 ] && grep -q "event=wal_level_not_logical.*wal_level = logical" "$work/bad.log"' ||
  { echo "  rc=$rc"; tail -5 "$work/bad.log"; tail -5 "$work/pg2/server.log"; }
"$bin" sync >/dev/null 2>"$work/bad.log"; rc=$?
check "no --source: exit 2 with a message" '[ $rc -eq 2 ] && grep -q "source" "$work/bad.log"'

test_end 40 "$work/sync.log"
