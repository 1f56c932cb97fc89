#!/usr/bin/env bash
# test_kafka_tables.sh: the Kafka path takes the pipeline file (issue 23, item 5; docs/KAFKA.md
# "Many tables"): `cdcvec capture --config F`, `cdcvec worker --config F` and `cdcvec sink --config F`
# carry two tables (an int key and a text key, each into its own pgvector table) from one
# replication slot, one topic per table, through librdkafka's mock cluster over TCP and a real
# PostgreSQL 15:
#   1. one slot for both tables, one model in the worker, a consumer group per table; the sink's
#      /wait covers a commit of either table once it is in its store; after the backfill, inserts,
#      updates, deletes, a truncate of one table and kill -9 of capture and of the sink, every store
#      equals its source; a third table added to the file joins at the restart (its own snapshot),
#      its chunk: option chunking its texts in the worker, its columns: keeping a column out of the
#      publication and the payloads
#   2. a one-table file produces the messages today's flags produce (the LSNs aside: two slots), the
#      tutorial's format (format: quix) byte for byte
#   3. bad files are refused with the file, line, key and fix, before anything starts
#   usage: test_kafka_tables.sh path/to/cdcvec path/to/kafka_mock_broker
set -u
. "$(dirname "$0")/sync_lib.sh"
. "$root/tests/kafka_lib.sh"
test_begin ktables 46000 "$1"
broker=$2
kafka_venv "$root"
pg_up vector
q "CREATE TABLE items (id int PRIMARY KEY, description text, price int);
   CREATE TABLE notes (code text PRIMARY KEY, body text, tag text);
   CREATE TABLE extra (id bigint PRIMARY KEY, note text, tag text, secret text);
   INSERT INTO extra SELECT g, 'extra ' || g, 't', 'hidden' FROM generate_series(1, 80) g;
   INSERT INTO items SELECT g, 'item ' || g || ' is a ' || md5(g::text), g * 3 FROM generate_series(1, 120) g;
   INSERT INTO notes SELECT 'n-' || g, 'note ' || g || ' says ' || md5((g * 7)::text), 't' || g % 5
     FROM generate_series(1, 120) g" >/dev/null
kmock_start "$broker" --topic items-cdc:2 --topic items-emb:2 --topic notes-cdc:3 --topic notes-emb:3 \
  --topic extra-cdc:2 --topic extra-emb:2 --topic flags-cdc:1 --topic file-cdc:1 --topic flagsq-cdc:1 \
  --topic fileq-cdc:1 || { echo "FAIL cannot start the mock broker"; exit 1; }
K=$KMOCK_BOOTSTRAP

cat >"$work/pipeline.yaml" <<EOF
source: "$DB"
defaults: {batch_ms: 10, threads: 2}
tables:
  - table: items
    text: description
    topic: kafka://$K/items-cdc
    embeddings_topic: kafka://$K/items-emb
  - table: public.notes
    text: body
    topic: kafka://$K/notes-cdc
    embeddings_topic: kafka://$K/notes-emb
    batch_rows: 64
EOF

run() { # LOGNAME ARGS...: a stage in the background, watched, its pid in $!
  local log=$1
  shift
  CDCVEC_LOG=${LOG:-info} "$bin" "$@" >>"$work/$log.log" 2>&1 &
  watch $! "$log" "$work/$log.log"
}
start_capture() { run capture capture --config "$work/pipeline.yaml"; cap_pid=$!; }
sink_http=$(free_port $((port + 100)))
start_sink() { run sink sink --config "$work/pipeline.yaml" --http "127.0.0.1:$sink_http"; sink_pid=$!; }

mism_items() {
  q "SELECT count(*) FROM (SELECT * FROM items WHERE description IS NOT NULL) b
     FULL JOIN cdcvec.public_items v USING (id)
     WHERE b.id IS NULL OR v.id IS NULL OR v.text_hash <> sha256(convert_to(b.description, 'UTF8'))
        OR (v.payload->>'price')::int IS DISTINCT FROM b.price" 2>/dev/null || echo err
}
mism_notes() {
  q "SELECT count(*) FROM (SELECT * FROM notes WHERE body IS NOT NULL) b
     FULL JOIN cdcvec.public_notes v USING (code)
     WHERE b.code IS NULL OR v.code IS NULL OR v.text_hash <> sha256(convert_to(b.body, 'UTF8'))
        OR v.payload->>'tag' IS DISTINCT FROM b.tag" 2>/dev/null || echo err
}
progress() { mism_items; mism_notes; cat "$work"/*.log 2>/dev/null | wc -c; }
converged() { wait_until '[ "$(mism_items) $(mism_notes)" = "0 0" ]' progress || { echo "  mismatches: $(mism_items) $(mism_notes)"; return 1; }; }

# ---- 1. two tables, one slot -----------------------------------------------------------------
start_capture
start_worker() { run worker worker --config "$work/pipeline.yaml"; worker_pid=$!; }
start_worker
start_sink
check "both tables' rows existing before capture reach their stores (backfill through their topics)" converged
check "one replication slot for both tables (cdcvec_capture_<database>_pipeline_tables_<hash>)" \
  '[ "$(q "SELECT string_agg(slot_name, '"' '"') FROM pg_replication_slots")" = "$(q "SELECT slot_name FROM pg_replication_slots WHERE slot_name ~ '"'"'^cdcvec_capture_postgres_pipeline_tables_[0-9a-f]{8}$'"'"'")" ] &&
   [ "$(q "SELECT count(*) FROM pg_replication_slots")" = 1 ]'
check "the worker and the sink have a consumer group per table" \
  'grep -q "group=cdcvec-workers.public.notes" "$work/worker.log" && grep -q "group=cdcvec-sink.public.items" "$work/sink.log"'
check "the worker loaded the model once for both tables" '[ "$(grep -c event=model_loaded "$work/worker.log")" = 1 ]'
ryw() { # TABLE ROW: commit, then the sink's /wait: 200 once every table's store has it, the row there then
  local out lsn c
  out=$(psql -qAtX "$DB" -c "INSERT INTO $1 VALUES $2" -c "SELECT pg_current_wal_insert_lsn()")
  lsn=$(echo "$out" | tail -1)
  c=$(curl -s -o "$work/body" -w "%{http_code}" "http://127.0.0.1:$sink_http/wait?lsn=$lsn&timeout_ms=30000")
  [ "$c" = 200 ] || { echo "  $1: /wait answered $c: $(cat "$work/body")"; return 1; }
}
check "the sink's /wait covers a commit of either table once it is in its store" \
  'ryw notes "('"'"'ryw-1'"'"', '"'"'read your writes'"'"', '"'"'r'"'"')" &&
   [ "$(q "SELECT count(*) FROM cdcvec.public_notes WHERE code = '"'"'ryw-1'"'"'")" = 1 ] &&
   ryw items "(900, '"'"'read your writes too'"'"', 9)" &&
   [ "$(q "SELECT count(*) FROM cdcvec.public_items WHERE id = 900")" = 1 ]'

lagm() { curl -s "http://127.0.0.1:$sink_http/metrics" | awk '$1 == "cdcvec_kafka_consumer_lag_messages{stage=\"sink\"}" { print $2 }'; }
check "the sink's consumer lag (both tables' summed) comes back to 0" 'wait_until "[ \"\$(lagm)\" = 0 ]" "lagm; progress"'
q "INSERT INTO items SELECT g, 'new item ' || g, g FROM generate_series(121, 160) g;
   UPDATE items SET description = description || ' (edited)' WHERE id % 4 = 0;
   UPDATE items SET price = price + 1 WHERE id % 5 = 0;
   DELETE FROM items WHERE id % 9 = 0;
   INSERT INTO notes SELECT 'm-' || g, 'more ' || g, 'x' FROM generate_series(1, 30) g;
   UPDATE notes SET body = upper(body) WHERE code LIKE 'n-1%';
   UPDATE notes SET tag = 'retagged' WHERE code LIKE 'n-2%';
   DELETE FROM notes WHERE code LIKE 'n-3%'" >/dev/null
q "BEGIN; UPDATE items SET description = 'in one transaction' WHERE id = 1; UPDATE notes SET body = 'with this' WHERE code = 'n-5'; COMMIT" >/dev/null
check "inserts, text and payload updates, deletes on both tables" converged
q "BEGIN; TRUNCATE notes; INSERT INTO notes VALUES ('after', 'the truncate', 'z'); COMMIT" >/dev/null
q "UPDATE items SET price = -1 WHERE id < 10" >/dev/null
check "a truncate of one table (its barrier over its 3 partitions), the other table going on" \
  'converged && [ "$(q "SELECT count(*) FROM cdcvec.public_notes")" = 1 ]'

kill -9 "$cap_pid" "$sink_pid"
wait "$cap_pid" "$sink_pid" 2>/dev/null
q "INSERT INTO notes SELECT 'k-' || g, 'while down ' || g, 'k' FROM generate_series(1, 50) g;
   UPDATE items SET description = 'rewritten while down ' || id WHERE id % 3 = 0;
   DELETE FROM items WHERE id % 11 = 0" >/dev/null
start_capture
start_sink
q "INSERT INTO items VALUES (1000, 'after the restart', 1); UPDATE notes SET tag = 'again' WHERE code LIKE 'k-1%'" >/dev/null
check "capture and sink killed -9 and restarted: nothing lost, no orphan" converged
check "still one replication slot" '[ "$(q "SELECT count(*) FROM pg_replication_slots")" = 1 ]'
stop_all "$cap_pid" "$sink_pid" "$worker_pid"
check "capture, worker and sink stop on SIGTERM with status 0" '[ "$rcs" = 000 ]'

# a table added to the file joins at the next start (a snapshot of its own), the others streaming
cat >>"$work/pipeline.yaml" <<EOF
  - table: extra
    text: note
    topic: kafka://$K/extra-cdc
    embeddings_topic: kafka://$K/extra-emb
    chunk: {max_tokens: 32, overlap: 8}
    columns: [id, note, tag]
EOF
mism_extra() { # chunks: one row per (id, chunk), each with the whole text's hash
  q "SELECT count(*) FROM extra b FULL JOIN (SELECT DISTINCT id, text_hash FROM cdcvec.public_extra) v USING (id)
     WHERE b.id IS NULL OR v.id IS NULL OR v.text_hash <> sha256(convert_to(b.note, 'UTF8'))" 2>/dev/null || echo err
}
start_capture
start_worker
start_sink
q "UPDATE items SET price = price + 100 WHERE id % 2 = 0; INSERT INTO extra VALUES (500, 'written as it joins', 't', 's');
   INSERT INTO extra VALUES (700, repeat('a long note about many things, ', 40), 't', 's')" >/dev/null
check "a table added to the file joins at the restart; nothing of the others lost" \
  'converged && wait_until "[ \"\$(mism_extra)\" = 0 ]" "mism_extra; progress" && grep -q "event=table_joined table=\"public\".\"extra\"" "$work/capture.log"'
q "DELETE FROM extra WHERE id < 10; UPDATE notes SET body = 'last' WHERE code = 'after'" >/dev/null
check "the table's columns: is its publication's column list: the column left out is in no payload" \
  '[ "$(q "SELECT count(*) FROM cdcvec.public_extra WHERE payload ? '"'"'secret'"'"'")" = 0 ] &&
   [ "$(q "SELECT count(*) FROM cdcvec.public_extra WHERE payload ? '"'"'tag'"'"'")" -gt 0 ]'
check "the worker chunks the table whose entry has chunk: (a long text: several chunks), the others not" \
  '[ "$(q "SELECT count(*) > 3 FROM cdcvec.public_extra WHERE id = 700")" = t ] &&
   [ "$(q "SELECT count(*) FROM information_schema.columns WHERE table_schema = '"'"'cdcvec'"'"' AND column_name = '"'"'chunk_hash'"'"' AND table_name IN ('"'"'public_items'"'"', '"'"'public_notes'"'"')")" = 0 ]'
check "then all three stream" 'converged && wait_until "[ \"\$(mism_extra)\" = 0 ]" "mism_extra; progress"'
check "still one replication slot" '[ "$(q "SELECT count(*) FROM pg_replication_slots")" = 1 ]'
stop_all "$cap_pid" "$sink_pid" "$worker_pid"

# ---- 2. a one-table file gives the messages of the flags ------------------------------------
cat >"$work/one.yaml" <<EOF
source: "$DB"
defaults: {slot: cdcvec_one_table}
tables:
  - table: public.items
    text: description
    topic: kafka://$K/file-cdc
EOF
rows=$(q "SELECT count(*) FROM items")
run flags capture --source "$DB" --table public.items --to "kafka://$K/flags-cdc"
flags_pid=$!
run one capture --config "$work/one.yaml"
one_pid=$!
# the messages of a topic, in topic order: cdcvec/1 ones without position marks and without their
# LSN and commit time (the two captures read two slots); the tutorial's ones as their bytes
changes() {
  "$PY" - "$K" "$1" "$rows" <<'PY'
import json, sys, time
from confluent_kafka import Consumer
c = Consumer({"bootstrap.servers": sys.argv[1], "group.id": "check-" + sys.argv[2],
              "auto.offset.reset": "earliest", "enable.auto.commit": False})
c.subscribe([sys.argv[2]])
out, idle = [], time.monotonic()
while len(out) < int(sys.argv[3]) and time.monotonic() - idle < 60:
    m = c.poll(0.2)
    if m is None or m.error():
        continue
    idle = time.monotonic()
    v = json.loads(m.value())
    if v.get("format") != "cdcvec/1":  # the tutorial's: its bytes as they are
        out.append(json.dumps([m.key().decode(), m.value().decode()]))
        continue
    if v.get("op") == "mark":
        continue
    v.pop("lsn", None), v.pop("commit_time", None)
    out.append(json.dumps([m.key().decode(), v], sort_keys=True))
c.close()
print("\n".join(out))
PY
}
changes flags-cdc >"$work/flags.msgs"
changes file-cdc >"$work/file.msgs"
check "a one-table file produces the flags' messages ($rows rows: keys and values, LSNs aside)" \
  '[ "$(wc -l <"$work/flags.msgs")" = "$rows" ] && cmp -s "$work/flags.msgs" "$work/file.msgs"' ||
  diff "$work/flags.msgs" "$work/file.msgs" | head -5
stop_all "$flags_pid" "$one_pid"
# the tutorial's format (--format quix) too
sed -e 's/slot: cdcvec_one_table/slot: cdcvec_one_quix, format: quix/' -e 's/file-cdc/fileq-cdc/' "$work/one.yaml" >"$work/oneq.yaml"
run flagsq capture --source "$DB" --table public.items --to "kafka://$K/flagsq-cdc" --format quix --slot cdcvec_flags_quix
flags_pid=$!
run oneq capture --config "$work/oneq.yaml"
one_pid=$!
changes flagsq-cdc >"$work/flagsq.msgs"
changes fileq-cdc >"$work/fileq.msgs"
check "and in the tutorial's format (--format quix / format: quix): the same messages, byte for byte" \
  '[ "$(wc -l <"$work/flagsq.msgs")" = "$rows" ] && cmp -s "$work/flagsq.msgs" "$work/fileq.msgs"' ||
  diff "$work/flagsq.msgs" "$work/fileq.msgs" | head -5
stop_all "$flags_pid" "$one_pid"

# ---- 3. bad files ----------------------------------------------------------------------------
slots=$(q "SELECT string_agg(slot_name, ' ' ORDER BY slot_name) FROM pg_replication_slots")
refused() { # NAME PATTERN STAGE: the stage refuses $work/NAME.yaml with PATTERN on stderr, exit 2
  "$bin" "$3" --config "$work/$1.yaml" >"$work/$1.out" 2>&1
  local rc=$?
  [ $rc = 2 ] && grep -q "$2" "$work/$1.out" || { echo "  rc=$rc: $(head -3 "$work/$1.out")"; return 1; }
}
printf 'source: "%s"\ntables:\n  - table: items\n    text: description\n    embeddings_topic: kafka://%s/x\n' "$DB" "$K" >"$work/notopic.yaml"
check "a table without topic: refused by capture with the file, line, key and fix" \
  'refused notopic "notopic.yaml:3: tables\[0\] (items): topic: missing; fix: add topic: kafka://" capture'
printf 'source: "%s"\ntables:\n  - table: items\n    text: description\n    topic: kafka://%s/t\n  - table: notes\n    text: body\n    topic: kafka://%s/t\n' "$DB" "$K" "$K" >"$work/shared.yaml"
check "two tables on one topic: refused with the fix" \
  'refused shared "shared.yaml:6: tables\[1\] (notes): topic: kafka://.*/t is also the topic of tables\[0\].*fix: one topic per table" capture'
printf 'source: "%s"\ntables:\n  - table: items\n    topic: kafka://%s/t\n    embedings_topic: kafka://%s/e\n' "$DB" "$K" "$K" >"$work/typo.yaml"
check "an unknown key: refused with its line and the key meant" \
  'refused typo "typo.yaml:5:.*embedings_topic: unknown key; fix: did you mean .embeddings_topic." worker'
printf 'source: "%s"\ntables:\n  - table: items\n    topic: kafka://%s/t\n    group: g\n' "$DB" "$K" >"$work/group.yaml"
check "a key of one process's command line (group): refused with the fix" \
  'refused group "group.yaml:5:.*group: an option of one run, not a pipeline key; fix: pass --group" sink'
printf 'source: "%s"\ndefaults: {kafka_config: %s/nosuch.properties}\ntables:\n  - table: items\n    text: description\n    topic: kafka://%s/t\n' "$DB" "$work" "$K" >"$work/kconf.yaml"
check "kafka_config: under defaults is read (a missing file: refused, exit 2)" 'refused kconf "nosuch.properties" capture'
"$bin" capture --config "$work/pipeline.yaml" --table nosuch >"$work/pick.out" 2>&1
rc=$?
check "capture --config F --table T: a table not in the file is refused, naming the file's tables" \
  '[ $rc = 2 ] && grep -q "table nosuch: not a table of .*pipeline.yaml (it has items, public.notes, extra); fix" "$work/pick.out"'
"$bin" capture --config "$work/pipeline.yaml" --to "kafka://$K/x" >"$work/to.out" 2>&1
rc=$?
check "--to beside --config: refused (exit 2) with the fix" \
  '[ $rc = 2 ] && grep -q "drop --to" "$work/to.out"'
check "the refused runs created no slot" \
  '[ "$(q "SELECT string_agg(slot_name, '"' '"' ORDER BY slot_name) FROM pg_replication_slots")" = "$slots" ]'
test_end 40
