#!/usr/bin/env bash
# test_pipeline_file.sh: the pipeline file (cdcvec sync --config, docs/CONFIG.md "The pipeline
# file") against a real PostgreSQL 15. Each bad file (unknown key, wrong type, missing
# source/table/text, two entries for one table, a key twice, text and template, YAML syntax, a
# password in the source, a table-naming flag beside the file) exits 2 naming FILE:LINE:COL, the
# key and the fix, and creates nothing (no slot, no publication, no cdcvec schema); --print
# shows the resolved pipeline (precedence, no password) and reads back; the docs' example is
# valid; a one-table command (verify) refuses several tables; a columns: list without the key or
# the text, or with an unknown column, is refused at start with its place and fix, creating
# nothing; a one-table file syncs books on the pipeline's slot (backfill, streamed changes), the
# flags on their own; where: (a row filter) and columns: (a column list: refused under REPLICA
# IDENTITY FULL; published, backfilled and streamed with the listed columns only).
#   usage: test_pipeline_file.sh path/to/cdcvec
set -u
. "$(dirname "$0")/sync_lib.sh"
test_begin pipe 44000 "$1"
sync_pid=
unset CDCVEC_SOURCE CDCVEC_TABLE CDCVEC_TEXT_COLUMN CDCVEC_TEMPLATE CDCVEC_SINK CDCVEC_NAMESPACE CDCVEC_CONFIG
pg_up vector
sed -n '1,/-- batch 2/p' "$root/tests/data/books.sql" | psql -qX "$DB" >/dev/null

# bad FILE_NAME LINE KEY FIX_WORDS YAML: refused (2) with FILE:LINE:, the key and the fix
bad() {
  local f=$work/$1.yaml line=$2 key=$3 fixw=$4
  printf '%b' "$5" >"$f"
  "$bin" sync --config "$f" >"$work/out" 2>"$work/err"
  local rc=$?
  check "$1: refused with $1.yaml:$2:, key '$3' and the fix" \
    '[ $rc = 2 ] && grep -q "$f:$line:[0-9]*: $key" "$work/err" && grep -q "fix: .*$fixw" "$work/err" && [ ! -s "$work/out" ]' ||
    { echo "  rc=$rc: $(cat "$work/err")"; }
}
S="source: \"$DB\"\n"
bad unknown 4 'tables\[0\].txt' "did you mean 'text'" "${S}tables:\n  - table: books\n    txt: description\n"
bad dashed 5 'tables\[0\].batch-rows' "did you mean 'batch_rows'" "${S}tables:\n  - table: books\n    text: description\n    batch-rows: 5\n"
bad unknown_top 1 'sourse' "did you mean 'source'" "sourse: x\ntables:\n  - table: books\n    text: description\n"
bad wrong_type 5 'tables\[0\].batch_rows' 'write a number' "${S}tables:\n  - table: books\n    text: description\n    batch_rows: lots\n"
bad not_a_choice 5 'tables\[0\].on_error' 'write one of dead-letter, stop' "${S}tables:\n  - table: books\n    text: description\n    on_error: skip\n"
bad not_a_list 3 'tables' 'tables: \[{table' "${S}tables:\n  table: books\n"
bad list_for_text 4 'tables\[0\].text' 'write' "${S}tables:\n  - table: books\n    text: [a, b]\n"
bad no_source 1 'source' 'add source:' "tables:\n  - table: books\n    text: description\n"
bad no_table 3 'tables\[0\]' 'add table:' "${S}tables:\n  - text: description\n"
bad no_text 3 'tables\[0\]' 'add text:' "${S}tables:\n  - table: books\n"
bad two_entries 5 'tables\[1\]' 'one entry per table' "${S}tables:\n  - table: books\n    text: description\n  - table: public.Books\n    text: name\n"
bad key_twice 5 'tables\[0\].text' 'keep one' "${S}tables:\n  - table: books\n    text: description\n    text: name\n"
bad text_and_template 3 'tables\[0\]' 'keep one' "${S}tables:\n  - table: books\n    text: description\n    template: \"{name}\"\n"
bad yaml_syntax 4 'YAML syntax error' 'correct the YAML' "${S}tables:\n  - table: books\n   text: description\n"
bad second_document 6 'a second YAML document' 'one pipeline per file' "${S}tables:\n  - table: books\n    text: description\n---\nfoo: 1\n"
bad password 1 'source' 'PGPASSWORD' "source: postgresql://u:secret@127.0.0.1/db\ntables:\n  - table: books\n    text: description\n"
bad process_key_in_table 5 'tables\[0\].model' 'under defaults' "${S}tables:\n  - table: books\n    text: description\n    model: /m\n"
bad run_option 3 'defaults.resnapshot' 'command line' "${S}defaults:\n  resnapshot: 1\ntables:\n  - table: books\n    text: description\n"
bad store_scheme 5 'tables\[0\].store' 'qdrant://HOST:PORT/COLLECTION' "${S}tables:\n  - table: books\n    text: description\n    store: qdrnt://h/c\n"
check "the password is not echoed" '! grep -rq secret "$work/err"'
printf "${S}tables:\n  - table: books\n    text: description\n" >"$work/one.yaml"
"$bin" sync --config "$work/one.yaml" --table other >/dev/null 2>"$work/err"; rc=$?
check "a table-naming flag beside --config is refused, naming it and the fix" \
  '[ $rc = 2 ] && grep -q -- "--table set together with --config .*fix: write table: in the file and drop --table" "$work/err"'
CDCVEC_SINK=qdrant://h:1/c "$bin" sync --config "$work/one.yaml" >/dev/null 2>"$work/err"; rc=$?
check "... and so is its environment variable" '[ $rc = 2 ] && grep -q "CDCVEC_SINK set together with --config.*unset CDCVEC_SINK" "$work/err"'
PGPASSWORD_FILE=$work/no-such-file "$bin" sync --config "$work/one.yaml" >/dev/null 2>"$work/err"; rc=$?
check "an unreadable PGPASSWORD_FILE is refused, naming it" '[ $rc = 2 ] && grep -q "PGPASSWORD_FILE=$work/no-such-file: No such file.*fix:" "$work/err"'
check "nothing was created in the database by the refused files" \
  '[ "$(q "SELECT (SELECT count(*) FROM pg_replication_slots) + (SELECT count(*) FROM pg_publication) + (SELECT count(*) FROM pg_namespace WHERE nspname = '"'cdcvec'"')")" = 0 ]'

# --print: the resolved pipeline, precedence, no password, read back
cat >"$work/two.yaml" <<EOF
source: "$DB"
defaults: {batch_rows: 100, store: pgvector, threads: 2}
tables:
  - table: public.books
    text: description
  - table: public.articles
    template: "{title}\n\n{body}"
    store: qdrant://qdrant:6333/articles
    batch_rows: 7
    where: "published"
    columns: [id, title, body]
    chunk: {max_tokens: 256, overlap: 32}
EOF
"$bin" sync --config "$work/two.yaml" --print >"$work/p.yaml" 2>"$work/err"; rc=$?
sed -n '/table: "public.books"/,/table: "public.articles"/p' "$work/p.yaml" >"$work/pb"
sed -n '/table: "public.articles"/,$p' "$work/p.yaml" >"$work/pa"
check "--print: exit 0, both tables with their own keys and defaults:" \
  '[ $rc = 0 ] && grep -qx "    text: \"description\"" "$work/pb" && grep -qx "    store: pgvector" "$work/pb" &&
   grep -qx "    batch_rows: 100" "$work/pb" && grep -qxF "    template: \"{title}\\n\\n{body}\"" "$work/pa" &&
   ! grep -q "text:" "$work/pa" && grep -qx "    store: \"qdrant://qdrant:6333/articles\"" "$work/pa" &&
   grep -qx "    batch_rows: 7" "$work/pa" && grep -qx "    where: \"published\"" "$work/pa" &&
   grep -qx "    columns: \[\"id\", \"title\", \"body\"\]" "$work/pa" &&
   grep -qx "    chunk: {max_tokens: 256, overlap: 32}" "$work/pa" && grep -qx "  threads: 2" "$work/p.yaml"' ||
  cat "$work/p.yaml" "$work/err"
"$bin" sync --config "$work/p.yaml" --print >"$work/p2.yaml" 2>"$work/err"
check "--print's output reads back to the same pipeline" 'diff <(sed 1d "$work/p.yaml") <(sed 1d "$work/p2.yaml") >/dev/null'
CDCVEC_THREADS=3 "$bin" sync --config "$work/two.yaml" --batch-rows 9 --print >"$work/p3.yaml" 2>/dev/null
check "precedence: a flag beats defaults:, a table's own key beats the flag, the environment beats defaults:" \
  '[ "$(grep -c "batch_rows: 9$" "$work/p3.yaml")" = 1 ] && grep -q "batch_rows: 7$" "$work/p3.yaml" && grep -q "threads: 3$" "$work/p3.yaml"'
"$bin" sync --source "postgresql://u:hunter2@127.0.0.1/db" --sink "host=h password=hunter3 dbname=v" --print >"$work/p4.yaml" 2>&1; rc=$?
check "--print of today's flags: one table, passwords replaced" \
  '[ $rc = 0 ] && grep -q "table: \"public.books\"" "$work/p4.yaml" && ! grep -q hunter "$work/p4.yaml" && grep -q "u:\*\*\*@" "$work/p4.yaml"'
python3 - "$root/docs/CONFIG.md" "$work/doc.yaml" <<'PY'
import re, sys
s = open(sys.argv[1]).read()
sec = s[s.index("## The pipeline file\n"):]
open(sys.argv[2], "w").write(re.search(r"```yaml\n(.*?)```", sec, re.S).group(1))
PY
"$bin" sync --config "$work/doc.yaml" --print >/dev/null 2>"$work/err"; rc=$?
check "the example of docs/CONFIG.md is a valid pipeline" '[ $rc = 0 ]' || cat "$work/err"
"$bin" verify --config "$work/two.yaml" >/dev/null 2>"$work/err"; rc=$?
check "several tables: cdcvec verify (one table) refuses the file, naming the tables and the fix" \
  '[ $rc = 2 ] && grep -q "event=pipeline_refused .*error=\"cdcvec verify works on one table; the file lists public.books (line 4), public.articles (line 6)\" fix=\"name one with --table" "$work/err"'
"$bin" verify --config "$work/two.yaml" --table nope >/dev/null 2>"$work/err"; rc=$?
check "... --table naming no table of the file: refused, listing the file's" \
  '[ $rc = 2 ] && grep -q "cdcvec verify: --table nope: not a table of $work/two.yaml (it has public.books, public.articles); fix:" "$work/err"'
# columns: that lacks the key or the text, or names no column of the table: refused at start
# (exit 1, a configuration fault) naming the file's place and the fix, before anything is created
badcols() { # NAME LIST WHAT FIX_PATTERN
  printf "${S}defaults: {threads: 2}\ntables:\n  - table: books\n    text: description\n    columns: %s\n" "$2" >"$work/$1.yaml"
  CDCVEC_LOG=warn timeout 120 "$bin" sync --config "$work/$1.yaml" >"$work/$1.log" 2>&1
  local rc=$? name=$1 fixp=$4
  check "columns: $2 ($3): refused (exit 1) with $1.yaml:6:, the key and the fix" \
    '[ $rc = 1 ] && grep -q "event=columns_refused table=\"public\".\"books\" at=\"$work/$name.yaml:6:[0-9]*: tables\[0\].columns\".* fix=\"$fixp" "$work/$name.log"' ||
    { echo "  rc=$rc"; tail -3 "$work/$1.log"; }
}
badcols cols_nokey "[name, description]" "no primary key" "add id to columns: (columns: \[name, description, id\])"
badcols cols_notext "[id, name]" "no text column" "add description to columns:"
badcols cols_unknown "[id, description, nope]" "an unknown column" "write columns: with the table's columns only: id, name,"
check "still nothing created in the database" \
  '[ "$(q "SELECT (SELECT count(*) FROM pg_replication_slots) + (SELECT count(*) FROM pg_publication) + (SELECT count(*) FROM pg_namespace WHERE nspname = '"'cdcvec'"')")" = 0 ]'

# a one-table file syncs books: backfill, a streamed change, on the pipeline's slot; then the
# flags, on a slot of their own
cat >"$work/books.yaml" <<EOF
# the books table into the source database's pgvector
source: "$DB"
defaults: {threads: 2, batch_ms: 10}
tables:
  - table: books
    text: description
EOF
CDCVEC_CONFIG=$work/books.yaml CDCVEC_LOG=warn "$bin" sync >>"$work/sync.log" 2>&1 &
sync_pid=$!
watch $sync_pid sync "$work/sync.log"
WATCH_PID=$sync_pid wait_until '[ "$(q "SELECT count(*) FROM cdcvec.state WHERE backfill_done" 2>/dev/null)" = 1 ]' \
  'sink_progress cdcvec.public_books'
check "the file's table is backfilled" '[ "$(q "SELECT count(*) FROM cdcvec.public_books")" = "$(q "SELECT count(*) FROM books")" ]'
q "INSERT INTO books (name, description, author, year) VALUES ('from the file', 'a lighthouse keeper writes letters to the sea', 'x', 2001)"
WATCH_PID=$sync_pid wait_until '[ "$(q "SELECT count(*) FROM cdcvec.public_books")" = "$(q "SELECT count(*) FROM books")" ]' \
  'sink_progress cdcvec.public_books'
check "a change is streamed" '[ "$(q "SELECT count(*) FROM cdcvec.public_books")" = "$(q "SELECT count(*) FROM books")" ]'
slot=$(q "SELECT slot_name FROM pg_replication_slots")
check "a file's table streams from the pipeline's slot (one per database: tables can be added), its state keyed slot/table" \
  'case $slot in cdcvec_*_pipeline_tables_*) true ;; *) false ;; esac && [ "$(q "SELECT stream FROM cdcvec.state")" = "$slot/public.books" ]'
kill -TERM $sync_pid
wait $sync_pid
sync_pid=
CDCVEC_LOG=warn "$bin" sync --source "$DB" --table books --text-column description --threads 2 --batch-ms 10 >>"$work/sync.log" 2>&1 &
sync_pid=$!
watch $sync_pid sync "$work/sync.log"
q "INSERT INTO books (name, description, author, year) VALUES ('from the flags', 'a clockmaker repairs time itself', 'y', 2002)"
WATCH_PID=$sync_pid wait_until '[ "$(q "SELECT count(*) FROM cdcvec.public_books")" = "$(q "SELECT count(*) FROM books")" ]' \
  'sink_progress cdcvec.public_books'
check "the flags run the table on a slot of their own (the file's is the pipeline's), the change applied" \
  '[ "$(q "SELECT count(*) FROM pg_replication_slots WHERE slot_name <> '"'$slot'"'")" = 1 ] && [ "$(q "SELECT count(*) FROM cdcvec.public_books")" = "$(q "SELECT count(*) FROM books")" ]'
kill -TERM $sync_pid
wait $sync_pid
sync_pid=

# where: a row filter. On a column outside the replica identity it would make the application's
# UPDATE and DELETE fail: refused at start with the fix, the application's writes unharmed. With
# REPLICA IDENTITY FULL: only the rows that pass it are in the store; rows moving out of it and
# into it follow; verify --config --table compares the rows that pass it.
q "CREATE TABLE films (id int PRIMARY KEY, title text, year int);
   INSERT INTO films SELECT g, 'film number ' || g || ' about ' || md5(g::text), 1990 + g % 30 FROM generate_series(1, 60) g" >/dev/null
printf "${S}defaults: {threads: 2, batch_ms: 10}\ntables:\n  - table: films\n    text: title\n    where: \"year >= 2005\"\n" >"$work/where.yaml"
CDCVEC_LOG=warn timeout 120 "$bin" sync --config "$work/where.yaml" >"$work/where.log" 2>&1; rc=$?
check "where: on a column outside the replica identity: refused (exit 1) with the fix, before it is published" \
  '[ $rc = 1 ] && grep -q "event=row_filter_refused .*fix=\"ALTER TABLE \"public\".\"films\" REPLICA IDENTITY FULL" "$work/where.log" &&
   [ "$(q "SELECT count(*) FROM pg_publication_tables WHERE tablename = '"'films'"'")" = 0 ]' || cat "$work/where.log"
check "... and the application's UPDATE and DELETE still work" \
  'q "UPDATE films SET year = year WHERE id = 1; DELETE FROM films WHERE id = 60" >/dev/null'
q "ALTER TABLE films REPLICA IDENTITY FULL"
FMISMATCH="SELECT count(*) FROM (SELECT * FROM films WHERE year >= 2005) b FULL JOIN cdcvec.public_films v USING (id)
  WHERE b.id IS NULL OR v.id IS NULL OR v.text_hash <> sha256(convert_to(b.title, 'UTF8'))"
CDCVEC_LOG=warn "$bin" sync --config "$work/where.yaml" >>"$work/where.log" 2>&1 &
sync_pid=$!
watch $sync_pid sync "$work/where.log"
converged_q "$FMISMATCH" cdcvec.public_films
check "where: the store holds exactly the rows that pass the filter" \
  '[ "$(q "$FMISMATCH")" = 0 ] && [ "$(q "SELECT count(*) FROM cdcvec.public_films")" = "$(q "SELECT count(*) FROM films WHERE year >= 2005")" ]'
q "UPDATE films SET year = 1980 WHERE id = (SELECT min(id) FROM films WHERE year >= 2005);
   UPDATE films SET year = 2020 WHERE id = (SELECT min(id) FROM films WHERE year < 2005);
   INSERT INTO films VALUES (100, 'an old film', 1950), (101, 'a new film', 2024)" >/dev/null
converged_q "$FMISMATCH" cdcvec.public_films
check "where: a row moved out of the filter leaves the store, one moved in joins it, inserts follow the filter" \
  '[ "$(q "$FMISMATCH")" = 0 ]'
CDCVEC_LOG=warn "$bin" verify --config "$work/where.yaml" --table films --threads 2 >"$work/verify.out" 2>&1; rc=$?
check "verify --config --table: the filtered table equals its store (exit 0)" '[ $rc = 0 ]' || tail -5 "$work/verify.out"
kill -TERM $sync_pid
wait $sync_pid
sync_pid=

# columns: a column list. Under REPLICA IDENTITY FULL it would make the application's UPDATE and
# DELETE fail: refused at start with the fix. With the default identity: only the listed columns
# are published (pg_publication_tables.attnames), backfilled and streamed: the payloads hold no
# other column.
q "CREATE TABLE gadgets (id int PRIMARY KEY, name text, secret text, price int, descr text);
   INSERT INTO gadgets SELECT g, 'gadget ' || g, 'secret ' || g, g * 10, 'a gadget that ' || md5(g::text) FROM generate_series(1, 30) g;
   ALTER TABLE gadgets REPLICA IDENTITY FULL" >/dev/null
printf "${S}defaults: {threads: 2, batch_ms: 10}\ntables:\n  - table: gadgets\n    text: descr\n    columns: [id, descr, price]\n" >"$work/cols.yaml"
CDCVEC_LOG=warn timeout 120 "$bin" sync --config "$work/cols.yaml" >"$work/cols.log" 2>&1; rc=$?
check "columns: under REPLICA IDENTITY FULL: refused (exit 1) with the fix, before it is published" \
  '[ $rc = 1 ] && grep -q "event=columns_refused table=\"public\".\"gadgets\" at=\"$work/cols.yaml:6:[0-9]*: tables\[0\].columns\".*fix=\"add the replica identity.s columns to columns: .*REPLICA IDENTITY DEFAULT" "$work/cols.log" &&
   [ "$(q "SELECT count(*) FROM pg_publication_tables WHERE tablename = '"'gadgets'"'")" = 0 ]' || cat "$work/cols.log"
check "... and the application's UPDATE and DELETE still work" \
  'q "UPDATE gadgets SET price = price WHERE id = 1; DELETE FROM gadgets WHERE id = 30" >/dev/null'
q "ALTER TABLE gadgets REPLICA IDENTITY DEFAULT"
GMISMATCH="SELECT count(*) FROM gadgets b FULL JOIN cdcvec.public_gadgets v USING (id)
  WHERE b.id IS NULL OR v.id IS NULL OR v.text_hash <> sha256(convert_to(b.descr, 'UTF8'))
     OR v.payload <> jsonb_build_object('price', b.price)"
CDCVEC_LOG=warn "$bin" sync --config "$work/cols.yaml" >>"$work/cols.log" 2>&1 &
sync_pid=$!
watch $sync_pid sync "$work/cols.log"
converged_q "$GMISMATCH" cdcvec.public_gadgets
check "columns: the table is published with its column list only" \
  '[ "$(q "SELECT attnames FROM pg_publication_tables WHERE tablename = '"'gadgets'"'")" = "{id,price,descr}" ]'
check "columns: the backfill's payloads hold the listed columns only (price; no name, no secret)" \
  '[ "$(q "$GMISMATCH")" = 0 ] && [ "$(q "SELECT count(*) FROM cdcvec.public_gadgets")" = 29 ]'
q "UPDATE gadgets SET secret = 'moved', price = 1000, descr = 'a gadget renamed' WHERE id = 1;
   INSERT INTO gadgets VALUES (100, 'new', 'hidden', 5, 'a new gadget')" >/dev/null
converged_q "$GMISMATCH" cdcvec.public_gadgets
check "columns: streamed changes carry the listed columns only (the new price, no secret)" \
  '[ "$(q "$GMISMATCH")" = 0 ] && [ "$(q "SELECT count(*) FROM cdcvec.public_gadgets WHERE payload ? '"'secret'"' OR payload ? '"'name'"'")" = 0 ] &&
   [ "$(q "SELECT payload->>'"'price'"' FROM cdcvec.public_gadgets WHERE id = 1")" = 1000 ]'
CDCVEC_LOG=warn "$bin" verify --config "$work/cols.yaml" --table gadgets --threads 2 >"$work/verify.out" 2>&1; rc=$?
check "verify --config --table: the listed columns equal the store's (exit 0)" '[ $rc = 0 ]' || tail -5 "$work/verify.out"
kill -TERM $sync_pid
wait $sync_pid
sync_pid=

[ $fail = 0 ] || { echo "--- sync log"; tail -20 "$work/sync.log"; }
test_end
