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
# Needs: $DB (connection string of the source) once the server is started.

STALL_S=${CDCVEC_TEST_STALL_S:-60}
fail=${fail:-0}

# A free TCP port at or after $1 (nothing accepts a connection there).
free_port() {
  local p=$1
  while (exec 3<>/dev/tcp/127.0.0.1/$p) 2>/dev/null; do p=$((p + 1)); done
  echo $p
}

# pg_start_retry DIR: starts a private PostgreSQL (scripts/pg.sh) in DIR on $port, or on another
# free port when that one was taken meanwhile (tests and other programs run beside); sets DB and
# port. Needs $root.
pg_start_retry() {
  local try
  for try in 1 2 3; do
    DB=$(bash "$root/scripts/pg.sh" start "$1" "$port") && return 0
    rm -rf "$1"
    port=$(free_port $((port + 20 * try)))
  done
  DB=
  return 1
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
