#!/usr/bin/env bash
# test_migrate.sh: cdcvec migrate on pgvector against a real PostgreSQL 15 (docs/CONFIG.md,
# "Changing the model"): the bookstore, synced with all-MiniLM-L6-v2, migrated to a second model
# of the same dimension (mini-384, generated with random weights) while a writer changes ~50 rows a
# second and tests/migrate_search.py searches the live index 20 times a second: no search fails,
# none is answered by a half-built or mixed index, the switch happens once (old model, then new);
# a sync with the new model then follows the switched index and verify finds 0 differences; a sync
# with the old model is refused; --rollback brings the old index back and the next old-model sync
# catches it up (rows changed and deleted since the switch) to 0 differences; --drop-old frees it.
# A template-only migration copies the live vectors and embeds (almost) nothing; a pipeline file of
# two tables is migrated whole (one model per process) while the other table changes.
#   usage: test_migrate.sh path/to/cdcvec
set -u
. "$(dirname "$0")/sync_lib.sh"
test_begin migrate 45000 "$1"
PY=$(bash "$root/scripts/test-venv.sh") || { echo "FAIL the tests' Python venv"; exit 1; }
unset CDCVEC_SOURCE CDCVEC_TABLE CDCVEC_MODEL_DIR CDCVEC_CONFIG
pg_up vector books
q "INSERT INTO books (name, description, author, year)
   SELECT 'gen ' || g, 'generated book ' || g || ' about ' || md5(g::text), 'gen', 2000 + g % 20
   FROM generate_series(1, 1500) g" >/dev/null
gen_model mini-384
NEW=$gen/mini-384
B="cdcvec.public_books"
rows() { q "SELECT count(*) FROM books WHERE description IS NOT NULL"; }

start_sync() { # [MODEL_DIR]
  "$bin" sync --source "$DB" --threads 2 ${1:+--model "$1"} >>"$work/sync.log" 2>&1 &
  sync_pid=$!
  watch "$sync_pid" sync "$work/sync.log"
}
stop_sync() { kill -TERM "$sync_pid" 2>/dev/null; wait "$sync_pid" 2>/dev/null; sync_pid=; }
# caught_up: the marker row written now is in the store with its text's hash
caught_up() {
  local m
  m=$(q "INSERT INTO books (name, description, author, year) VALUES ('marker', 'marker ' || clock_timestamp(), 'm', 1) RETURNING id" | head -1)
  wait_until "[ \"\$(q \"SELECT count(*) FROM $B s JOIN books b USING (id) WHERE b.id = $m AND s.text_hash = sha256(convert_to(b.description, 'UTF8'))\")\" = 1 ]" "sink_progress $B"
}
verify_with() { # LABEL [MODEL_DIR]
  "$bin" verify --source "$DB" --threads 2 ${2:+--model "$2"} >"$work/verify.out" 2>>"$work/verify.log"
  local rc=$?
  check "$1" '[ $rc = 0 ] && grep -q "differences=0" "$work/verify.out"' || { cat "$work/verify.out"; tail -5 "$work/verify.log"; }
}

# the live index, old model
start_sync
wait_until '[ "$(q "SELECT count(*) FROM cdcvec.state WHERE backfill_done" 2>/dev/null)" = 1 ]' "sink_progress $B"
caught_up
stop_sync
old_rev=$(q "SELECT min(model_revision) FROM $B")
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
"$PY" "$root/tests/migrate_search.py" "$DB" $((n0 * 9 / 10)) "$work/stop-search" >"$work/search.json" 2>"$work/search.log" &
search_pid=$!
watch "$search_pid" searches "$work/search.log"

# a migration with flags that make no sense is refused before anything starts
"$bin" migrate --source "$DB" >/dev/null 2>"$work/err"; rc=$?
check "migrate without --to-model/--to-template/--rollback/--drop-old: exit 2 naming them" \
  '[ $rc = 2 ] && grep -q -- "--to-model DIR and/or --to-template" "$work/err"'

"$bin" migrate --source "$DB" --threads 2 --to-model "$NEW" >"$work/migrate.log" 2>&1 &
mig_pid=$!
wait_until '! builtin kill -0 $mig_pid 2>/dev/null' "wc -c <'$work/migrate.log'; sink_progress cdcvec.public_books__next"
wait "$mig_pid"; rc=$?
check "migrate: exit 0 after the switch" '[ $rc = 0 ] && grep -q "event=migrate_switched" "$work/migrate.log"' ||
  tail -20 "$work/migrate.log"
check "migrate: the shadow was verified against the checkpoint's snapshot, 0 differences" \
  'grep -q "event=migrate_verified .*differences=0" "$work/migrate.log"'
check "migrate: the old index kept as __old, no shadow left" \
  '[ "$(q "SELECT to_regclass('"'cdcvec.public_books__old'"') IS NOT NULL, to_regclass('"'cdcvec.public_books__next'"') IS NULL")" = "t|t" ]'
check "one replication slot, no temporary slot left" '[ "$(q "SELECT count(*) FROM pg_replication_slots")" = 1 ]'

# the sync of the new model follows the switched index; the old model is refused
start_sync "$NEW"
caught_up
"$bin" migrate --source "$DB" --to-model "$NEW" >"$work/busy.log" 2>&1; rc=$?
check "migrate beside a running sync of the table: exit 1 at once, naming it and the fix" \
  '[ $rc = 1 ] && grep -q "event=migrate_stopped .*holder=.*fix=\"stop it, run cdcvec migrate" "$work/busy.log"' || cat "$work/busy.log"
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
check "searches during the migration: >= 40, none failed, none half-built or mixed" \
  "$PY -c 'import json,sys; d=json.loads(sys.argv[1]); sys.exit(not (d[\"searches\"] >= 40 and d[\"failed\"] == 0 and d[\"half_built\"] == 0 and d[\"mixed\"] == 0))' '$s'"
new_rev=$(q "SELECT min(model_revision) FROM $B")
check "the searches saw the old model's index, then the new one's, once" \
  "$PY -c 'import json,sys; d=json.loads(sys.argv[1]); sys.exit(d[\"revisions\"] != [sys.argv[2], sys.argv[3]])' '$s' '$old_rev' '$new_rev'"
check "the writer changed rows throughout (>= 100 changes)" '[ "$(q "SELECT count(*) FROM books WHERE author = '"'w'"' OR description LIKE '"'%+%'"'")" -ge 100 ]'
verify_with "after the switch: the live index equals the source under the new model (verify: 0 differences)" "$NEW"
"$bin" sync --source "$DB" --threads 2 >"$work/refused.log" 2>&1; rc=$?
check "a sync with the old model is refused (model_changed, naming cdcvec migrate)" \
  '[ $rc = 1 ] && grep -q "event=model_changed" "$work/refused.log" && grep -q "cdcvec migrate" "$work/refused.log"'

# rollback: the old index back; rows changed and deleted since the switch are brought back
q "UPDATE books SET description = description || ' after' WHERE author = 'gen' AND id % 7 = 0; DELETE FROM books WHERE author = 'gen' AND id % 11 = 0" >/dev/null
"$bin" migrate --source "$DB" --rollback >"$work/rollback.log" 2>&1; rc=$?
check "--rollback: exit 0, the old index live again" \
  '[ $rc = 0 ] && grep -q "event=migrate_rolled_back" "$work/rollback.log" && [ "$(q "SELECT min(model_revision) FROM $B")" = "$old_rev" ]' ||
  cat "$work/rollback.log"
start_sync
wait_until '[ "$(q "SELECT count(*) FROM cdcvec.state WHERE backfill_done AND stream NOT LIKE '"'%__old'"'" 2>/dev/null)" = 1 ]' "sink_progress $B"
caught_up
stop_sync
check "the old model's sync swept the rows deleted since the switch" 'grep -q "event=backfill_swept" "$work/sync.log"'
verify_with "after the rollback: the old index equals the source (verify: 0 differences)"
"$bin" migrate --source "$DB" --drop-old >"$work/drop.log" 2>&1; rc=$?
check "--drop-old: exit 0, the replaced index gone" \
  '[ $rc = 0 ] && [ "$(q "SELECT to_regclass('"'cdcvec.public_books__old'"') IS NULL")" = t ]' || cat "$work/drop.log"

# a template-only change: the live vectors are copied, only texts the template changes are embedded
# ('{description}' gives every row its text of today: nothing to embed but rows without one)
"$bin" migrate --source "$DB" --threads 2 --to-template '{description}' >"$work/tmpl.log" 2>&1; rc=$?
n=$(q "SELECT count(*) FROM $B")
check "--to-template: exit 0, the live index copied, (almost) nothing embedded" \
  '[ $rc = 0 ] && grep -q "event=migrate_seeded .*rows=$n " "$work/tmpl.log" && grep -q "event=migrate_done .*embedded=[0-9] kept=[0-9]*" "$work/tmpl.log" && [ "$(sed -n "s/.*event=migrate_done .*kept=\([0-9]*\).*/\1/p" "$work/tmpl.log")" -ge $((n * 9 / 10)) ]' ||
  grep -E "migrate_(seeded|done|refused)|error" "$work/tmpl.log" | tail -5
check "--to-template: every row stamped with the template" \
  '[ "$(q "SELECT count(*) FROM $B WHERE text_source IS DISTINCT FROM '"'template {description}'"'")" = 0 ]' ||
  q "SELECT text_source, count(*) FROM $B GROUP BY 1"
"$bin" migrate --source "$DB" --drop-old >/dev/null 2>&1

# a pipeline file of two tables: --to-model migrates both (one model per process); the other
# table's changes during the migration are kept
q "CREATE TABLE notes (id text PRIMARY KEY, body text); INSERT INTO notes SELECT 'n' || g, 'note number ' || g FROM generate_series(1, 300) g" >/dev/null
cat >"$work/two.yaml" <<YAML
source: "$DB"
defaults: {threads: 2}
tables:
  - table: public.books
    template: "{description}"
  - table: public.notes
    text: body
YAML
"$bin" sync --config "$work/two.yaml" >>"$work/sync2.log" 2>&1 &
sync_pid=$!
watch "$sync_pid" sync2 "$work/sync2.log"
wait_until '[ "$(q "SELECT count(*) FROM cdcvec.state WHERE backfill_done AND stream LIKE '"'%pipeline%'"'" 2>/dev/null)" = 2 ]' "sink_progress cdcvec.public_notes"
stop_sync
"$bin" migrate --config "$work/two.yaml" --table public.notes --to-model "$NEW" >/dev/null 2>"$work/err"; rc=$?
check "a file: --to-model with --table is refused (one model per pipeline), naming the fix" \
  '[ $rc = 2 ] && grep -q "one model for all its tables; fix: migrate them all" "$work/err"'
(for i in $(seq 1 60); do q "UPDATE notes SET body = body || ' +' WHERE id = 'n$i'; DELETE FROM notes WHERE id = 'n$((i + 100))'" >/dev/null; done) &
nw_pid=$!
"$bin" migrate --config "$work/two.yaml" --to-model "$NEW" >"$work/migrate2.log" 2>&1; rc=$?
wait "$nw_pid"
check "a file: both tables migrated, checked and switched" \
  '[ $rc = 0 ] && [ "$(grep -c "event=migrate_switched" "$work/migrate2.log")" = 2 ] && [ "$(grep -c "event=migrate_verified .*differences=0" "$work/migrate2.log")" = 2 ]' ||
  grep -E "migrate_|error" "$work/migrate2.log" | tail -8
"$bin" sync --config "$work/two.yaml" --model "$NEW" >>"$work/sync2.log" 2>&1 &
sync_pid=$!
watch "$sync_pid" sync2 "$work/sync2.log"
q "INSERT INTO notes VALUES ('last', 'the last note')" >/dev/null
wait_until '[ "$(q "SELECT count(*) FROM cdcvec.public_notes WHERE id = '"'last'"'")" = 1 ]' "sink_progress cdcvec.public_notes"
caught_up
stop_sync
for t in public.books public.notes; do
  "$bin" verify --config "$work/two.yaml" --table $t --model "$NEW" >"$work/verify.out" 2>>"$work/verify.log"; rc=$?
  check "a file: $t equals its source under the new model (verify: 0 differences)" '[ $rc = 0 ] && grep -q "differences=0" "$work/verify.out"' || cat "$work/verify.out"
done
check "a file: still one slot for the pipeline, none left behind" '[ "$(q "SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE '"'%pipeline%'"'")" = 1 ] && [ "$(q "SELECT count(*) FROM pg_replication_slots WHERE temporary")" = 0 ]'
test_end
