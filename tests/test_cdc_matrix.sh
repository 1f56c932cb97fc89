#!/usr/bin/env bash
# test_cdc_matrix.sh: `cdcvec sync` against a matrix of schemas and failures, on a real
# PostgreSQL 15 with pgvector started here (scripts/pg.sh). Each case has its own table and its
# own cdcvec process and ends in one of two outcomes:
#   - "store equals source": for every source row with a non-NULL text exactly one sink row with
#     the same key, text_hash = sha256 of the text, payload = to_jsonb(row) minus the key and text
#     columns (jsonb equality and, in a UTC session, the same text), no sink row without a source
#     row (see oracle below);
#   - "exit 1 with the named error": cdcvec exits 1 on its own, with a log line
#     `event=sync_stopped kind=<kind> ... fix="..."`; a run still going after 2 x STALL_S seconds
#     counts as a failure (retried forever).
# Waits are bounded by progress (sync_lib.sh's wait_until: no change for STALL_S seconds fails),
# never by a fixed number of seconds; commands expected to exit by themselves run under
# timeout 2 x STALL_S; a wait that keeps "moving" (a retry loop rewriting rows) ends at
# 3 x STALL_S.
#   usage: test_cdc_matrix.sh path/to/cdcvec
#   CDCVEC_MATRIX_CASES="1 3 7": run only those cases (default: all, 1..14; 13 runs with 7)
#   CDCVEC_TEST_STALL_S=60: the stall bound (sync_lib.sh)
#   CDCVEC_MATRIX_BUDGET_S=3000: past it, cases and waits fail at once (a broken build waits
#     out a stall at every check; the run still ends before ctest's TIMEOUT)
#   CDCVEC_TEST_KEEP=1: keep the work folder (logs, PostgreSQL data) after the run
set -u
. "$(dirname "$0")/sync_lib.sh"
# below Linux's ephemeral range (32768-60999): no client connection holds a port there
test_begin matrix 21000 "$1"
fail_logs=() # logs of runs that ended in an error: no line may be split (case 14)
t_start=$SECONDS
pg_up vector
q "CREATE EXTENSION citext" >/dev/null || { echo "FAIL the citext extension is missing (postgresql-contrib)"; exit 1; }

# ---- helpers ---------------------------------------------------------------------------------

# A run of a badly broken build (every check waiting out its stall) must still end, with its
# FAIL lines, before ctest's TIMEOUT: past the budget, no case starts and every wait or run
# fails at once.
budget=${CDCVEC_MATRIX_BUDGET_S:-3000}
over_budget() { [ $((SECONDS - t_start)) -ge "$budget" ]; }

# Drops the slots no process holds (a case's own, once its syncs stopped): the cluster has 16.
drop_slots() {
  q "SELECT count(pg_drop_replication_slot(slot_name)) FROM pg_replication_slots WHERE NOT active AND slot_name LIKE 'cdcvec%'" >/dev/null 2>&1
}

# dump LOG...: the tail of each log, indented (long lines cut).
dump() {
  local l
  for l in "$@"; do
    [ -f "$l" ] || continue
    echo "  --- $(basename "$l") (last 25 lines)"
    tail -n 25 "$l" | cut -c1-400 | sed 's/^/  | /'
  done
}
# chk NAME CONDITION [LOG...]: check, with the logs' tails on a failure.
chk() {
  local name=$1 cond=$2
  shift 2
  check "$name" "$cond" || { dump "$@"; return 1; }
}

# start_sync NAME ARGS...: `cdcvec sync` in the background against ${SRC:-$DB}, logging to
# $work/NAME.log (appended); sets spid.
start_sync() {
  local name=$1
  shift
  CDCVEC_LOG=${LOG:-info} "$bin" sync --source "${SRC:-$DB}" --batch-ms 10 --threads 2 "$@" \
    >>"$work/$name.log" 2>&1 &
  spid=$!
}
# stop_sync PID: SIGTERM and wait for the exit (it must come by itself; SIGKILL after a stall).
stop_sync() {
  local p=$1
  kill -TERM "$p" 2>/dev/null
  if ! wait_until '! kill -0 "$p" 2>/dev/null' true >/dev/null; then
    echo "  (cdcvec $p did not exit within ${STALL_S}s of SIGTERM: SIGKILL)"
    kill -9 "$p" 2>/dev/null
  fi
  wait "$p" 2>/dev/null
}
# run_exit NAME ARGS...: `cdcvec sync` in the foreground, expected to exit by itself: at most
# 2 x STALL_S seconds (timeout's rc 124 means it was still retrying; 125: not run, past the
# budget). Sets rc; log $work/NAME.log.
run_exit() {
  local name=$1
  shift
  if over_budget; then
    rc=125 # not run
    return
  fi
  CDCVEC_LOG=info timeout $((STALL_S * 2)) "$bin" sync --batch-ms 10 --threads 2 "$@" >"$work/$name.log" 2>&1
  rc=$?
  fail_logs+=("$work/$name.log")
}
# stopped NAME LOG KIND_RE MESSAGE_RE: the checks of "exit 1 with the named error" (rc in $rc):
# exit 1 (not a timeout: that is a retry loop), a sync_stopped line with the kind and a fix, no
# retry before it, and the message (anywhere in the log) matching MESSAGE_RE (grep -Ei).
stopped() {
  local name=$1 lg=$2 kind=$3 msg=$4
  if [ "$rc" = 125 ]; then
    echo "FAIL $name: not run, the run is past its budget of ${budget}s"
    fail=1
    return 1
  fi
  if [ "$rc" = 124 ]; then
    echo "FAIL $name: still running after $((STALL_S * 2))s (retried forever)"
    fail=1
    dump "$lg"
    return 1
  fi
  chk "$name: exit 1 (rc=$rc)" '[ "$rc" = 1 ]' "$lg" || return 1
  chk "$name: event=sync_stopped kind=$kind with a fix" \
    'grep -Eq "event=sync_stopped.* kind=($kind)( |$).*fix=\"[^\"]+" "$lg"' "$lg"
  chk "$name: stopped at once (no event=sync_retry)" '! grep -q "event=sync_retry" "$lg"' "$lg"
  chk "$name: the message says: $msg" 'grep -Eqi -- "$msg" "$lg"' "$lg"
}

# Progress, and its bound. A process that retries for ever keeps issuing statements and
# rewriting cdcvec.state (a slot recreated, a backfill started again), so sync_lib's
# sink_progress (any client's newest statement, the recorded positions) would wait on it for
# ever: here progress is what the sink table committed, its rows and newest write (the tables
# of this matrix are small: a batch commits quickly). And a wait ends after 3 x STALL_S seconds
# however much it moved (a loop rewriting the same rows): the waits start with
# wait_t0=$SECONDS, and once past that bound the progress reads constant.
capped() { [ $((SECONDS - wait_t0)) -gt $((STALL_S * 3)) ] && echo "capped after $((STALL_S * 3))s"; }
sink_progress() { # SINK_TABLE [DB] (replaces sync_lib's, used by converged_q)
  capped || q "SELECT count(*) || ' ' || coalesce(max(updated_at)::text, '-') FROM $1" "${2:-$DB}"
}
# wait_for CONDITION PROGRESS: wait_until with the bound.
wait_for() {
  over_budget && { echo "  (not waited: the run is past its budget of ${budget}s)"; return 1; }
  wait_t0=$SECONDS
  wait_until "$1" "capped || { $2; }"
}
wait_t0=$SECONDS

# oracle SCHEMA TABLE TEXTCOL KEYCOLS [SCOPE]: SQL counting the keys where the sink differs from
# the source. KEYCOLS: comma-separated column names (as in the catalog); SCOPE: an SQL condition
# on the key columns: only those keys are compared, on both sides (default: all; a check about
# some rows looks at those rows only, dead-lettered keys are left out). Keys are matched with
# the key type's own equality (a citext key matches whatever its spelling).
oracle() {
  local sch=$1 tab=$2 tc=$3 keys=$4 scope=${5:-true} on='' minus='' k
  local -a ka
  IFS=, read -ra ka <<<"$keys"
  for k in "${ka[@]}"; do
    on+="${on:+ AND }s.\"$k\" = v.\"$k\""
    minus+=" - '${k//\'/\'\'}'"
  done
  minus+=" - '${tc//\'/\'\'}'"
  echo "SET TimeZone = 'UTC'; SELECT count(*) FROM
    (SELECT x.*, to_jsonb(x) $minus AS cv_oracle_payload, true AS cv_oracle_src
       FROM \"$sch\".\"$tab\" x WHERE x.\"$tc\" IS NOT NULL AND ($scope)) s
    FULL JOIN (SELECT y.*, true AS cv_oracle_sink FROM cdcvec.\"${sch}_${tab}\" y WHERE ($scope)) v ON $on
    WHERE s.cv_oracle_src IS NULL OR v.cv_oracle_sink IS NULL
       OR v.text_hash IS DISTINCT FROM sha256(convert_to(s.\"$tc\", 'UTF8'))
       OR v.payload IS DISTINCT FROM s.cv_oracle_payload
       OR v.payload::text IS DISTINCT FROM s.cv_oracle_payload::text"
}
# conv PID MISMATCH_SQL SINK_TABLE: waits until the sink equals the source while PID runs.
conv() {
  over_budget && { echo "  (not waited: the run is past its budget of ${budget}s)"; return 1; }
  wait_t0=$SECONDS
  WATCH_PID=$1 converged_q "$2" "$3"
}
# table_sync TABLE [ARGS...]: `cdcvec sync` of public.TABLE (text column description) started;
# sets M (its mismatch query, key id), S (its store table), lg (its log) and p (its pid).
table_sync() {
  local t=$1
  shift
  M=$(oracle public "$t" description id)
  S=cdcvec.public_$t
  lg=$work/$t.log
  start_sync "$t" --table "public.$t" --text-column description "$@"
  p=$spid
}
# exited WHAT: the sync p (its log lg) was waited for to exit by itself: sets rc and keeps its log
# for case 14; FAIL (and stops it) when it still runs.
exited() {
  if kill -0 $p 2>/dev/null; then
    echo "FAIL $1: still running after ${STALL_S}s without progress"
    fail=1
    dump "$lg"
    stop_sync $p
    return 1
  fi
  wait $p
  rc=$?
  fail_logs+=("$lg")
}
# The slot of a sync, from its event=streaming line.
slot_of() { sed -n 's/.*event=streaming slot=\([^ ]*\).*/\1/p' "$1" | tail -1; }
# metric_sum METRICS_FILE LINE_RE: the sum of the samples whose line matches LINE_RE (ERE).
metric_sum() { grep -E -- "$2" "$1" 2>/dev/null | grep -v '^#' | awk '{ s += $NF } END { printf "%.0f\n", s }'; }
# metrics_le BEFORE AFTER NAME: every series NAME{...} of BEFORE is in AFTER with a value >= .
metrics_le() {
  awk -v name="$3" '
    FNR == NR { if (index($0, name) == 1) { v = $NF; sub(/ [^ ]*$/, ""); b[$0] = v }; next }
    index($0, name) == 1 { v = $NF; sub(/ [^ ]*$/, ""); a[$0] = v }
    END {
      n = 0; for (k in b) { n++; if (!(k in a) || a[k] + 0 < b[k] + 0) { print "  " k ": " b[k] " -> " (k in a ? a[k] : "gone"); bad = 1 } }
      exit (bad || n == 0) }' "$1" "$2"
}
count() { q "SELECT count(*) FROM $1"; }
# Seconds of the day of a log line's timestamp.
ts_s() { echo "$1" | sed -n 's/^[0-9-]*T\([0-9]*\):\([0-9]*\):\([0-9.]*\)Z.*/\1 \2 \3/p' | awk '{ printf "%.3f\n", $1 * 3600 + $2 * 60 + $3 }'; }

wants() { [ -z "${CDCVEC_MATRIX_CASES:-}" ] || [[ " $CDCVEC_MATRIX_CASES " == *" $1 "* ]]; }

# ---- 1. citext primary key -------------------------------------------------------------------
case1() {
  echo "# 1. citext primary key updated to an equal value spelled differently"
  q "CREATE TABLE c1 (email citext PRIMARY KEY, description text, n int)"
  q "INSERT INTO c1 SELECT 'User' || g || '@Example.COM', 'note ' || g || ' about mixed case mail keys', g FROM generate_series(1, 30) g"
  # the variants' rows, each variant with keys of its own (checked on those keys only)
  q "INSERT INTO c1 VALUES ('v2a@x', 'inserted in one transaction, respelled in a later one', 2),
       ('v4a@x', 'its key changes to another value', 4), ('v5@x', 'respelled together with a new text', 5),
       ('v6@x', 'deleted through another spelling', 6)"
  local M S=cdcvec.public_c1 lg=$work/c1.log p respelled
  M=$(oracle public c1 description email)
  start_sync c1 --table public.c1 --text-column description
  p=$spid
  chk "1 citext: backfill" 'conv $p "$M" $S' "$lg"
  # the marker row in the same transaction: converged means this transaction was applied
  q "BEGIN; UPDATE c1 SET email = lower(email) WHERE email ILIKE 'user%'; INSERT INTO c1 VALUES ('marker1@x', 'marker one', 0); COMMIT"
  q "UPDATE c1 SET email = 'V2A@X' WHERE email = 'v2a@x'"
  q "INSERT INTO c1 VALUES ('v2-marker@x', 'marker of the later transaction', 0)"
  q "BEGIN; INSERT INTO c1 VALUES ('v3b@y', 'inserted and respelled in the same transaction', 3); UPDATE c1 SET email = 'V3B@Y' WHERE email = 'v3b@y'; COMMIT"
  q "UPDATE c1 SET email = 'v4-other@x' WHERE email = 'v4a@x'"
  q "UPDATE c1 SET email = 'V5@X', description = 'respelled key and a new text' WHERE email = 'v5@x'"
  q "DELETE FROM c1 WHERE email = 'V6@X'"
  chk "1 citext: UPDATE SET email = lower(email): every row keeps its vector" \
    'conv $p "$(oracle public c1 description email "email::text ILIKE '"'user%'"' OR email = '"'marker1@x'"'")" $S &&
     [ "$(q "SELECT count(*) FROM $S WHERE email::text ILIKE '"'user%'"'")" = 30 ]' "$lg"
  respelled=$(q "SELECT count(*) FROM c1 s JOIN $S v USING (email) WHERE s.email::text <> v.email::text")
  echo "  (note: $respelled sink keys keep an old spelling; the oracle matches keys with citext equality)"
  chk "1 citext: key respelled 'V2A@X' in a later transaction: one row, with its vector" \
    'conv $p "$(oracle public c1 description email "email::text ILIKE '"'v2%'"'")" $S &&
     [ "$(q "SELECT count(*) FROM $S WHERE email = '"'v2a@x'"'")" = 1 ]' "$lg"
  chk "1 citext: insert and respelling in one transaction" \
    'conv $p "$(oracle public c1 description email "email::text ILIKE '"'v3%'"'")" $S' "$lg"
  chk "1 citext: key changed to a different value: old key gone, new key present" \
    'conv $p "$(oracle public c1 description email "email::text ILIKE '"'v4%'"'")" $S' "$lg"
  chk "1 citext: key respelled and text changed together" \
    'conv $p "$(oracle public c1 description email "email::text ILIKE '"'v5%'"'")" $S' "$lg"
  chk "1 citext: delete through another spelling" \
    'conv $p "$(oracle public c1 description email "email::text ILIKE '"'v6%'"'")" $S' "$lg"
  chk "1 citext: the whole table" 'conv $p "$M" $S' "$lg"
  stop_sync $p
}

# ---- 2. "Notes" and "Votes": two mixed-case tables, two syncs at once --------------------------
case2() {
  echo '# 2. tables "Notes" and "Votes", one sync each at the same time'
  q 'CREATE TABLE "Notes" (id int PRIMARY KEY, description text, stars int)' &&
    q 'CREATE TABLE "Votes" (id int PRIMARY KEY, description text, stars int)'
  q "INSERT INTO \"Notes\" SELECT g, 'note ' || g || ': remember to water the plants', g % 5 FROM generate_series(1, 25) g"
  q "INSERT INTO \"Votes\" SELECT g, 'vote ' || g || ': in favour of the motion', g % 3 FROM generate_series(1, 25) g"
  local MN MV SN='cdcvec."public_Notes"' SV='cdcvec."public_Votes"' ln=$work/notes.log lv=$work/votes.log pn pv
  MN=$(oracle public Notes description id)
  MV=$(oracle public Votes description id)
  start_sync notes --table public.Notes --text-column description
  pn=$spid
  start_sync votes --table public.Votes --text-column description
  pv=$spid
  chk '2 "Notes": backfill' 'conv $pn "$MN" "$SN"' "$ln"
  chk '2 "Votes": backfill' 'conv $pv "$MV" "$SV"' "$lv"
  q "INSERT INTO \"Notes\" SELECT g, 'note ' || g || ' written while streaming', 1 FROM generate_series(26, 35) g"
  q "UPDATE \"Notes\" SET description = 'edited note ' || id WHERE id <= 3; DELETE FROM \"Notes\" WHERE id = 10"
  q "INSERT INTO \"Votes\" SELECT g, 'vote ' || g || ' cast while streaming', 2 FROM generate_series(26, 35) g"
  q "UPDATE \"Votes\" SET stars = stars + 10 WHERE id <= 3; DELETE FROM \"Votes\" WHERE id = 11"
  chk '2 "Notes": streamed inserts, updates, deletes' 'conv $pn "$MN" "$SN"' "$ln"
  chk '2 "Votes": streamed inserts, updates, deletes' 'conv $pv "$MV" "$SV"' "$lv"
  local sn sv
  sn=$(slot_of "$ln")
  sv=$(slot_of "$lv")
  chk "2 two distinct slots ($sn, $sv), both active" \
    '[ -n "$sn" ] && [ -n "$sv" ] && [ "$sn" != "$sv" ] && [ "$(q "SELECT count(*) FROM pg_replication_slots WHERE active AND slot_name IN ('"'$sn', '$sv'"')")" = 2 ]' \
    "$ln" "$lv"
  chk "2 slot names are cdcvec_<readable>_<8 hex>" \
    '[[ $sn =~ ^cdcvec_[a-z0-9_]+_[0-9a-f]{8}$ ]] && [[ $sv =~ ^cdcvec_[a-z0-9_]+_[0-9a-f]{8}$ ]]'
  stop_sync $pn
  stop_sync $pv
}

# ---- 3. payload fidelity ---------------------------------------------------------------------
case3() {
  echo "# 3. payload fidelity: numeric, bigint, arrays, jsonb, bool, timestamptz, date, NULL"
  # the server's own time zone is not UTC: the payload is as to_jsonb gives it in UTC all the same
  q "ALTER SYSTEM SET timezone = 'America/Sao_Paulo'" && q "SELECT pg_reload_conf()" >/dev/null
  q "CREATE TABLE p3 (id int PRIMARY KEY, description text, price numeric(10,2), big numeric, n38 numeric(38,0),
      bi bigint, ia int[], ta text[], j jsonb, b bool, ts timestamptz, d date, nul text)"
  q "INSERT INTO p3 VALUES
    (1, 'a book about numbers', 19.99, 123456789012345678901234567890, 12345678901234567890123456789012345678,
     9223372036854775807, '{1,2,3}', ARRAY['a,b', 'say \"hi\"', NULL, 'back\\slash', 'NULL', ''],
     '{\"k\": [1, 2.50, \"x\"], \"z\": null, \"u\": \"caf\\u00e9 \\n\"}', true, '2024-03-01 12:34:56.789+02', '2024-02-29', NULL),
    (2, 'a small one', 0.10, -0.000000000000000000000000000001, 7, -1, '{}', '{}', '[]', false,
     '1999-12-31 23:59:59.999999-11', '0001-01-01', NULL),
    (3, 'edges', 12345678.9, 'NaN', 0, 0, '{-2147483648,NULL}', ARRAY['{braces}', ' spaced ', 'tab	in'],
     '{\"deep\": {\"a\": [[]], \"b\": 1e-7}}', NULL, 'infinity', '-infinity', NULL),
    (4, 'nulls everywhere', NULL, NULL, NULL, NULL, NULL, NULL, 'null', NULL, NULL, NULL, NULL)"
  local M S lg p
  table_sync p3
  chk "3 payload: backfilled rows equal to_jsonb (jsonb and text)" 'conv $p "$M" $S' "$lg" ||
    q "SET TimeZone = 'UTC'; SELECT s.id, v.payload::text, (to_jsonb(s) - 'id' - 'description')::text FROM p3 s JOIN $S v USING (id)
       WHERE v.payload::text IS DISTINCT FROM (to_jsonb(s) - 'id' - 'description')::text LIMIT 2" | cut -c1-600 | sed 's/^/  /'
  q "INSERT INTO p3 SELECT id + 10, description || ' (streamed)', price, big, n38, bi, ia, ta, j, b, ts, d, nul FROM p3"
  q "INSERT INTO p3 VALUES (20, 'streamed small numeric(38,0)', 12.30, 0.5, 42, 1, '{7}', ARRAY[NULL]::text[], '{\"a\": 1}', true, now(), current_date, NULL)"
  chk "3 payload: streamed inserts equal to_jsonb" 'conv $p "$(oracle public p3 description id "id >= 11")" $S' "$lg"
  q "UPDATE p3 SET price = 1234.5, big = big * 10, n38 = 99999999999999999999999999999999999999, ta = ta || ARRAY['x,y'], ts = '2030-06-15 08:00:00-07' WHERE id IN (1, 11)"
  q "UPDATE p3 SET description = 'text and payload changed', j = '{\"changed\": true}', nul = 'no longer null' WHERE id = 2"
  q "UPDATE p3 SET price = NULL, ia = NULL WHERE id = 12"
  chk "3 payload: streamed updates equal to_jsonb" 'conv $p "$(oracle public p3 description id "id IN (1, 2, 11, 12)")" $S' "$lg"
  stop_sync $p
  q "ALTER SYSTEM RESET timezone" && q "SELECT pg_reload_conf()" >/dev/null
}

# ---- 4. DDL under a running sync --------------------------------------------------------------
case4() {
  echo "# 4. DDL under a running sync (one table each)"
  local t M S lg p before after
  for t in d4a d4b d4c d4d; do
    q "CREATE TABLE $t (id int PRIMARY KEY, description text, title text, category text, score int)"
    q "INSERT INTO $t SELECT g, 'the story of item ' || g || ' and its long journey', 'Title ' || g, 'cat' || g % 4, g FROM generate_series(1, 20) g"
  done

  # (a) the text column renamed
  table_sync d4a
  chk "4a backfill" 'conv $p "$M" $S' "$lg"
  q "ALTER TABLE d4a RENAME COLUMN description TO body"
  q "UPDATE d4a SET body = body || ' (rewritten after the rename)' WHERE id <= 5"
  M=$(oracle public d4a body id)
  chk "4a text column renamed: vectors follow the new column" 'conv $p "$M" $S' "$lg"
  chk "4a log: event=text_column_renamed" 'grep -q "event=text_column_renamed" "$lg"' "$lg"
  stop_sync $p
  start_sync d4a --table public.d4a --text-column body
  p=$spid
  q "UPDATE d4a SET body = 'after the restart with --text-column body ' || id WHERE id IN (6, 7)"
  chk "4a restarted with --text-column body: store equals source" 'conv $p "$M" $S' "$lg"
  stop_sync $p

  # (b) a payload column renamed, another dropped
  table_sync d4b
  chk "4b backfill" 'conv $p "$M" $S' "$lg"
  q "ALTER TABLE d4b RENAME COLUMN title TO headline"
  q "ALTER TABLE d4b DROP COLUMN category"
  q "UPDATE d4b SET score = score + 100 WHERE id <= 3"
  chk "4b payload column renamed and another dropped: payload keys follow for every row (updated or not)" \
    'conv $p "$M" $S' "$lg"
  stop_sync $p

  # (c) a column added with a default: no row changes, so no vector may change
  table_sync d4c
  chk "4c backfill" 'conv $p "$M" $S' "$lg"
  before=$(q "SELECT string_agg(id || ':' || md5(embedding::text), ',' ORDER BY id) FROM $S WHERE id <> 1")
  q "ALTER TABLE d4c ADD COLUMN extra int DEFAULT 7"
  q "UPDATE d4c SET score = score + 1 WHERE id = 1" # a change after the DDL
  chk "4c ADD COLUMN extra int DEFAULT 7: every payload has \"extra\": 7" \
    'conv $p "$M" $S && [ "$(q "SELECT count(*) FROM $S WHERE payload->'"'extra'"' = '"'7'"'")" = 20 ]' "$lg"
  after=$(q "SELECT string_agg(id || ':' || md5(embedding::text), ',' ORDER BY id) FROM $S WHERE id <> 1")
  chk "4c untouched rows keep byte-identical vectors" '[ -n "$before" ] && [ "$before" = "$after" ]' "$lg"
  stop_sync $p

  # (d) the embedded column dropped: exit 1 (kind=config), never going on with missing vectors
  table_sync d4d
  chk "4d backfill" 'conv $p "$M" $S' "$lg"
  q "ALTER TABLE d4d DROP COLUMN description"
  q "INSERT INTO d4d (id, title, score) VALUES (100, 'no text any more', 1); UPDATE d4d SET score = 0 WHERE id = 2"
  wait_for '! kill -0 $p 2>/dev/null' true
  exited "4d text column dropped" && stopped "4d text column dropped under the sync" "$lg" config 'description|text.column'
  chk "4d the row inserted without a text has no vector" '[ "$(q "SELECT count(*) FROM $S WHERE id = 100")" = 0 ]'
  run_exit d4d_restart --source "$DB" --table public.d4d --text-column description
  stopped "4d restarted without the text column" "$work/d4d_restart.log" config 'description|text.column'
}

# ---- 5. replica identity ---------------------------------------------------------------------
case5() {
  echo "# 5. replica identity"
  # (a) NOTHING: refused at start, and the application's own writes keep working
  q "CREATE TABLE r5a (id int PRIMARY KEY, description text)"
  q "INSERT INTO r5a SELECT g, 'row ' || g FROM generate_series(1, 10) g"
  q "ALTER TABLE r5a REPLICA IDENTITY NOTHING"
  run_exit r5a --source "$DB" --table public.r5a --text-column description
  stopped "5a REPLICA IDENTITY NOTHING" "$work/r5a.log" '[a-z_]+' 'fix=.*REPLICA IDENTITY DEFAULT'
  chk "5a no publication holds the table" '[ "$(q "SELECT count(*) FROM pg_publication_tables WHERE schemaname = '"'public'"' AND tablename = '"'r5a'"'")" = 0 ]'
  chk "5a the application's UPDATE and DELETE still work" \
    'q "UPDATE r5a SET description = '"'changed'"' WHERE id = 1" && q "DELETE FROM r5a WHERE id = 2"'

  # (b) USING INDEX on a unique NOT NULL non-key column: streamed, or refused at start
  q "CREATE TABLE r5b (id int PRIMARY KEY, code text NOT NULL, description text)"
  q "CREATE UNIQUE INDEX r5b_code ON r5b (code)"
  q "ALTER TABLE r5b REPLICA IDENTITY USING INDEX r5b_code"
  q "INSERT INTO r5b SELECT g, 'code-' || g, 'item ' || g || ' identified by its code' FROM generate_series(1, 15) g"
  local M S lg p
  table_sync r5b
  wait_for '! kill -0 $p 2>/dev/null || [ "$(q "$M" 2>/dev/null)" = 0 ]' 'q "$M"; sink_progress $S'
  if ! kill -0 $p 2>/dev/null; then
    wait $p
    rc=$?
    fail_logs+=("$lg")
    echo "  (5b: cdcvec refused the table at start, rc=$rc)"
    stopped "5b REPLICA IDENTITY USING INDEX refused at start" "$lg" '[a-z_]+' 'replica identity'
  else
    chk "5b REPLICA IDENTITY USING INDEX: backfill" 'conv $p "$M" $S' "$lg"
    q "INSERT INTO r5b SELECT g, 'code-' || g, 'item ' || g || ' streamed' FROM generate_series(16, 20) g"
    q "UPDATE r5b SET description = 'item 3, new text' WHERE id = 3"
    q "UPDATE r5b SET code = 'code-4-renamed', description = 'item 4 with a new code' WHERE id = 4"
    q "UPDATE r5b SET id = 105 WHERE id = 5"
    q "DELETE FROM r5b WHERE id IN (6, 17)"
    q "INSERT INTO r5b VALUES (99, 'code-99', 'the last change')"
    chk "5b REPLICA IDENTITY USING INDEX: inserts, updates, deletes streamed" 'conv $p "$M" $S' "$lg"
    chk "5b no retry loop" '! grep -q "event=sync_retry" "$lg"' "$lg"
    stop_sync $p
  fi

  # (c) FULL
  q "CREATE TABLE r5c (id int PRIMARY KEY, description text, n int)"
  q "ALTER TABLE r5c REPLICA IDENTITY FULL"
  q "INSERT INTO r5c SELECT g, 'full identity row ' || g, g FROM generate_series(1, 15) g"
  table_sync r5c
  chk "5c REPLICA IDENTITY FULL: backfill" 'conv $p "$M" $S' "$lg"
  q "INSERT INTO r5c SELECT g, 'full identity row ' || g || ' streamed', g FROM generate_series(16, 20) g"
  q "UPDATE r5c SET description = 'new text ' || id WHERE id <= 3; UPDATE r5c SET n = n * 10 WHERE id BETWEEN 4 AND 6"
  q "UPDATE r5c SET id = 107 WHERE id = 7; DELETE FROM r5c WHERE id IN (8, 18)"
  chk "5c REPLICA IDENTITY FULL: inserts, updates, deletes streamed" 'conv $p "$M" $S' "$lg"
  stop_sync $p
}

# ---- 6. one bad row does not stall everything -------------------------------------------------
case6() {
  echo "# 6. a 17 MB text among ordinary rows"
  local M S lg p sp sport
  # (a) in-process model: the big text is embedded (truncated to 256 tokens), later rows arrive
  q "CREATE TABLE b6 (id int PRIMARY KEY, description text)"
  q "INSERT INTO b6 SELECT g, 'ordinary row ' || g FROM generate_series(1, 5) g"
  table_sync b6
  chk "6a backfill" 'conv $p "$M" $S' "$lg"
  q "INSERT INTO b6 VALUES (100, repeat('word ', 3500000))"
  q "INSERT INTO b6 SELECT g, 'ordinary row ' || g || ' after the big one' FROM generate_series(101, 120) g"
  chk "6a in-process: the 17 MB row has a vector and the later rows arrive" \
    'conv $p "$M" $S && [ "$(q "SELECT count(*) FROM $S WHERE id = 100")" = 1 ]' "$lg"
  stop_sync $p

  # (b) a remote server that refuses texts over 1 MB: dead letters, the rest goes on. First
  # texts of 2 MB (over --max-text-bytes, within the server's message limit), met by the
  # backfill and by the stream, then the 17 MB text (over the message limit too).
  local try
  for try in 1 2 3; do # another port if this one was taken meanwhile
    sport=$(free_port $((port + 300 + 10 * try)))
    CDCVEC_LOG=info "$bin" serve --listen "tcp://127.0.0.1:$sport" --http '' --max-text-bytes 1000000 --threads 2 \
      >>"$work/serve.log" 2>&1 &
    sp=$!
    WATCH_PID=$sp wait_for '(exec 3<>/dev/tcp/127.0.0.1/$sport) 2>/dev/null' 'wc -c <"$work/serve.log"' >/dev/null && break
    sp=
  done
  [ -n "$sp" ] || { echo "FAIL 6b cdcvec serve did not start"; fail=1; dump "$work/serve.log"; return; }
  q "CREATE TABLE b6r (id int PRIMARY KEY, description text)"
  q "INSERT INTO b6r SELECT g, 'ordinary row ' || g FROM generate_series(1, 5) g"
  q "INSERT INTO b6r VALUES (4240, repeat('word ', 400000))" # 2 MB, met by the backfill
  table_sync b6r --embed "tcp://127.0.0.1:$sport" --on-error dead-letter
  M=$(oracle public b6r description id 'id NOT IN (4240, 4241, 4242)')
  chk "6b remote: the backfill goes on past a refused 2 MB row" 'conv $p "$M" $S' "$lg" "$work/serve.log"
  q "INSERT INTO b6r VALUES (4241, repeat('word ', 400000))" # 2 MB, met by the stream
  q "INSERT INTO b6r SELECT g, 'ordinary row ' || g || ' after the 2 MB one' FROM generate_series(101, 110) g"
  chk "6b remote: the rows after a refused streamed 2 MB row arrive" 'conv $p "$M" $S' "$lg"
  q "INSERT INTO b6r VALUES (4242, repeat('word ', 3500000))" # 17 MB, met by the stream
  q "INSERT INTO b6r SELECT g, 'ordinary row ' || g || ' after the 17 MB one' FROM generate_series(111, 120) g"
  q "UPDATE b6r SET description = 'ordinary row 1, edited' WHERE id = 1"
  chk "6b remote: the rows after a refused streamed 17 MB row arrive (store equals source but for it)" \
    'conv $p "$M" $S' "$lg" "$work/serve.log"
  local k
  for k in 4240 4241 4242; do
    chk "6b row $k is in cdcvec.dead_letters with a reason naming the size" \
      '[ "$(q "SELECT count(*) > 0 FROM cdcvec.dead_letters WHERE key::text ~ '"'(^|[^0-9])$k([^0-9]|\$)'"' AND reason ~* '"'byte|size|large|long|max'"'")" = t ]' "$lg"
  done
  q "SELECT key, left(reason, 200) FROM cdcvec.dead_letters WHERE key::text ~ '424[012]'" 2>/dev/null | sed 's/^/  dead letter: /'
  chk "6b the refused rows have no vector" '[ "$(q "SELECT count(*) FROM $S WHERE id IN (4240, 4241, 4242)")" = 0 ]' "$lg"
  chk "6b log: event=dead_letter" 'grep -q "event=dead_letter" "$lg"' "$lg"
  stop_sync $p

  # (c) --on-error stop: exit 1 instead
  q "CREATE TABLE b6s (id int PRIMARY KEY, description text)"
  q "INSERT INTO b6s SELECT g, 'ordinary row ' || g FROM generate_series(1, 5) g"
  table_sync b6s --embed "tcp://127.0.0.1:$sport" --on-error stop
  if chk "6c --on-error stop: backfill" 'conv $p "$M" $S' "$lg"; then
    q "INSERT INTO b6s VALUES (4243, repeat('word ', 3500000))"
    q "INSERT INTO b6s VALUES (6, 'after the big one')"
    wait_for '! kill -0 $p 2>/dev/null' true
  fi
  if exited "6c --on-error stop"; then
    chk "6c --on-error stop: exit 1 (rc=$rc) with event=sync_stopped" '[ $rc = 1 ] && grep -q "event=sync_stopped" "$lg"' "$lg"
    chk "6c --on-error stop: the row is not in the sink" '[ "$(q "SELECT count(*) FROM $S WHERE id = 4243")" = 0 ]'
  fi
  kill -TERM $sp 2>/dev/null
  wait $sp 2>/dev/null
}

# ---- 7 and 13. retries, metrics, a second sync on the same table ---------------------------------
case7() {
  echo "# 7. PostgreSQL stopped under a running sync; a second sync on a table already synced"
  q "CREATE TABLE r7 (id int PRIMARY KEY, description text)"
  q "INSERT INTO r7 SELECT g, 'before the outage ' || g FROM generate_series(1, 20) g"
  local M S=cdcvec.public_r7 lg=$work/r7.log p hp t0 n0 m_ok=0 m_down=0 e0 e1
  M=$(oracle public r7 description id)
  hp=$(free_port $((port + 400)))
  start_sync r7 --table public.r7 --text-column description --http "127.0.0.1:$hp"
  p=$spid
  chk "7 backfill" 'conv $p "$M" $S' "$lg"
  q "INSERT INTO r7 SELECT g, 'streamed before the outage ' || g FROM generate_series(21, 25) g; DELETE FROM r7 WHERE id = 1"
  chk "7 streamed before the outage" 'conv $p "$M" $S' "$lg"
  curl -sf --max-time 10 "http://127.0.0.1:$hp/metrics" >"$work/m0.txt"
  e0=$(metric_sum "$work/m0.txt" '^cdcvec_sync_errors_total\{stage="source"')
  n0=$(grep -c "event=sync_retry" "$lg")
  bash "$root/scripts/pg.sh" stop "$work/pg"
  t0=$SECONDS
  # the outage lasts at least 8 s and until three retries were logged; /metrics is read all along
  WATCH_PID=$p wait_for 'if curl -sf --max-time 10 "http://127.0.0.1:$hp/metrics" >"$work/m_out.txt"; then m_ok=$((m_ok + 1)); else m_down=$((m_down + 1)); fi
      [ $(($(grep -c "event=sync_retry" "$lg") - n0)) -ge 3 ] && [ $((SECONDS - t0)) -ge 8 ]' \
    'grep -c "event=sync_retry" "$lg"; [ $((SECONDS - t0)) -ge 8 ]; echo $?'
  curl -sf --max-time 10 "http://127.0.0.1:$hp/metrics" >"$work/m_out.txt" && m_ok=$((m_ok + 1)) || m_down=$((m_down + 1))
  DB=$(bash "$root/scripts/pg.sh" start "$work/pg" "$port") || { echo "FAIL cannot restart PostgreSQL"; fail=1; return; }
  chk "7 during the outage /metrics answers throughout ($m_ok answers, $m_down failures)" '[ $m_down = 0 ] && [ $m_ok -gt 0 ]' "$lg"
  e1=$(metric_sum "$work/m_out.txt" '^cdcvec_sync_errors_total\{stage="source"')
  chk "7 cdcvec_sync_errors_total{stage=\"source\"} increased during the outage ($e0 -> ${e1:-none})" \
    '[ -n "$e1" ] && [ "$e1" -gt "$e0" ]' "$lg"
  local waits
  waits=$(grep "event=sync_retry" "$lg" | tail -n +$((n0 + 1)) | sed -n 's/.* in_seconds=\([0-9.]*\).*/\1/p' | tr '\n' ' ')
  chk "7 event=sync_retry lines with increasing in_seconds ($waits)" \
    'echo "$waits" | awk '"'"'{ if (NF < 3) exit 1; for (i = 2; i <= 3; i++) if ($i + 0 <= $(i - 1) + 0) exit 1; if ($NF + 0 <= $1 + 0) exit 1 }'"'"'' "$lg"
  chk "7 retries are logged with attempt=N and kind=" \
    'grep "event=sync_retry" "$lg" | tail -n +$((n0 + 1)) | head -1 | grep -Eq "attempt=[0-9]+ .*kind=[a-z_]+"' "$lg"
  q "INSERT INTO r7 SELECT g, 'after the outage ' || g FROM generate_series(26, 35) g; UPDATE r7 SET description = 'edited after the outage' WHERE id = 2"
  chk "7 after the outage: converges" 'conv $p "$M" $S' "$lg"
  chk "7 the model was loaded once (event=model_loaded lines: $(grep -c event=model_loaded "$lg"))" \
    '[ "$(grep -c "event=model_loaded" "$lg")" = 1 ]' "$lg"

  # 13. metrics tell the truth across the reconnects
  echo "# 13. metrics after the outage"
  curl -sf --max-time 10 "http://127.0.0.1:$hp/metrics" >"$work/m1.txt"
  chk "13 cdcvec_sync_changes_total: no series went down" 'metrics_le "$work/m0.txt" "$work/m1.txt" cdcvec_sync_changes_total' "$lg"
  chk "13 cdcvec_sync_changes_total{kind=\"insert\"} counted the inserts after the outage" \
    '[ "$(metric_sum "$work/m1.txt" "^cdcvec_sync_changes_total\\{kind=\"insert\"")" -ge $(($(metric_sum "$work/m0.txt" "^cdcvec_sync_changes_total\\{kind=\"insert\"") + 10)) ]'
  chk "13 cdcvec_sync_errors_total: no series went down" 'metrics_le "$work/m0.txt" "$work/m1.txt" cdcvec_sync_errors_total' "$lg"
  chk "13 cdcvec_sync_errors_total has stage and kind labels" \
    'grep -Eq "^cdcvec_sync_errors_total\{(stage=\"source\",kind=|kind=\"[^\"]*\",stage=\"source\")" "$work/m1.txt"'
  chk "13 cdcvec_sync_dead_letters_total exists" 'grep -Eq "^cdcvec_sync_dead_letters_total(\{| )" "$work/m1.txt"'
  stop_sync $p

  # a second sync on a table already being synced
  q "CREATE TABLE r7b (id int PRIMARY KEY, description text)"
  q "INSERT INTO r7b SELECT g, 'held by the first sync ' || g FROM generate_series(1, 20) g"
  local la=$work/r7b_first.log lb=$work/r7b_second.log pa pb slot wsa moved=0
  M=$(oracle public r7b description id)
  S=cdcvec.public_r7b
  start_sync r7b_first --table public.r7b --text-column description
  pa=$spid
  chk "7b first sync: backfill" 'conv $pa "$M" $S' "$la"
  wait_for '[ -n "$(slot_of "$la")" ]' 'wc -l <"$la"'
  slot=$(slot_of "$la")
  wsa=$(q "SELECT active_pid FROM pg_replication_slots WHERE slot_name = '$slot'")
  start_sync r7b_second --table public.r7b --text-column description
  pb=$spid
  # while the second waits: the first keeps the slot (same walsender) and keeps converging
  WATCH_PID=$pb wait_for \
    '[ "$(q "SELECT active_pid FROM pg_replication_slots WHERE slot_name = '"'\$slot'"'")" = "$wsa" ] || moved=1; [ $(grep -c "event=sync_retry" "$lb") -ge 3 ]' \
    'grep -c "event=sync_retry" "$lb"'
  q "INSERT INTO r7b SELECT g, 'written while two syncs run ' || g FROM generate_series(21, 30) g; DELETE FROM r7b WHERE id = 3"
  chk "7b the first sync keeps converging" 'conv $pa "$M" $S' "$la"
  [ "$(q "SELECT active_pid FROM pg_replication_slots WHERE slot_name = '$slot'")" = "$wsa" ] || moved=1
  chk "7b the slot $slot stayed with the first sync's walsender ($wsa) throughout" '[ -n "$wsa" ] && [ $moved = 0 ]' "$la" "$lb"
  chk "7b the second is still waiting" 'kill -0 $pb 2>/dev/null' "$lb"
  chk "7b the second logs that another sync holds the table" \
    'grep -Eqi "another|active for PID|in use|already (active|running)|holds" "$lb"' "$lb"
  chk "7b the second waits at least its backoff between attempts" \
    'grep "event=sync_retry" "$lb" | while read -r line; do echo "$(ts_s "$line") $(echo "$line" | sed -n "s/.* in_seconds=\([0-9.]*\).*/\1/p")"; done |
       awk '"'"'NR > 1 { gap = $1 - t; if (gap < 0) gap += 86400; if (gap < 0.9 * w - 0.05) bad = 1 } { t = $1; w = $2 } END { exit (NR < 3 || bad) }'"'"'' "$lb"
  kill -9 $pa 2>/dev/null
  wait $pa 2>/dev/null
  q "INSERT INTO r7b SELECT g, 'after the first sync died ' || g FROM generate_series(31, 40) g; UPDATE r7b SET description = 'taken over' WHERE id = 4"
  chk "7b the first killed: the second takes over and converges" 'conv $pb "$M" $S' "$lb"
  chk "7b the slot was never dropped (no slot created by the second)" \
    '! grep -Eq "event=slot_(created|recreate)" "$lb" && [ "$(q "SELECT count(*) FROM pg_replication_slots WHERE slot_name = '"'$slot'"'")" = 1 ]' "$lb"
  stop_sync $pb
}

# ---- 8. permanent errors exit 1 at once -------------------------------------------------------
case8() {
  echo "# 8. permanent errors: exit 1 at once with the kind and a fix"
  q "CREATE TABLE e8 (id int PRIMARY KEY, description text)"
  q "INSERT INTO e8 VALUES (1, 'one'), (2, 'two')"
  # wrong password: scram for this role only, before the trust lines
  q "CREATE ROLE pwuser LOGIN REPLICATION PASSWORD 'right-password'; GRANT SELECT ON e8 TO pwuser"
  local hba=$work/pg/data/pg_hba.conf
  { printf 'host all pwuser 127.0.0.1/32 scram-sha-256\nhost replication pwuser 127.0.0.1/32 scram-sha-256\n'
    cat "$hba"; } >"$work/hba.new" && cat "$work/hba.new" >"$hba" # keeps the file's owner
  q "SELECT pg_reload_conf()" >/dev/null
  run_exit e8_password --source "postgres://pwuser:wrong-password@127.0.0.1:$port/postgres" --table public.e8 --text-column description
  stopped "8 wrong password" "$work/e8_password.log" '[a-z_]+' 'password'
  chk "8 wrong password: the password is not in the log" '! grep -q "wrong-password" "$work/e8_password.log"' "$work/e8_password.log"

  # a role that does not own the table: the publication cannot be created
  q "SET client_min_messages = warning; CREATE SCHEMA IF NOT EXISTS cdcvec"
  q "CREATE TABLE e8o (id int PRIMARY KEY, description text); INSERT INTO e8o VALUES (1, 'owned by postgres')"
  q "CREATE ROLE notowner LOGIN REPLICATION; GRANT CREATE ON DATABASE postgres TO notowner;
     GRANT USAGE, CREATE ON SCHEMA cdcvec TO notowner; GRANT ALL ON ALL TABLES IN SCHEMA cdcvec TO notowner;
     GRANT SELECT ON e8o TO notowner"
  run_exit e8_owner --source "postgres://notowner@127.0.0.1:$port/postgres" --table public.e8o --text-column description
  stopped "8 role not owning the table" "$work/e8_owner.log" '[a-z_]+' 'owner'

  q "CREATE UNLOGGED TABLE e8u (id int PRIMARY KEY, description text); INSERT INTO e8u VALUES (1, 'unlogged')"
  run_exit e8_unlogged --source "$DB" --table public.e8u --text-column description
  stopped "8 UNLOGGED table" "$work/e8_unlogged.log" '[a-z_]+' 'unlogged'

  run_exit e8_ssl --source "postgres://postgres@127.0.0.1:$port/postgres?sslmode=bogus" --table public.e8 --text-column description
  stopped "8 sslmode=bogus" "$work/e8_ssl.log" '[a-z_]+' 'sslmode'

  q "CREATE TABLE e8g (id int PRIMARY KEY, title text, description text GENERATED ALWAYS AS ('about ' || title) STORED)"
  q "INSERT INTO e8g (id, title) VALUES (1, 'generated texts')"
  run_exit e8_generated --source "$DB" --table public.e8g --text-column description
  stopped "8 generated text column" "$work/e8_generated.log" '[a-z_]+' 'generated'
  chk "8 generated text column: not reported as missing" \
    '! grep -E "level=(error|warn)" "$work/e8_generated.log" | grep -Eqi "missing|does not exist"' "$work/e8_generated.log"

  # every replication slot in use: a second cluster with max_replication_slots = 1, taken
  local DB2=
  pg_start_retry "$work/pg2" DB2 "$(free_port $((port + 510)))" || { echo "FAIL cannot start a second PostgreSQL"; fail=1; return; }
  psql -qAtX "$DB2" -c "ALTER SYSTEM SET max_replication_slots = 1" >/dev/null
  bash "$root/scripts/pg.sh" restart "$work/pg2"
  psql -qAtX "$DB2" -c "CREATE EXTENSION vector" -c "CREATE TABLE e8s (id int PRIMARY KEY, description text)" \
    -c "INSERT INTO e8s VALUES (1, 'no slot left')" -c "SELECT pg_create_logical_replication_slot('taken', 'pgoutput')" >/dev/null
  run_exit e8_slots --source "$DB2" --table public.e8s --text-column description
  stopped "8 all replication slots in use" "$work/e8_slots.log" '[a-z_]+' 'slot'
  bash "$root/scripts/pg.sh" stop "$work/pg2"
}

# ---- 9. partitioned table -----------------------------------------------------------------------
case9() {
  echo "# 9. partitioned table"
  q "CREATE TABLE pt (id int PRIMARY KEY, description text, region text) PARTITION BY RANGE (id)"
  q "CREATE TABLE pt_1 PARTITION OF pt FOR VALUES FROM (0) TO (1000); CREATE TABLE pt_2 PARTITION OF pt FOR VALUES FROM (1000) TO (2000)"
  q "INSERT INTO pt SELECT g, 'partitioned row ' || g, 'low' FROM generate_series(1, 15) g"
  q "INSERT INTO pt SELECT g, 'partitioned row ' || g, 'high' FROM generate_series(1001, 1015) g"
  local M S lg p
  table_sync pt
  chk "9 partitioned: backfill of both partitions" 'conv $p "$M" $S && [ "$(count $S)" = 30 ]' "$lg"
  q "INSERT INTO pt_1 VALUES (16, 'into the first partition', 'low'); INSERT INTO pt_2 VALUES (1016, 'into the second partition', 'high')"
  q "UPDATE pt_1 SET description = 'updated in place' WHERE id = 2; UPDATE pt SET region = 'moved' WHERE id = 1002"
  q "UPDATE pt SET id = 1100, description = 'moved across partitions' WHERE id = 3"
  q "DELETE FROM pt_1 WHERE id = 4; DELETE FROM pt_2 WHERE id = 1004"
  chk "9 partitioned: inserts, updates, deletes into partitions streamed" 'conv $p "$M" $S' "$lg"
  stop_sync $p
  local n0
  n0=$(wc -l <"$lg")
  start_sync pt --table public.pt --text-column description
  p=$spid
  q "INSERT INTO pt VALUES (17, 'after the restart', 'low'), (1017, 'after the restart', 'high')"
  chk "9 partitioned: restart works" 'conv $p "$M" $S' "$lg"
  chk "9 partitioned: the restart neither retried nor met \"already member of publication\"" \
    '! tail -n +$((n0 + 1)) "$lg" | grep -Eqi "event=sync_retry|already member"' "$lg"
  stop_sync $p
}

# ---- 10. table dropped and recreated under a running sync -----------------------------------------
case10() {
  echo "# 10. table dropped and recreated under a running sync"
  q "CREATE TABLE dr (id int PRIMARY KEY, description text, n int)"
  q "INSERT INTO dr SELECT g, 'first life of row ' || g, g FROM generate_series(1, 15) g"
  local M S lg p
  table_sync dr
  chk "10 backfill" 'conv $p "$M" $S' "$lg"
  q "DROP TABLE dr"
  q "CREATE TABLE dr (id int PRIMARY KEY, description text, n int)"
  q "INSERT INTO dr SELECT g, 'second life of row ' || g, -g FROM generate_series(10, 20) g"
  chk "10 recreated: new rows arrive, old vectors are gone" 'conv $p "$M" $S' "$lg"
  chk "10 log: event=table_recreated" 'grep -q "event=table_recreated" "$lg"' "$lg"
  q "UPDATE dr SET description = 'streamed on the new table' WHERE id = 12; DELETE FROM dr WHERE id = 13"
  chk "10 the new table is streamed" 'conv $p "$M" $S' "$lg"
  stop_sync $p
}

# ---- 11. wide table --------------------------------------------------------------------------------
case11() {
  echo "# 11. wide table: 160 columns with 45-character names"
  q "DO \$\$ DECLARE s text := 'CREATE TABLE w11 (id int PRIMARY KEY, description text'; BEGIN
       FOR i IN 1..160 LOOP
         s := s || format(', %I %s', 'column_' || lpad(i::text, 3, '0') || '_' || repeat('x', 34),
                          (ARRAY['int', 'text', 'numeric(12,3)', 'boolean'])[i % 4 + 1]);
       END LOOP;
       EXECUTE s || ')'; END \$\$"
  q "CREATE FUNCTION w11_rows(a int, b int) RETURNS void LANGUAGE plpgsql AS \$\$ DECLARE cols text := 'id, description'; vals text := 'g, ''wide row '' || g || '' with many columns'''; BEGIN
       FOR i IN 1..160 LOOP
         cols := cols || format(', %I', 'column_' || lpad(i::text, 3, '0') || '_' || repeat('x', 34));
         vals := vals || ', ' || (ARRAY[format('g * %s', i), format('''v'' || g || ''_%s''', i), format('(g * %s) / 7.0', i),
                                        format('(g + %s) %% 2 = 0', i)])[i % 4 + 1];
       END LOOP;
       EXECUTE format('INSERT INTO w11 (%s) SELECT %s FROM generate_series(%s, %s) g', cols, vals, a, b); END \$\$"
  q "SELECT w11_rows(1, 30)" >/dev/null
  local M S=cdcvec.public_w11 lg=$work/w11.log p c1 c2
  M=$(oracle public w11 description id)
  start_sync w11 --table public.w11 --text-column description
  p=$spid
  chk "11 wide table: backfill" 'conv $p "$M" $S' "$lg"
  c1=column_001_$(printf 'x%.0s' $(seq 34))
  c2=column_160_$(printf 'x%.0s' $(seq 34))
  q "SELECT w11_rows(31, 40)" >/dev/null
  q "UPDATE w11 SET $c1 = NULL, $c2 = 12345, description = description || ' (edited)' WHERE id <= 3"
  q "UPDATE w11 SET $c1 = $c1 || '-twice' WHERE id BETWEEN 4 AND 6; DELETE FROM w11 WHERE id = 7"
  chk "11 wide table: streamed inserts, updates, deletes" 'conv $p "$M" $S' "$lg"
  stop_sync $p
}

# ---- 12. template over a TOASTed column -----------------------------------------------------------
case12() {
  echo "# 12. --template '{title}: {body}' with a TOASTed body"
  q "CREATE TABLE tp (id int PRIMARY KEY, title text NOT NULL, body text NOT NULL, n int)"
  q "ALTER TABLE tp ALTER COLUMN body SET STORAGE EXTERNAL"
  q "INSERT INTO tp SELECT k, 'Title ' || k, (SELECT string_agg(md5((i * k)::text), ' ') FROM generate_series(1, 3000) i), k FROM generate_series(1, 3) k"
  q "INSERT INTO tp SELECT k, 'Title ' || k, 'a short body ' || k, k FROM generate_series(4, 8) k"
  local M S=cdcvec.public_tp lg=$work/tp.log p before after
  M="SELECT count(*) FROM tp s FULL JOIN $S v USING (id)
     WHERE (s.id IS NULL OR v.id IS NULL OR v.text_hash IS DISTINCT FROM sha256(convert_to(s.title || ': ' || s.body, 'UTF8')))"
  start_sync tp --table public.tp --text-column body --template '{title}: {body}'
  p=$spid
  chk "12 template: backfill (text_hash = sha256(title || ': ' || body))" 'conv $p "$M" $S' "$lg"
  chk "12 the 100 KB bodies are stored out of line" '[ "$(q "SELECT pg_column_size(body) > 90000 FROM tp WHERE id = 1")" = t ]'
  q "UPDATE tp SET title = 'A new title ' || id WHERE id IN (1, 2, 4)"
  chk "12 template: title updated over an unchanged TOASTed body: the new text's vector" 'conv $p "$M" $S' "$lg"
  before=$(q "SELECT md5(embedding::text) FROM $S WHERE id = 3")
  q "UPDATE tp SET n = n + 1 WHERE id = 3"
  q "UPDATE tp SET body = body || ' and a tail' WHERE id = 2"
  chk "12 template: body updated" 'conv $p "$M AND id IN (2, 3)" $S' "$lg"
  after=$(q "SELECT md5(embedding::text) FROM $S WHERE id = 3")
  chk "12 template: other column updated: vector unchanged" '[ -n "$before" ] && [ "$before" = "$after" ]' "$lg"
  stop_sync $p
}

# ---- 14. small things: backfill --after with a comma key, search, one line per log record ---------
case14() {
  echo "# 14. backfill --after with a text key holding a comma; search; log lines"
  q "CREATE TABLE ck (k text PRIMARY KEY, description text)"
  q "INSERT INTO ck VALUES ('a', 'apples grow on trees'), ('a,b', 'bananas are yellow'), ('b', 'cherries are red'),
                           ('b,c', 'the last key holds a comma')"
  local M S=cdcvec.public_ck lg=$work/ck.log last rc1 rc2 t_before out
  M=$(oracle public ck description k)
  CDCVEC_LOG=info timeout $((STALL_S * 2)) "$bin" backfill --source "$DB" --table public.ck --text-column description --threads 2 \
    >"$work/ck_bf1.out" 2>"$lg"
  rc1=$?
  last=$(sed -n 's/^backfill .*, last key //p' "$lg" | tail -1)
  chk "14 backfill: exit 0, all rows, the progress line names the last key ('$last')" \
    '[ $rc1 = 0 ] && [ -n "$last" ] && [ "$(q "$M")" = 0 ]' "$lg"
  q "INSERT INTO ck VALUES ('c', 'dates are sweet'), ('d,e', 'elderberries after the comma key')"
  t_before=$(q "SELECT max(updated_at) FROM $S WHERE k <= 'b,c'")
  CDCVEC_LOG=info timeout $((STALL_S * 2)) "$bin" backfill --source "$DB" --table public.ck --text-column description --threads 2 \
    --force 1 --after "$last" >"$work/ck_bf2.out" 2>>"$lg"
  rc2=$?
  chk "14 backfill --after '$last': exit 0 (rc=$rc2), resumes after that key" \
    '[ $rc2 = 0 ] && [ "$(q "SELECT max(updated_at) FROM $S WHERE k <= '"'b,c'"'")" = "$t_before" ] && [ "$(q "$M")" = 0 ]' "$lg"
  out=$(CDCVEC_LOG=warn timeout $((STALL_S * 2)) "$bin" search --source "$DB" --table public.ck "red fruit on trees" --limit 3 2>"$work/search.log")
  chk "14 search with the query after the options: 3 ranked results" \
    '[ "$(echo "$out" | grep -Ec "^ *[123]\. -?[0-9.]+ +key=")" = 3 ]' "$work/search.log"
  [ -n "$out" ] && echo "$out" | head -3 | sed 's/^/  /'
  q "CREATE UNLOGGED TABLE ck_u (k text PRIMARY KEY, description text)"
  run_exit ck_unlogged --source "$DB" --table public.ck_u --text-column description # a multi-line server error
}

# 14 (end of the run): every line of the logs of the runs that ended in an error (cases 4, 5, 6,
# 8 and 14) is a log record (a timestamp first) or a progress line: no error text split a line.
log_lines() {
  echo "# 14. no log line split by a newline inside an error text"
  local l bad='' n=0
  for l in "${fail_logs[@]}"; do
    [ -f "$l" ] || continue
    n=$((n + 1))
    if grep -Evq '^(20[0-9][0-9]-[0-9][0-9]-[0-9][0-9]T|backfill )' "$l"; then
      bad+=" $(basename "$l")"
      grep -Ev '^(20[0-9][0-9]-[0-9][0-9]-[0-9][0-9]T|backfill )' "$l" | head -3 | cut -c1-200 | sed "s/^/  $(basename "$l"): /"
    fi
  done
  chk "14 no log line of the $n failing runs is split by a newline${bad:+ (split in:$bad)}" '[ $n -gt 0 ] && [ -z "$bad" ]'
}

# Case 8 (each error waits up to 2 x STALL_S on a build that retries for ever) runs last, so a
# broken build still gets a verdict on the others within the budget.
for c in 1 2 3 4 5 6 7 9 10 11 12 14 8; do
  wants $c || { [ $c = 7 ] && wants 13; } || continue
  if over_budget; then
    echo "FAIL case $c not run: the run is past its budget of ${budget}s (CDCVEC_MATRIX_BUDGET_S)"
    fail=1
    continue
  fi
  t=$SECONDS
  case$c
  [ $c = 14 ] && ran14=1
  drop_slots
  echo "  (case $c: $((SECONDS - t)) s)"
done
[ -n "${ran14:-}" ] && log_lines
echo "# total: $((SECONDS - t_start)) s"
exit $fail
