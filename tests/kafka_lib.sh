# kafka_lib.sh: a mock Kafka broker for the integration tests (sourced, not run).
#
#   kmock_start BROKER_BIN [kafka_mock_broker args...]  starts it in the background; sets
#       KMOCK_BOOTSTRAP (host:port,...), KMOCK_PID and KMOCK_DIR (its fifo and logs)
#   kmock_cmd "down 1"   sends one command, waits for its answer; returns 1 on `error ...`
#                        (the answer is in KMOCK_ANSWER and printed on failure)
#   kmock_stop           sends quit, waits for the broker, removes KMOCK_DIR
#
# The broker reads its commands from a fifo that this shell holds open on fd $KMOCK_FD (so the
# broker never sees EOF between commands) and answers on its stdout, read here on fd $KMOCK_RFD.
# One broker per shell. The answer waits are bounded by KMOCK_TIMEOUT_S (default 30).

KMOCK_TIMEOUT_S=${KMOCK_TIMEOUT_S:-30}

kmock_start() {
  local bin=$1
  shift
  KMOCK_DIR=$(mktemp -d "${TMPDIR:-/tmp}/kmock.XXXXXX")
  mkfifo "$KMOCK_DIR/in" "$KMOCK_DIR/out"
  "$bin" "$@" <"$KMOCK_DIR/in" >"$KMOCK_DIR/out" 2>"$KMOCK_DIR/stderr" &
  KMOCK_PID=$!
  exec {KMOCK_FD}>"$KMOCK_DIR/in"
  exec {KMOCK_RFD}<"$KMOCK_DIR/out"
  local line=
  if ! IFS= read -r -t "$KMOCK_TIMEOUT_S" -u "$KMOCK_RFD" line || [ "${line#BOOTSTRAP }" = "$line" ]; then
    echo "kmock_start: no BOOTSTRAP line from $bin (got '$line'): $(cat "$KMOCK_DIR/stderr")" >&2
    kmock_stop
    return 1
  fi
  KMOCK_BOOTSTRAP=${line#BOOTSTRAP }
  export KMOCK_BOOTSTRAP
}

kmock_cmd() {
  KMOCK_ANSWER=
  if [ -z "${KMOCK_PID:-}" ] || ! kill -0 "$KMOCK_PID" 2>/dev/null; then
    echo "kmock_cmd: the broker is not running" >&2
    return 1
  fi
  printf '%s\n' "$*" >&"$KMOCK_FD"
  if ! IFS= read -r -t "$KMOCK_TIMEOUT_S" -u "$KMOCK_RFD" KMOCK_ANSWER; then
    echo "kmock_cmd: no answer to '$*' in ${KMOCK_TIMEOUT_S}s" >&2
    return 1
  fi
  [ "$KMOCK_ANSWER" = ok ] && return 0
  echo "kmock_cmd '$*': $KMOCK_ANSWER" >&2
  return 1
}

kmock_stop() {
  [ -n "${KMOCK_DIR:-}" ] || return 0
  if kill -0 "$KMOCK_PID" 2>/dev/null; then
    printf 'quit\n' >&"$KMOCK_FD" 2>/dev/null
    local i
    for i in $(seq 50); do kill -0 "$KMOCK_PID" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$KMOCK_PID" 2>/dev/null && kill -TERM "$KMOCK_PID" 2>/dev/null
  fi
  wait "$KMOCK_PID" 2>/dev/null
  [ -n "${KMOCK_FD:-}" ] && exec {KMOCK_FD}>&-
  [ -n "${KMOCK_RFD:-}" ] && exec {KMOCK_RFD}<&-
  rm -rf "$KMOCK_DIR"
  KMOCK_PID= KMOCK_FD= KMOCK_RFD= KMOCK_DIR=
}

# kafka_venv ROOT: sets PY to the tests' venv python, or prints SKIPPED and exits 77 (the
# venv could not be built: no PyPI, say).
kafka_venv() {
  local log
  log=$(mktemp)
  if ! PY=$(bash "$1/scripts/test-venv.sh" 2>"$log"); then
    echo "SKIPPED: the tests' Python venv could not be built: $(tail -3 "$log")"
    rm -f "$log"
    exit 77
  fi
  rm -f "$log"
}
