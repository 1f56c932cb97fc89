#!/usr/bin/env bash
# test_cli.sh: cdcvec embed end to end: output shape, formats agree, bad input is a clear
# error with its line number and a nonzero exit, bad options are rejected.
set -u
bin=$1
fail=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
check() { if eval "$2"; then echo "ok   $1"; else echo "FAIL $1"; fail=1; fi; }

printf 'A desert planet.\nSpace opera\n\n' >"$tmp/in.txt"
"$bin" embed "$tmp/in.txt" >"$tmp/out.jsonl" 2>"$tmp/err"
check "three lines give three vectors" '[ "$(wc -l <"$tmp/out.jsonl")" -eq 3 ]'
check "each vector has 384 numbers" '[ "$(head -1 "$tmp/out.jsonl" | sed "s/.*\[//" | tr -cd , | wc -c)" -eq 383 ]'
check "indices in order" 'grep -q "^{\"index\":2," "$tmp/out.jsonl"'
"$bin" embed --format f32 "$tmp/in.txt" >"$tmp/out.f32" 2>/dev/null
check "f32 output is 3*384*4 bytes" '[ "$(stat -c %s "$tmp/out.f32")" -eq 4608 ]'
printf '{"text":"A desert planet."}\n"Space opera"\n{"text":""}\n' | "$bin" embed --jsonl >"$tmp/j.jsonl" 2>/dev/null
check "jsonl input gives the same vectors as lines" 'cmp -s "$tmp/j.jsonl" "$tmp/out.jsonl"'

printf '{"text":"ok"}\n{"text": 12}\n' | "$bin" embed --jsonl >/dev/null 2>"$tmp/err"; rc=$?
check "non-string text: exit 2" '[ $rc -eq 2 ]'
check "non-string text: names line 2" 'grep -q "line=2" "$tmp/err"'
printf '{"text":"ok"}\n{not json\n' | "$bin" embed --jsonl >/dev/null 2>"$tmp/err"; rc=$?
check "invalid JSON: exit 2 with line" '[ $rc -eq 2 ] && grep -q "line=2.*invalid JSON" "$tmp/err"'
"$bin" embed --threads 0 </dev/null >/dev/null 2>"$tmp/err"; rc=$?
check "--threads 0 rejected" '[ $rc -eq 2 ] && grep -q -- "--threads" "$tmp/err"'
"$bin" embed --device tpu </dev/null >/dev/null 2>"$tmp/err"; rc=$?
check "--device tpu rejected" '[ $rc -eq 2 ]'
"$bin" embed --model /nonexistent </dev/null >/dev/null 2>"$tmp/err"; rc=$?
check "missing model: exit 1 and the fix" '[ $rc -eq 1 ] && grep -q "fetch_model.py" "$tmp/err"'
"$bin" wait --lsn 0/0 --http 127.0.0.1:1 >/dev/null 2>"$tmp/err"; rc=$?
check "cdcvec wait with nothing answering: names the compose sync's port 9465" '[ $rc -eq 1 ] && grep -q "127.0.0.1:9465" "$tmp/err"'
CDCVEC_CONTAINER=1 "$bin" embed --model /nonexistent </dev/null >/dev/null 2>"$tmp/err"; rc=$?
check "missing model in an image (CDCVEC_CONTAINER=1): the fix says how to mount it, not to run fetch_model.py" \
  '[ $rc -eq 1 ] && grep -q "mount an all-MiniLM-L6-v2 folder" "$tmp/err" && ! grep -q "run models/fetch\|fix=\"python3" "$tmp/err"'
printf 'caf\xe9 \xff\xfe bytes\n' | "$bin" embed >"$tmp/bin.jsonl" 2>/dev/null; rc=$?
check "invalid UTF-8 is accepted" '[ $rc -eq 0 ] && [ "$(wc -l <"$tmp/bin.jsonl")" -eq 1 ]'
docs=$(dirname "$0")/../docs/CONFIG.md
"$bin" serve --config-markdown >"$tmp/conf.md"
check "docs/CONFIG.md matches the serve property table" \
  'sed -n "/^<!-- generated: cdcvec serve/,/^<!-- end generated/p" "$docs" | sed "1d;\$d" | cmp -s - "$tmp/conf.md"'
"$bin" sync --config-markdown >"$tmp/sconf.md"
check "docs/CONFIG.md matches the sync property table" \
  'sed -n "/^<!-- generated: cdcvec sync/,/^<!-- end generated/p" "$docs" | sed "1d;\$d" | cmp -s - "$tmp/sconf.md"'
"$bin" sync --pipeline-markdown >"$tmp/pconf.md"
check "docs/CONFIG.md matches the pipeline file's keys (from the sync property table)" \
  'sed -n "/^<!-- generated: pipeline keys, cdcvec sync --pipeline-markdown/,/^<!-- end generated/p" "$docs" | sed "1d;\$d" | cmp -s - "$tmp/pconf.md"'
"$bin" capture --pipeline-markdown >"$tmp/kpconf.md"
check "docs/CONFIG.md matches the Kafka stages' pipeline file keys" \
  'sed -n "/^<!-- generated: Kafka pipeline keys, cdcvec capture --pipeline-markdown/,/^<!-- end generated/p" "$docs" | sed "1d;\$d" | cmp -s - "$tmp/kpconf.md"'
for cmd in capture worker sink wait; do
  "$bin" $cmd --config-markdown >"$tmp/kconf.md"
  check "docs/CONFIG.md matches the $cmd property table" \
    'sed -n "/^<!-- generated: cdcvec $cmd/,/^<!-- end generated/p" "$docs" | sed "1d;\$d" | cmp -s - "$tmp/kconf.md"'
done
"$bin" worker --from kafka://h:1/t --to kafka://h:1/u -X sasl.password=secret >/dev/null 2>"$tmp/err"; rc=$?
check "a Kafka secret on the command line is refused with where it belongs" '[ $rc -eq 2 ] && grep -q "CDCVEC_KAFKA" "$tmp/err" && ! grep -q secret\$ "$tmp/err"'
"$bin" capture --source x --to kafka://user:pw@h:1/t >/dev/null 2>"$tmp/err"; rc=$?
check "credentials in a kafka:// URL are refused" '[ $rc -ne 0 ] && grep -q "credentials do not belong" "$tmp/err"'
"$bin" worker --from kafka://h:1/t --to kafka://h:1/u -X acks=1 >/dev/null 2>"$tmp/err"; rc=$?
check "a -X that would weaken delivery (acks=1) is refused, naming why" '[ $rc -ne 0 ] && grep -q "acks" "$tmp/err"'
"$bin" sink --from kafka://h:1/t >/dev/null 2>"$tmp/err"; rc=$?
check "sink without --sink: exit 2 with an example" '[ $rc -eq 2 ] && grep -q -- "--sink is required" "$tmp/err"'
"$bin" serve --batch-tokens 10 >/dev/null 2>"$tmp/err"; rc=$?
check "serve: out-of-range option rejected with its range" '[ $rc -eq 2 ] && grep -q "batch-tokens: expected an integer in \[256" "$tmp/err"'
CDCVEC_BATCH_DEADLINE_MS=abc "$bin" serve >/dev/null 2>"$tmp/err"; rc=$?
check "serve: bad environment value names the variable" '[ $rc -eq 2 ] && grep -q "CDCVEC_BATCH_DEADLINE_MS" "$tmp/err"'
"$bin" serve --nope 1 >/dev/null 2>"$tmp/err"; rc=$?
check "serve: unknown option rejected" '[ $rc -eq 2 ] && grep -q "unknown option" "$tmp/err"'
"$bin" serve --listen tcp://256.1.1.1:99999 --http= >/dev/null 2>"$tmp/err"; rc=$?
check "serve: bad listen address is a clear error" '[ $rc -eq 1 ] && grep -q "event=listen_failed" "$tmp/err"'
# a sink or source that names no database or store is refused at once (exit 2), naming the forms
for bad in "sync --source postgres://h/db --sink http://h:6333/c" "sync --source postgres://h/db --sink qdrnt://h/c" \
  "verify --source postgres//u@h/db" "backfill --source postgres://h/db --sink pg//h/db" \
  "capture --source postgres//h/db --to kafka://h:1/t" "sink --from kafka://h:1/t --sink http://h/c"; do
  # shellcheck disable=SC2086
  timeout 20 "$bin" $bad >/dev/null 2>"$tmp/err"; rc=$?
  check "malformed store or DSN refused at once ($bad)" \
    '[ $rc -eq 2 ] && grep -q "postgres://user@host:5432/db" "$tmp/err" && ! grep -q "event=" "$tmp/err"'
done
grep -q "qdrant://HOST:PORT/COLLECTION" "$tmp/err"
check "an unknown --sink scheme names the stores accepted" '[ $? -eq 0 ]'
# help lists what a command uses: backfill, search and verify serve no HTTP
for c in verify backfill search; do
  "$bin" $c --help >"$tmp/help" 2>&1
  check "$c --help lists no HTTP server options" '! grep -q -- "--http\|--metrics-auth" "$tmp/help" && grep -q -- "--source" "$tmp/help"'
done
"$bin" sync --help >"$tmp/help" 2>&1
check "sync --help lists its HTTP options" 'grep -q -- "--http-max-body-bytes" "$tmp/help"'
"$bin" frobnicate >/dev/null 2>&1; rc=$?
check "unknown command: exit 2" '[ $rc -eq 2 ]'
exit $fail
