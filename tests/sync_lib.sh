# sync_lib.sh: what the PostgreSQL integration tests share (sourced, not run).
#
# Waits are bounded by progress, not by a fixed number of seconds: a wait goes on while the
# thing it watches keeps changing (the sink's rows, its recorded position, the mismatch
# count), and fails when nothing moved for $CDCVEC_TEST_STALL_S seconds (default 60), so a
# machine five times slower passes and a stalled pipeline still fails.
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

# check NAME CONDITION: prints ok/FAIL, remembers a failure.
check() { if eval "$2"; then echo "ok   $1"; else echo "FAIL $1"; fail=1; return 1; fi; }

# q SQL [DB]: one value per line, unaligned.
q() { psql -qAtX "${2:-$DB}" -c "$1"; }

# wait_until CONDITION PROGRESS: polls until CONDITION (shell code) succeeds; keeps waiting
# while the output of PROGRESS (shell code) changes, fails after $STALL_S seconds without a
# change. With WATCH_PID set, fails at once when that process has exited.
wait_until() {
  local cond=$1 progress=$2 last= now= since=$SECONDS
  while :; do
    eval "$cond" && return 0
    if [ -n "${WATCH_PID:-}" ] && ! kill -0 "$WATCH_PID" 2>/dev/null; then
      echo "  the watched process $WATCH_PID has exited"
      return 1
    fi
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
