#!/usr/bin/env bash
# test_kafka_quix.sh: cdcvec's Kafka stages and the Quix tutorial's own services on one set of
# topics (docs/TUTORIAL_FORMAT.md), through librdkafka's mock cluster and a real PostgreSQL 15
# with the real wal2json plugin:
#   1. `cdcvec capture --format quix` produces, for the same transactions, exactly the messages
#      the tutorial's CDC service produces (wal2json v1 change objects re-printed by Python's
#      json.dumps, key "public.books"): byte for byte, in order.
#   2. `cdcvec worker --format quix` turns them into the tutorial's embeddings messages: the same
#      fields as the tutorial's embedding service writes for those changes (its transform, run
#      here by tests/kafka_tutorial.py with cdcvec's vectors), the vectors within float32 rounding.
#   3. `cdcvec sink` reads both the worker's and the tutorial service's embeddings messages into
#      pgvector: the store equals the source, deletes included (the tutorial crashes on them).
#   usage: test_kafka_quix.sh path/to/cdcvec path/to/kafka_mock_broker
set -u
. "$(dirname "$0")/sync_lib.sh"
. "$root/tests/kafka_lib.sh"
test_begin kquix 44000 "$1"
broker=$2
kafka_venv "$root"
KT="$PY $root/tests/kafka_tutorial.py"
pids=
pg_up vector
# PostgreSQL 15.20+ loads only the output plugins this setting names
q "ALTER SYSTEM SET output_plugin_libraries = pgoutput, test_decoding, wal2json" >/dev/null 2>&1 &&
  q "SELECT pg_reload_conf()" >/dev/null
if ! q "SELECT 1 FROM pg_create_logical_replication_slot('tutorial', 'wal2json')" >/dev/null 2>"$work/w2j.err"; then
  echo "SKIPPED: the wal2json plugin is not available: $(cat "$work/w2j.err")"
  exit 77
fi
books table
kmock_start "$broker" --topic postgres-cdc-data:1 --topic embeddings-cdcvec:1 --topic embeddings-tutorial:1 ||
  { echo "FAIL cannot start the mock broker"; exit 1; }
K=$KMOCK_BOOTSTRAP
run() {
  local log=$1
  shift
  CDCVEC_LOG=${LOG:-warn} "$bin" "$@" >>"$work/$log.log" 2>&1 &
  pids="$pids $!"
  watch $! "$log" "$work/$log.log"
}
logs_progress() { cat "$work"/*.log 2>/dev/null | wc -c; } # the stages' output
run capture capture --source "$DB" --table public.books --to "kafka://$K/postgres-cdc-data" --format quix --batch-ms 10
wait_until '[ "$(q "SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE '"'"'cdcvec_capture_%'"'"' AND active")" = 1 ]' 'logs_progress; q "SELECT count(*) FROM pg_replication_slots"'

# the same transactions for both: the tutorial's batch 1 and 2, updates (text, payload, key), deletes
books rows
q "BEGIN; UPDATE books SET description = 'A desert planet, a duke''s son, and \"spice\" — épique.' WHERE id = 1; UPDATE books SET year = 1966 WHERE id = 4; COMMIT"
q "UPDATE books SET id = 100 WHERE id = 3"
q "DELETE FROM books WHERE id = 2"
N=$(q "SELECT count(*) FROM books") # only to size the wait below

$KT expected-quix --dsn "$DB" --slot tutorial --key public.books >"$work/expected.all"
"$PY" - "$work/expected.all" "$work/expected" <<'EOF'
import json, sys
keep = [l for l in open(sys.argv[1]) if json.loads(json.loads(l)["value"]).get("table") == "books"]
open(sys.argv[2], "w").writelines(keep)
EOF
n=$(wc -l <"$work/expected")
$KT consume --bootstrap "$K" --topic postgres-cdc-data --group check1 --count "$n" --timeout-s 60 >"$work/actual"
check "capture --format quix: $n messages, byte-equal to the tutorial's CDC service (real wal2json), in order" \
  '"$PY" -c "
import json, sys
a = [(m[\"key\"], m[\"value\"]) for m in map(json.loads, open(\"$work/actual\"))]
e = [(m[\"key\"], m[\"value\"]) for m in map(json.loads, open(\"$work/expected\"))]
bad = [i for i, (x, y) in enumerate(zip(a, e)) if x != y]
if len(a) != len(e) or bad:
    i = bad[0] if bad else min(len(a), len(e))
    print(\"  got\", len(a), \"want\", len(e), \"first difference at\", i)
    print(\"  got: \", a[i] if i < len(a) else None)
    print(\"  want:\", e[i] if i < len(e) else None)
    sys.exit(1)
"'

# 2. cdcvec's worker in the tutorial's format, beside the tutorial's own embedding service
run worker worker --from "kafka://$K/postgres-cdc-data" --to "kafka://$K/embeddings-cdcvec" --format quix --threads 1
# one message more than the changes: the key-changing update also deletes its old key
$KT consume --bootstrap "$K" --topic embeddings-cdcvec --group check2 --count $((n + 1)) --timeout-s 120 >"$work/emb.cdcvec"
# vectors for the tutorial's service: cdcvec's own, so that only the message shapes differ
"$PY" - "$work/emb.cdcvec" "$work/vectors.jsonl" <<'EOF'
import json, sys
out = open(sys.argv[2], "w")
for line in open(sys.argv[1]):
    m = json.loads(json.loads(line)["value"])
    if "embeddings" in m:
        out.write(json.dumps({"text": m["description"], "vector": m["embeddings"]}) + "\n")
EOF
$KT embed-like-tutorial --bootstrap "$K" --from postgres-cdc-data --to embeddings-tutorial --vectors "$work/vectors.jsonl" \
  --count $((n - 1)) --timeout-s 60 >"$work/tutorial-service.log" 2>&1
$KT consume --bootstrap "$K" --topic embeddings-tutorial --group check3 --count $((n - 1)) --timeout-s 60 >"$work/emb.tutorial.all" 2>/dev/null
check "cdcvec worker --format quix: the tutorial's embeddings message (same fields and values, vectors within float32 rounding)" \
  '"$PY" - "$work/emb.cdcvec" "$work/emb.tutorial.all" <<'"'"'EOF'"'"'
import json, sys
ours = [json.loads(json.loads(l)["value"]) for l in open(sys.argv[1])]
theirs = [json.loads(json.loads(l)["value"]) for l in open(sys.argv[2])]
ours_up = [m for m in ours if m["kind"] != "delete"]
theirs = [m for m in theirs if m["kind"] != "delete"]
if not theirs or len(ours_up) < len(theirs):
    print("  ours", len(ours_up), "theirs", len(theirs)); sys.exit(1)
for a, b in zip(ours_up, theirs):
    ka = sorted(k for k in a if k != "Timestamp"); kb = sorted(k for k in b if k != "Timestamp")
    if ka != kb: print("  fields differ:", ka, kb); sys.exit(1)
    for k in ka:
        if k == "embeddings":
            if max(abs(x - y) for x, y in zip(a[k], b[k])) > 1e-6 or len(a[k]) != len(b[k]): print("  vectors differ"); sys.exit(1)
        elif a[k] != b[k]: print("  field", k, repr(a[k]), "!=", repr(b[k])); sys.exit(1)
    if not isinstance(a["Timestamp"], int) or a["Timestamp"] < 1.6e18: print("  Timestamp is not time_ns()"); sys.exit(1)
dels = [m for m in ours if m["kind"] == "delete"]
if not dels or "embeddings" in dels[0]: print("  no delete message, or one with embeddings"); sys.exit(1)
EOF'

# 3. the sink reads either shape, deletes included
MISMATCH="SELECT count(*) FROM (SELECT * FROM books WHERE description IS NOT NULL) b
  FULL JOIN cdcvec.public_books v USING (id)
  WHERE b.id IS NULL OR v.id IS NULL OR v.text_hash <> sha256(convert_to(b.description, 'UTF8'))
     OR v.payload->>'name' IS DISTINCT FROM b.name OR (v.payload->>'year')::int IS DISTINCT FROM b.year"
converged() {
  wait_until '[ "$(q "SELECT to_regclass('"'"'cdcvec.public_books'"'"') IS NOT NULL")" = t ]' logs_progress &&
    converged_q "$MISMATCH" cdcvec.public_books
}
run sink sink --from "kafka://$K/embeddings-cdcvec" --sink "$DB" --group sink1
check "cdcvec sink from cdcvec's quix embeddings: store equals source, the delete and the key change applied" converged
sinkpid=${pids##* }
kill -TERM "$sinkpid"; wait "$sinkpid"
q "DROP TABLE cdcvec.public_books"
q "DELETE FROM cdcvec.state WHERE stream LIKE 'kafka_%'"
run sink2 sink --from "kafka://$K/embeddings-tutorial" --sink "$DB" --group sink2
# the tutorial's service skips deletes (it would crash on them): compare the rows it saw
MISMATCH="SELECT count(*) FROM books b FULL JOIN cdcvec.public_books v USING (id)
  WHERE v.id IS NULL OR (b.id IS NULL AND v.id NOT IN (2, 3))
     OR (b.id IS NOT NULL AND v.payload->>'name' IS DISTINCT FROM b.name)"
check "cdcvec sink from the tutorial service's own embeddings messages (its last message, the delete, crashes it: the old rows 2 and 3 stay, as in the tutorial)" converged
test_end
