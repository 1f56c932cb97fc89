# sync_lib.sh: what the PostgreSQL integration tests share (sourced, not run).
#
# Waits are bounded by progress, not by a fixed number of seconds: a wait goes on while the
# thing it watches keeps changing (the sink's rows, its recorded position, the mismatch
# count), and fails when nothing moved for $CDCVEC_TEST_STALL_S seconds (default 60), so a
# machine five times slower passes and a stalled pipeline still fails.
#
# Every wait also watches the processes the test started in the background: `watch PID NAME
# [LOG]` registers one, and a wait fails at once, with the tail of its log, when a watched
# process exited (a sink that could not bind its port, a crash) instead of waiting for a
# stall. A process the test signals itself (`kill -9 $pid`, `kill -TERM $pid`) is no longer
# watched: `kill` below is the builtin plus that bookkeeping. `start_listener` starts a
# process that listens on a port and retries on another port when its port was taken.
#
# A test that runs its own PostgreSQL starts with `test_begin` (its folder, a port, the cleanup
# on exit), `pg_up` (the server, pgvector, the tutorial's books) and ends with `test_end`.
#
# Needs: $DB (connection string of the source) once the server is started.

STALL_S=${CDCVEC_TEST_STALL_S:-60}
fail=${fail:-0}
root=${root:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
CV_PG_DIRS=() # every PostgreSQL started by pg_start_retry: test_cleanup stops them

# A free TCP port at or after $1: no socket of any state uses it, and it lies outside the
# kernel's ephemeral range (where client connections take their local ports: a port free there
# now may be a connection's the next moment, and a test that opened thousands of connections
# leaves them on ports there). A port asked for in that range moves below it, 10000 and up.
read -r CV_EPH_LO CV_EPH_HI </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || CV_EPH_LO=32768 CV_EPH_HI=60999
[ "$CV_EPH_LO" -gt 11000 ] || CV_EPH_LO=65536 CV_EPH_HI=65536 # no room below it: only the wrap
free_port() {
  local p=$1
  while :; do
    if [ "$p" -gt 65535 ] || { [ "$p" -ge "$CV_EPH_LO" ] && [ "$p" -le "$CV_EPH_HI" ]; }; then
      p=$((10000 + (p - CV_EPH_LO + 65536) % (CV_EPH_LO - 10000)))
    fi
    if (exec 3<>/dev/tcp/127.0.0.1/$p) 2>/dev/null ||
      [ -n "$(ss -Htan "( sport = :$p )" 2>/dev/null | head -1)" ]; then
      p=$((p + 1))
      continue
    fi
    echo $p
    return
  done
}

# pg_start_retry DIR [VAR [PORT]]: starts a private PostgreSQL (scripts/pg.sh) in DIR on PORT
# (default $port, which follows it), or on another free port when that one was taken meanwhile
# (tests and other programs run beside); sets VAR (default DB) to its connection string.
# test_cleanup stops it. Needs $root.
pg_start_retry() {
  local dir=$1 var=${2:-DB} p=${3:-$port} try conn
  for try in 1 2 3; do
    if conn=$(bash "$root/scripts/pg.sh" start "$dir" "$p"); then
      printf -v "$var" '%s' "$conn"
      [ -n "${3:-}" ] || port=$p
      CV_PG_DIRS+=("$dir")
      return 0
    fi
    tail -3 "$dir/server.log" >&2 2>/dev/null
    bash "$root/scripts/pg.sh" stop "$dir" 2>/dev/null
    rm -rf "$dir"
    p=$(free_port $((p + 17 * try)))
  done
  printf -v "$var" '%s' ''
  return 1
}

# books 1|2|all|table|rows [DB]: the tutorial's books (tests/data/books.sql) into DB: the table
# and its first batch of rows (up to "-- batch 2"), the second batch, all of it, the table empty,
# or all its rows.
books() {
  case $1 in
  1) sed -n '1,/-- batch 2/p' ;;
  2) sed -n '/-- batch 2/,$p' ;;
  all) cat ;;
  table) sed -n '1,/^INSERT/p' | sed '$d' ;;
  rows) sed -n '/^INSERT/,$p' ;;
  esac <"$root/tests/data/books.sql" | psql -qX "${2:-$DB}" >/dev/null
}

# ---- a test's folder, PostgreSQL and cleanup -------------------------------------------------
# test_begin NAME PORT_BASE BIN: the start of a test with a PostgreSQL of its own: sets bin (BIN,
# absolute), work (a fresh folder beside it, test-NAME-PID; see pg.sh dir), port (a free port from
# PORT_BASE + PID % 8000), and test_cleanup on EXIT.
test_begin() {
  bin=$(cd "$(dirname "$3")" && pwd)/$(basename "$3")
  work=$(bash "$root/scripts/pg.sh" dir "$(dirname "$bin")/test-$1-$$")
  port=$(free_port $(($2 + $$ % 8000)))
  mkdir -p "$work"
  trap test_cleanup EXIT
}

# pg_up [vector] [books]: starts the test's PostgreSQL in $work/pg (sets DB and port), or ends the
# test with FAIL; "vector" creates pgvector in it, "books" the tutorial's table and first batch.
pg_up() {
  pg_start_retry "$work/pg" || { echo "FAIL cannot start PostgreSQL"; exit 1; }
  local a
  for a; do
    case $a in
    vector) q "CREATE EXTENSION vector" >/dev/null ;;
    books) books 1 ;;
    esac
  done
}

# test_cleanup: on exit, kills (-9) every background process the test started that still runs,
# stops the mock broker (kafka_lib.sh) and every PostgreSQL started here, and removes $work,
# unless the test failed or KEEP (or CDCVEC_TEST_KEEP) is set.
test_cleanup() {
  local p d
  for p in $(jobs -p); do
    [ "$p" = "${KMOCK_PID:-}" ] && continue
    builtin kill -9 "$p" 2>/dev/null
    builtin wait "$p" 2>/dev/null
  done
  [ -z "${KMOCK_DIR:-}" ] || kmock_stop
  for d in "${CV_PG_DIRS[@]}"; do bash "$root/scripts/pg.sh" stop "$d" 2>/dev/null; done
  if [ -n "${KEEP:-}${CDCVEC_TEST_KEEP:-}" ] || [ "${fail:-0}" != 0 ]; then
    echo "work folder kept: $work"
  else
    rm -rf "$work"
  fi
}

# test_end [LINES [LOG...]]: when a check failed, the last LINES (20) of each LOG (default: every
# $work/*.log); exits with $fail.
test_end() {
  local n=${1:-20} f
  shift $(($# > 0))
  [ $# -gt 0 ] || set -- "$work"/*.log
  if [ "$fail" != 0 ]; then
    for f; do
      echo "--- $f (tail)"
      tail -n "$n" "$f"
    done
  fi
  exit "$fail"
}

# stop_all PID...: SIGTERM to each, then waits for it; rcs holds their exit statuses in order.
stop_all() {
  local p
  rcs=
  for p; do
    kill -TERM "$p"
    wait "$p"
    rcs="$rcs$?"
  done
}

# stop_timed PID: SIGTERM, then up to 5 s for PID to exit; sets rc (its exit status, or timeout:
# it is then killed -9) and ms (how long it took).
stop_timed() {
  local t0
  t0=$(date +%s%N)
  kill -TERM "$1"
  for _ in $(seq 1 50); do builtin kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
  ms=$((($(date +%s%N) - t0) / 1000000))
  if builtin kill -0 "$1" 2>/dev/null; then
    rc=timeout
    kill -9 "$1"
  else
    wait "$1"
    rc=$?
  fi
}

# load_start [TEXT_SQL]: 10,000 changes to books in the background (100 seeded transactions of 60
# inserts, 25 text updates, 5 payload updates, 10 deletes, spread so that kills land all through
# them); load_pid is its pid. TEXT_SQL (of i and g) is the inserted rows' description.
load_start() {
  local text=${1:-"'generated book ' || i || ' number ' || g || ' about ' || md5((i * g)::text)"} sql
  sql=$(
    cat <<'SQL'
\set QUIET on
SELECT setseed(0.42);
DO $$
DECLARE i int;
BEGIN
  FOR i IN 1..100 LOOP
    INSERT INTO books (name, description, author, year)
      SELECT 'gen ' || i || '/' || g, @TEXT@, 'gen', 2000 + g % 20
      FROM generate_series(1, 60) g;
    UPDATE books SET description = description || ' (revised ' || i || ')' WHERE id IN (SELECT id FROM books WHERE author = 'gen' ORDER BY random() LIMIT 25);
    UPDATE books SET year = year + 1 WHERE id IN (SELECT id FROM books WHERE author = 'gen' ORDER BY random() LIMIT 5);
    DELETE FROM books WHERE id IN (SELECT id FROM books WHERE author = 'gen' ORDER BY random() LIMIT 10);
    COMMIT;
    PERFORM pg_sleep(0.06);
  END LOOP;
END $$;
SQL
  )
  printf '%s\n' "${sql//@TEXT@/$text}" >"$work/load.sql"
  (psql -qX "$DB" -f "$work/load.sql" >"$work/load.log" 2>&1) &
  load_pid=$!
}

# kill_sync_during_load: until the load (load_pid) has ended, kills the sync (sync_pid) -9 at
# random moments and starts it again (the test's start_sync); kills counts the kills.
kill_sync_during_load() {
  kills=0
  while builtin kill -0 "$load_pid" 2>/dev/null; do
    sleep "0.$((RANDOM % 9 + 1))"
    kill -9 "$sync_pid" 2>/dev/null && kills=$((kills + 1))
    wait "$sync_pid" 2>/dev/null
    start_sync
  done
  wait "$load_pid"
}

# standin NAME [ARGS...]: the stand-in tests/standins/NAME_standin.py (qdrant, upstash) in the
# background, on a port of its choosing (or ARGS' own --port), its output added to $work/NAME.log,
# watched; waits until it says READY. Sets standin_pid, standin_port and NAME_port. Needs $PY.
standin() {
  local name=$1 log=$work/$1.log n0
  shift
  n0=$(grep -c "^READY" "$log" 2>/dev/null)
  "$PY" "$root/tests/standins/${name}_standin.py" --port 0 "$@" >>"$log" 2>&1 &
  standin_pid=$!
  watch "$standin_pid" "$name stand-in" "$log"
  WATCH_PID=$standin_pid wait_until '[ "$(grep -c "^READY" "$log")" -gt "${n0:-0}" ]' 'wc -c <"$log"' ||
    { cat "$log"; return 1; }
  standin_port=$(sed -n 's|^READY http://127.0.0.1:\([0-9]*\).*|\1|p' "$log" | tail -1)
  printf -v "${name}_port" '%s' "$standin_port"
}

# ---- the tutorial's changes, checked in pgvector (cdcvec.public_books) -------------------------
# Each check waits with the test's own `converged`.

# basic_changes: the second batch of books, a text update, a payload-only update (the vector
# kept), a delete and a multi-row transaction.
basic_changes() {
  books 2
  check "inserts" converged
  q "UPDATE books SET description = 'A boy wizard attends a school of magic.' WHERE id = 1"
  check "update of the text re-embeds" converged
  kept_vector "payload-only update" "id = 4" "UPDATE books SET year = 1966 WHERE id = 4"
  q "DELETE FROM books WHERE id = 2"
  check "delete" converged
  q "BEGIN; INSERT INTO books (name, description, author, year) VALUES ('Tx A', 'first of three', 'x', 2000), ('Tx B', 'second of three', 'x', 2001), ('Tx C', 'third of three', 'x', 2002); UPDATE books SET description = 'changed in the same transaction' WHERE name = 'Tx A'; DELETE FROM books WHERE name = 'Tx B'; COMMIT"
  check "multi-row transaction" converged
}

# toast_changes: a 100 KB text stored out of line (TOAST), then an update of another column:
# pgoutput sends the unchanged text as 'u', which must never read as NULL or empty.
toast_changes() {
  q "ALTER TABLE books ALTER COLUMN description SET STORAGE EXTERNAL"
  q "INSERT INTO books (name, description, author, year) SELECT 'Toasted', string_agg(md5(i::text), ' '), 'x', 1999 FROM generate_series(1, 3000) i"
  check "100 KB TOASTed text embedded" converged
  kept_vector "TOASTed text, other column updated" "payload->>'name' = 'Toasted'" "UPDATE books SET year = 2024 WHERE name = 'Toasted'"
}

# kept_vector WHAT WHERE SQL: SQL updates another column than the text of the row WHERE; checks
# that the payload follows (converged) and that the row's stored vector and text hash did not change.
kept_vector() {
  local before after
  before=$(stored_vector "$2")
  q "$3"
  check "$1: payload follows" converged
  after=$(stored_vector "$2")
  check "$1: vector and text hash unchanged" '[ -n "$before" ] && [ "$before" = "$after" ]'
}
stored_vector() { q "SELECT md5(embedding::text) || encode(text_hash, 'hex') FROM cdcvec.public_books WHERE $1"; }

# model_recorded NAME META: checks that META (a command that prints the model id and revision
# the store recorded) names the running model: its id and the SHA-256 of its weights (want_rev).
model_recorded() {
  local dir=${CDCVEC_MODEL_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/cdcvec/all-MiniLM-L6-v2} meta_cmd=$2
  want_rev=$(sha256sum "$dir/model.safetensors" | cut -c1-64)
  check "$1" '[ "$($meta_cmd)" = "sentence-transformers/all-MiniLM-L6-v2 $want_rev" ]' ||
    echo "  recorded: $($meta_cmd); want $want_rev"
}

# gen_model NAME: writes the generated model NAME (tests/models_gen.c, random weights) into
# $gen/NAME with the test_embed_models built beside cdcvec.
gen_model() {
  gen=$work/models
  local g
  g=$(dirname "$bin")/tests/test_embed_models
  [ -x "$g" ] || { echo "FAIL $g is missing: build the tests (cmake --build build)"; exit 1; }
  [ -d "$gen/$1" ] || "$g" --generate-one "$1" "$gen" || { echo "FAIL cannot generate the model $1"; exit 1; }
}

# ---- watched processes ---------------------------------------------------------------------
declare -gA CV_WATCH=()

# watch PID NAME [LOG]: every wait from now on fails at once when PID has exited.
watch() { CV_WATCH[$1]="$2 ${3:-}"; }

# unwatch PID...: the test expects these to exit.
unwatch() {
  local p
  for p; do [ -n "$p" ] && unset "CV_WATCH[$p]"; done
  return 0
}

# kill [-SIG] PID...: the builtin; a watched process the test signals (other than with 0, STOP,
# CONT) is unwatched first, since the test expects it to stop.
kill() {
  local a keep=0
  for a; do
    case $a in
    -0 | -s0 | -STOP | -CONT | -SIGSTOP | -SIGCONT | -19 | -18) keep=1 ;;
    esac
  done
  if [ $keep = 0 ]; then
    for a; do case $a in [0-9]*) unset "CV_WATCH[$a]" ;; esac; done
  fi
  builtin kill "$@"
}

# wait PID...: the builtin; the test expects these to exit.
wait() {
  local a
  for a; do case $a in [0-9]*) unset "CV_WATCH[$a]" ;; esac; done
  builtin wait "$@"
}

# watch_check: returns 1, with the exit status and the tail of its log, when a watched process
# has exited; 0 while all are running.
watch_check() {
  local p name log st
  for p in "${!CV_WATCH[@]}"; do
    builtin kill -0 "$p" 2>/dev/null && continue
    read -r name log <<<"${CV_WATCH[$p]}"
    unset "CV_WATCH[$p]"
    builtin wait "$p" 2>/dev/null
    st=$?
    echo "  $name (pid $p) exited with status $st while the test waited on it"
    if [ -n "$log" ] && [ -f "$log" ]; then
      grep -q 'event=http_listen.*in use' "$log" && echo "  (its HTTP port was taken by another program)"
      echo "  --- last lines of $log:"
      tail -n 25 "$log" | sed 's/^/  | /'
    fi
    return 1
  done
  return 0
}

# listening PID PORT: PID (or one of its threads) listens on TCP PORT.
listening() { ss -ltnpH "sport = :$2" 2>/dev/null | grep -q "pid=$1,"; }

# start_listener NAME LOG PORTVAR CMD...: starts CMD in the background, appending its output to
# LOG, with every argument's text @PORT@ replaced by the value of the variable PORTVAR; waits
# until it listens there, and when it exited because that port was taken meanwhile (another
# program, another test), moves PORTVAR to another free port and starts it again (5 tries).
# The process is watched; its pid is in LISTENER_PID. Returns 1, with its log, when it failed.
start_listener() {
  local name=$1 log=$2 pv=$3 try a
  shift 3
  local -a argv
  for try in 1 2 3 4 5; do
    argv=()
    for a; do argv+=("${a//@PORT@/${!pv}}"); done
    "${argv[@]}" >>"$log" 2>&1 &
    LISTENER_PID=$!
    watch "$LISTENER_PID" "$name" "$log"
    if wait_until 'listening $LISTENER_PID ${!pv}' "wc -c <'$log'"; then
      return 0
    fi
    builtin kill -0 "$LISTENER_PID" 2>/dev/null && return 1 # alive but not listening: a stall
    grep -q 'event=http_listen.*in use' "$log" || return 1
    echo "  $name: port ${!pv} was taken meanwhile; trying another"
    printf -v "$pv" '%s' "$(free_port $((${!pv} + 7 * try)))"
  done
  return 1
}

# check NAME CONDITION: prints ok/FAIL, remembers a failure.
check() { if eval "$2"; then echo "ok   $1"; else echo "FAIL $1"; fail=1; return 1; fi; }

# q SQL [DB]: one value per line, unaligned.
q() { psql -qAtX "${2:-$DB}" -c "$1"; }

# wait_until CONDITION PROGRESS: polls until CONDITION (shell code) succeeds; keeps waiting
# while the output of PROGRESS (shell code) changes, fails after $STALL_S seconds without a
# change. PROGRESS must measure the work waited on, never the clock (a measure that always
# changes turns a stall into a hang). Fails at once when a watched process (`watch`), or
# WATCH_PID, has exited.
wait_until() {
  local cond=$1 progress=$2 last= now= since=$SECONDS
  while :; do
    eval "$cond" && return 0
    if [ -n "${WATCH_PID:-}" ] && ! builtin kill -0 "$WATCH_PID" 2>/dev/null; then
      echo "  the watched process $WATCH_PID has exited"
      return 1
    fi
    watch_check || return 1
    now=$(eval "$progress" 2>/dev/null)
    if [ "$now" != "$last" ]; then
      last=$now
      since=$SECONDS
    elif [ $((SECONDS - since)) -ge "$STALL_S" ]; then
      echo "  no progress for ${STALL_S}s (last: $(echo "$now" | tr '\n' ' '))"
      return 1
    fi
    sleep 0.1
  done
}

# Progress of a sink table: rows, newest write, recorded positions, and the newest statement
# any client but psql and cdcvec's source connection started (the sink writes a batch in
# chunks inside one transaction, so its statements show progress before the batch commits;
# the source connection's catalog probe every 2 s and the lag monitor's reading every second are not
# progress).
sink_progress() { # SINK_TABLE [DB]
  q "SELECT (SELECT count(*) || ' ' || coalesce(max(updated_at)::text, '-') FROM $1),
            (SELECT string_agg(lsn::text || backfill_done::text, ',' ORDER BY stream) FROM cdcvec.state),
            (SELECT max(query_start)::text FROM pg_stat_activity
              WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()
                AND application_name NOT IN ('psql', 'cdcvec source', 'cdcvec monitor'))" "${2:-$DB}"
}

# converged MISMATCH_SQL SINK_TABLE [DB]: waits until the mismatch query counts 0, while the
# sink keeps moving.
converged_q() {
  local mq=$1 sink=$2 db=${3:-$DB}
  # (evaluated inside wait_until, which sees these locals: bash scoping is dynamic)
  wait_until '[ "$(q "$mq" "$db" 2>/dev/null)" = 0 ]' 'q "$mq" "$db"; sink_progress "$sink" "$db"' && return 0
  echo "  mismatches: $(q "$mq" "$db" 2>&1 | head -3)"
  return 1
}
