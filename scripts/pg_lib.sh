# pg_lib.sh: a private PostgreSQL for the benches and the demo (sourced, not run, under
# `set -euo pipefail`; it moves to the repository root).
#   pg_private NAME   a fresh folder for it, $BUILD_DIR/NAME (or one under /tmp: scripts/pg.sh dir),
#                     in pgdir; on exit, every background job still running gets SIGTERM and is
#                     waited for, the mock broker (tests/kafka_lib.sh) stops, the server stops
#                     and a folder under /tmp is removed. Start the server with
#                     DB=$(bash scripts/pg.sh start "$pgdir" PORT).
#   q SQL             one value per line, unaligned
#   now_ms, calc EXPR the clock in ms; floating-point arithmetic without bc
# Sets BUILD_DIR (default build) and bin (cdcvec there, or $CDCVEC_BIN).

cd "$(dirname "${BASH_SOURCE[0]}")/.." || return
BUILD_DIR=${BUILD_DIR:-build}
bin=${CDCVEC_BIN:-$PWD/$BUILD_DIR/cdcvec}

pg_private() {
  rm -rf "${BUILD_DIR:?}/$1"
  pgdir=$(bash scripts/pg.sh dir "$PWD/$BUILD_DIR/$1")
  trap pg_private_stop EXIT
}

pg_private_stop() {
  local p
  for p in $(jobs -p); do
    [ "$p" = "${KMOCK_PID:-}" ] && continue
    { kill -TERM "$p" && wait "$p"; } 2>/dev/null || true
  done
  [ -z "${KMOCK_DIR:-}" ] || kmock_stop
  bash scripts/pg.sh stop "$pgdir" 2>/dev/null || true
  case $pgdir in /tmp/cdcvec-pg.*) rm -rf "$pgdir" ;; esac
}

q() { psql -qAtX "$DB" -c "$1"; }
now_ms() { echo $(($(date +%s%N) / 1000000)); }
calc() { awk "BEGIN { print $1 }"; }
