#!/usr/bin/env bash
# test_quix_format.sh QUIX_PROBE: cv_quix_change against the real thing. A private PostgreSQL 15
# (scripts/pg.sh) with the wal2json plugin (Debian's postgresql-15-wal2json) runs multi-row
# transactions of inserts, updates (key kept and key changed, an unchanged TOASTed column),
# deletes and a rollback on a table of many types and nasty values, and on a REPLICA IDENTITY
# FULL table in an oddly named schema. Expected: the slot's wal2json output (no options, as the
# tutorial reads it) through the tutorial's CDC transform (tests/kafka_tutorial.py
# expected-quix: json.loads, one json.dumps per change). Got: quix_probe fed with each change
# as an unlogged trigger log saw it (the catalog's names and format_type(), col::text values
# through hstore). Every message must be byte-equal. Also: Python repr / orjson floats on
# 100,000 random doubles, and cv_quix_embeddings against the tutorial's own transform.
set -u
probe=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
HERE=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$HERE/.." && pwd)
# shellcheck source=tests/sync_lib.sh
. "$HERE/sync_lib.sh"
if [ ! -f /usr/lib/postgresql/15/lib/wal2json.so ]; then
  echo "SKIPPED: wal2json is not installed (apt-get install postgresql-15-wal2json; scripts/install-deps.sh)"
  exit 77
fi
if ! PY=$(bash "$root/scripts/test-venv.sh" 2>/dev/null); then
  echo "SKIPPED: the tests' Python venv could not be built (scripts/test-venv.sh)"
  exit 77
fi
test_begin quix 50000 "$probe"
pg_up
out=${QUIX_KEEP:-$(mktemp -d)}; mkdir -p "$out"
trap 'test_cleanup; [ -n "${QUIX_KEEP:-}" ] || rm -rf "$out"' EXIT

psql -qX -v ON_ERROR_STOP=1 "$DB" -f "$HERE/data/quix_schema.sql" >"$out/schema.log" 2>&1 ||
  { echo "FAIL schema: $(tail -3 "$out/schema.log")"; exit 1; }
# PostgreSQL 15.20 lets only the plugins of output_plugin_libraries (default: pgoutput,
# test_decoding) be named by replication slots
q "ALTER SYSTEM SET output_plugin_libraries = pgoutput, test_decoding, wal2json" >/dev/null &&
  q "SELECT pg_reload_conf()" >/dev/null && sleep 0.5
q "SELECT 1 FROM pg_create_logical_replication_slot('replication_slot', 'wal2json')" >/dev/null ||
  { echo "FAIL cannot create the wal2json slot"; exit 1; }
psql -qX -v ON_ERROR_STOP=1 "$DB" -f "$HERE/data/quix_changes.sql" >"$out/changes.log" 2>&1 ||
  { echo "FAIL changes: $(tail -3 "$out/changes.log")"; exit 1; }

check "expected-quix reads the slot" \
  '$PY "$HERE/kafka_tutorial.py" expected-quix --dsn "$DB" --slot replication_slot --key public.books >"$out/expected" 2>"$out/expected.err"'
check "probe input from the catalog and the trigger log" \
  'DB="$DB" $PY "$HERE/quix_live.py" probe-input >"$out/probe.in" 2>"$out/probe.err"'
"$probe" change <"$out/probe.in" >"$out/got"
check "every change byte-equal to wal2json + the tutorial's json.dumps" \
  '$PY "$HERE/quix_live.py" compare "$out/expected" "$out/got" "$out/probe.in"'
check "the slot held the changes this test expects (>= 40)" '[ "$(wc -l <"$out/expected")" -ge 40 ]'

$PY "$HERE/quix_live.py" floats 100000 >"$out/floats.in"
"$probe" floats <"$out/floats.in" >"$out/floats.out"
check "Python repr and orjson float layouts on 100,000 doubles" \
  '$PY "$HERE/quix_live.py" compare-floats "$out/floats.in" "$out/floats.out"'
$PY "$HERE/quix_live.py" embed-input "$out/expected" >"$out/embed.in"
"$probe" embed <"$out/embed.in" >"$out/embed.out"
check "cv_quix_embeddings equals the tutorial's simplify_data + orjson" \
  '$PY "$HERE/quix_live.py" compare-embed "$out/embed.in" "$out/embed.out"'

[ "$fail" = 0 ] && echo "test_quix_format: all passed" || echo "test_quix_format: FAILED"
exit "$fail"
