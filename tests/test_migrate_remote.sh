#!/usr/bin/env bash
# test_migrate_remote.sh: cdcvec migrate on Qdrant or Upstash (the stand-ins of tests/standins/)
# with a real PostgreSQL 15 as source and state database (docs/ARCHITECTURE.md, "Migrations"): the
# bookstore, synced with all-MiniLM-L6-v2, migrated to a second model of the same dimension
# (mini-384, generated) while a writer changes ~50 rows a second and tests/migrate_search_remote.py
# searches 20 times a second as a searcher outside cdcvec finds the live index: Qdrant through the
# alias books__live (qdrant-client), which cdcvec moves at the switch; Upstash through the namespace
# recorded in cdcvec's state, read before each search (the switch there is the state's, and
# `cdcvec search` per query could not keep up 20 a second; a running sync's search page would serve
# the index it opened, so it is not what an outside searcher should follow). No search fails, none
# is answered by a half-built or mixed index, the searches see the old model, then the new one; the
# shadow is a new generation (books__g1) and the state row records it; a sync with the new model
# follows it and verify finds 0 differences; --rollback brings the old index back (the alias too),
# the next old-model sync catches it up and sweeps the rows deleted since the switch, verify 0;
# --drop-old deletes the replaced collection / namespace and its state row. A template-only
# migration copies the live points into the shadow and embeds (almost) nothing.
#   usage: test_migrate_remote.sh qdrant|upstash path/to/cdcvec
set -u
store=$1
. "$(dirname "$0")/sync_lib.sh"
test_begin "migrate-$store" 46000 "$2"
PY=$(bash "$root/scripts/test-venv.sh") || { echo "FAIL the tests' Python venv"; exit 1; }
unset CDCVEC_SOURCE CDCVEC_TABLE CDCVEC_MODEL_DIR CDCVEC_CONFIG
pg_up books
q "INSERT INTO books (name, description, author, year)
   SELECT 'gen ' || g, 'generated book ' || g || ' about ' || md5(g::text), 'gen', 2000 + g % 20
   FROM generate_series(1, 1500) g" >/dev/null
gen_model mini-384
NEW=$gen/mini-384
echo "s3cret-$$" >"$work/key"
if [ "$store" = qdrant ]; then
  standin qdrant --api-key-file "$work/key" || exit 1
  export QDRANT_URL=http://127.0.0.1:$standin_port QDRANT_API_KEY_FILE=$work/key
  SINK=(--sink "qdrant://127.0.0.1:$standin_port/books")
  where="qdrant:http://127.0.0.1:$standin_port/books"
else
  standin upstash --token-file "$work/key" --dimension 384 || exit 1
  export UPSTASH_VECTOR_REST_URL=http://127.0.0.1:$standin_port UPSTASH_VECTOR_REST_TOKEN_FILE=$work/key
  SINK=(--sink upstash:// --namespace books)
  where="upstash:http://127.0.0.1:$standin_port/books"
fi
rows() { q "SELECT count(*) FROM books WHERE description IS NOT NULL"; }
start_sync() { # [MODEL_DIR]
  "$bin" sync --source "$DB" "${SINK[@]}" --threads 2 ${1:+--model "$1"} >>"$work/sync.log" 2>&1 &
  sync_pid=$!
  watch "$sync_pid" sync "$work/sync.log"
}
stop_sync() { kill -TERM "$sync_pid" 2>/dev/null; wait "$sync_pid" 2>/dev/null; sync_pid=; }
state() { q "SELECT $1 FROM cdcvec.state WHERE stream = '$LIVE'"; }
# caught_up: the live index's position passed a marker row written now
caught_up() {
  local m
  m=$(q "INSERT INTO books (name, description, author, year) VALUES ('marker', 'marker ' || clock_timestamp(), 'm', 1) RETURNING pg_current_wal_insert_lsn()" | head -1)
  wait_until "[ \"\$(state \"lsn >= '$m'\")\" = t ]" "q 'SELECT stream, lsn, backfill_done FROM cdcvec.state'"
}
verify_with() { # LABEL [MODEL_DIR]
  "$bin" verify --source "$DB" "${SINK[@]}" --threads 2 ${2:+--model "$2"} >"$work/verify.out" 2>>"$work/verify.log"
  local rc=$?
  check "$1" '[ $rc = 0 ] && grep -q "differences=0" "$work/verify.out"' || { cat "$work/verify.out"; tail -5 "$work/verify.log"; }
}
# exists NAME: the collection / namespace is in the store
exists() {
  "$PY" - "$store" "$1" <<'PYX'
import os, sys, warnings
warnings.filterwarnings("ignore")
store, name = sys.argv[1:3]
sec = lambda n: open(os.environ[n + "_FILE"]).read().strip()
if store == "qdrant":
    from qdrant_client import QdrantClient
    c = QdrantClient(url=os.environ["QDRANT_URL"], api_key=sec("QDRANT_API_KEY"), https=False, check_compatibility=False)
    sys.exit(0 if c.collection_exists(name) else 1)
from upstash_vector import Index
idx = Index(url=os.environ["UPSTASH_VECTOR_REST_URL"], token=sec("UPSTASH_VECTOR_REST_TOKEN"))
sys.exit(0 if name in idx.list_namespaces() else 1)
PYX
}
# stamps NAME: the text sources of the points in collection / namespace NAME, and their count
stamps() {
  "$PY" - "$store" "$1" <<'PYX'
import collections, os, sys, warnings
warnings.filterwarnings("ignore")
store, name = sys.argv[1:3]
sec = lambda n: open(os.environ[n + "_FILE"]).read().strip()
seen = collections.Counter()
if store == "qdrant":
    from qdrant_client import QdrantClient
    c = QdrantClient(url=os.environ["QDRANT_URL"], api_key=sec("QDRANT_API_KEY"), https=False, check_compatibility=False)
    off = None
    while True:
        pts, off = c.scroll(name, limit=1000, offset=off, with_payload=True)
        seen.update(p.payload["cdcvec"].get("text_source") for p in pts)
        if off is None:
            break
else:
    from upstash_vector import Index
    idx = Index(url=os.environ["UPSTASH_VECTOR_REST_URL"], token=sec("UPSTASH_VECTOR_REST_TOKEN"))
    cur = ""
    while True:
        r = idx.range(cursor=cur, limit=1000, include_metadata=True, namespace=name)
        seen.update(v.metadata["cdcvec"].get("text_source") for v in r.vectors)
        cur = r.next_cursor
        if not cur:
            break
print(" ".join("%s %d" % kv for kv in sorted(seen.items())))
PYX
}
# alias_at: the collection the alias books__live points at (qdrant)
alias_at() {
  "$PY" -c 'import os, warnings; warnings.filterwarnings("ignore"); from qdrant_client import QdrantClient
c = QdrantClient(url=os.environ["QDRANT_URL"], api_key=open(os.environ["QDRANT_API_KEY_FILE"]).read().strip(), https=False, check_compatibility=False)
print({a.alias_name: a.collection_name for a in c.get_aliases().aliases}.get("books__live", "-"))'
}

# the live index, old model
start_sync
wait_until '[ "$(q "SELECT count(*) FROM cdcvec.state WHERE backfill_done" 2>/dev/null)" = 1 ]' "q 'SELECT stream, lsn, backfill_done FROM cdcvec.state'"
LIVE=$(q "SELECT stream FROM cdcvec.state")
check "$store: the live state row is keyed by the store and the name given ($LIVE)" '[ "${LIVE#*@}" = "$where" ]'
caught_up
stop_sync
[ "$store" = qdrant ] && check "qdrant: the alias books__live made with the collection" '[ "$(alias_at)" = books ]'
old_rev=$(state model_revision)
n0=$(rows)

# the writer (~50 changes a second) and the searches (20 a second), through the migration
q "CREATE TABLE ctl (stop boolean)" >/dev/null
cat >"$work/writer.sql" <<'SQL'
\set QUIET on
DO $$
DECLARE i int := 0;
BEGIN
  WHILE NOT EXISTS (SELECT 1 FROM ctl WHERE stop) AND i < 100000 LOOP
    i := i + 1;
    CASE i % 5
      WHEN 0 THEN INSERT INTO books (name, description, author, year) VALUES ('w' || i, 'written ' || i, 'w', 2020);
      WHEN 1 THEN DELETE FROM books WHERE id = (SELECT min(id) FROM books WHERE author = 'gen');
      ELSE UPDATE books SET description = description || ' +' || i WHERE id = (SELECT id FROM books WHERE author = 'gen' ORDER BY id DESC OFFSET (i % 997) LIMIT 1);
    END CASE;
    COMMIT;
    PERFORM pg_sleep(0.02);
  END LOOP;
END $$;
SQL
psql -qX "$DB" -f "$work/writer.sql" >"$work/writer.log" 2>&1 &
writer_pid=$!
watch "$writer_pid" writer "$work/writer.log"
"$PY" "$root/tests/migrate_search_remote.py" "$store" "$DB" "$LIVE" books $((n0 * 9 / 10)) "$work/stop-search" \
  >"$work/search.json" 2>"$work/search.log" &
search_pid=$!
watch "$search_pid" searches "$work/search.log"

"$bin" migrate --source "$DB" "${SINK[@]}" --threads 2 --to-model "$NEW" >"$work/migrate.log" 2>&1 &
mig_pid=$!
wait_until '! builtin kill -0 $mig_pid 2>/dev/null' "wc -c <'$work/migrate.log'; q 'SELECT stream, lsn, backfill_done FROM cdcvec.state'"
wait "$mig_pid"; rc=$?
check "$store migrate: exit 0 after the switch" '[ $rc = 0 ] && grep -q "event=migrate_switched" "$work/migrate.log"' ||
  tail -20 "$work/migrate.log"
check "$store migrate: the shadow was verified against the checkpoint's snapshot, 0 differences" \
  'grep -q "event=migrate_verified .*differences=0" "$work/migrate.log"'
check "$store migrate: the live row records the new generation books__g1, the old row the name given" \
  '[ "$(state index_name)" = books__g1 ] && [ "$(q "SELECT count(*) FROM cdcvec.state WHERE stream = '"'${LIVE%%@*}__old@${LIVE#*@}'"' AND index_name IS NULL")" = 1 ] && [ "$(q "SELECT count(*) FROM cdcvec.state")" = 2 ]'
check "$store migrate: both indexes in the store" 'exists books && exists books__g1'
[ "$store" = qdrant ] && check "qdrant migrate: the alias books__live moved to books__g1" '[ "$(alias_at)" = books__g1 ]'
check "one replication slot, no temporary slot left" '[ "$(q "SELECT count(*) FROM pg_replication_slots")" = 1 ]'

# the sync of the new model follows the switched index; the old model is refused
start_sync "$NEW"
caught_up
q "INSERT INTO ctl VALUES (true)" >/dev/null
unwatch "$writer_pid"
wait "$writer_pid"
touch "$work/stop-search"
unwatch "$search_pid"
wait "$search_pid"
caught_up
stop_sync
s=$(cat "$work/search.json")
echo "  searches: $s"
check "$store: searches during the migration: >= 40 (and >= 10 checks), none failed, none half-built or mixed" \
  "$PY -c 'import json,sys; d=json.loads(sys.argv[1]); sys.exit(not (d[\"searches\"] >= 40 and d[\"checks\"] >= 10 and d[\"failed\"] == 0 and d[\"check_failed\"] == 0 and d[\"half_built\"] == 0 and d[\"mixed\"] == 0))' '$s'"
new_rev=$(state model_revision)
check "$store: the searches saw the old model's index, then the new one's, once" \
  "$PY -c 'import json,sys; d=json.loads(sys.argv[1]); sys.exit(d[\"revisions\"] != [sys.argv[2], sys.argv[3]] or d[\"indexes\"] not in ([], [\"books\", \"books__g1\"]))' '$s' '$old_rev' '$new_rev'"
check "the writer changed rows throughout (>= 100 changes)" '[ "$(q "SELECT count(*) FROM books WHERE author = '"'w'"' OR description LIKE '"'%+%'"'")" -ge 100 ]'
verify_with "$store after the switch: the live index equals the source under the new model (verify: 0 differences)" "$NEW"
"$bin" sync --source "$DB" "${SINK[@]}" --threads 2 >"$work/refused.log" 2>&1; rc=$?
check "$store: a sync with the old model is refused (model_changed, naming cdcvec migrate)" \
  '[ $rc = 1 ] && grep -q "event=model_changed" "$work/refused.log" && grep -q "cdcvec migrate" "$work/refused.log"'

# rollback: the old index back; rows changed and deleted since the switch are brought back
q "UPDATE books SET description = description || ' after' WHERE author = 'gen' AND id % 7 = 0; DELETE FROM books WHERE author = 'gen' AND id % 11 = 0" >/dev/null
"$bin" migrate --source "$DB" "${SINK[@]}" --rollback >"$work/rollback.log" 2>&1; rc=$?
check "$store --rollback: exit 0, the old index live again (name given, old model)" \
  '[ $rc = 0 ] && grep -q "event=migrate_rolled_back" "$work/rollback.log" && [ -z "$(state index_name)" ] && [ "$(state model_revision)" = "$old_rev" ]' ||
  cat "$work/rollback.log"
[ "$store" = qdrant ] && check "qdrant --rollback: the alias books__live back on books" '[ "$(alias_at)" = books ]'
start_sync
wait_until '[ "$(state backfill_done)" = t ]' "q 'SELECT stream, lsn, backfill_done FROM cdcvec.state'"
caught_up
stop_sync
check "$store: the old model's sync swept the rows deleted since the switch" 'grep -q "event=backfill_swept" "$work/sync.log"'
verify_with "$store after the rollback: the old index equals the source (verify: 0 differences)"
"$bin" migrate --source "$DB" "${SINK[@]}" --drop-old >"$work/drop.log" 2>&1; rc=$?
check "$store --drop-old: exit 0, books__g1 and its state row gone, the live one kept" \
  '[ $rc = 0 ] && ! exists books__g1 && exists books && [ "$(q "SELECT count(*) FROM cdcvec.state")" = 1 ] && [ -n "$(state lsn)" ]' ||
  cat "$work/drop.log"

# a template-only change: the live vectors are copied into the shadow (books__g1 again: the
# generation after the live books), only texts the template changes are embedded
"$bin" migrate --source "$DB" "${SINK[@]}" --threads 2 --to-template '{description}' >"$work/tmpl.log" 2>&1; rc=$?
n=$(rows)
check "$store --to-template: exit 0, the live index copied, (almost) nothing embedded" \
  '[ $rc = 0 ] && grep -q "event=migrate_seeded .*rows=$n " "$work/tmpl.log" && grep -q "event=migrate_done .*embedded=[0-9] kept=[0-9]*" "$work/tmpl.log" && [ "$(sed -n "s/.*event=migrate_done .*kept=\([0-9]*\).*/\1/p" "$work/tmpl.log")" -ge $((n * 9 / 10)) ]' ||
  grep -E "migrate_(seeded|done|refused)|error" "$work/tmpl.log" | tail -5
check "$store --to-template: the live index is books__g1, every point stamped with the template" \
  '[ "$(state index_name)" = books__g1 ] && [ "$(stamps books__g1)" = "template {description} $n" ]' || stamps books__g1
test_end
