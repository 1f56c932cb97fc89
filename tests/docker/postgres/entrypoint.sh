#!/bin/bash
# The official postgres image's entry point, reduced to what docker/compose.yaml uses: on an
# empty $PGDATA, initdb with POSTGRES_USER and the password from POSTGRES_PASSWORD_FILE, create
# POSTGRES_DB, run /docker-entrypoint-initdb.d/*.sql with psql on a server that listens on its
# socket only, then run `postgres ARGS` listening on every address.
set -euo pipefail
if [ "$(id -u)" = 0 ]; then
  install -d -o postgres -g postgres -m 700 "$PGDATA"
  install -d -o postgres -g postgres /var/run/postgresql
  exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" "$@"
fi
[ "${1:-}" = postgres ] && shift
user=${POSTGRES_USER:-postgres}
db=${POSTGRES_DB:-$user}
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  pw=${POSTGRES_PASSWORD:-}
  [ -n "${POSTGRES_PASSWORD_FILE:-}" ] && pw=$(cat "$POSTGRES_PASSWORD_FILE")
  initdb -D "$PGDATA" -U "$user" --pwfile=<(printf '%s\n' "$pw") --auth-local=trust \
    --auth-host=scram-sha-256 >/dev/null
  echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
  pg_ctl -D "$PGDATA" -o "-c listen_addresses=''" -w start >/dev/null
  [ "$db" != postgres ] && psql -qX -v ON_ERROR_STOP=1 -U "$user" -d postgres -c "CREATE DATABASE \"$db\""
  for f in /docker-entrypoint-initdb.d/*.sql; do
    [ -e "$f" ] || continue
    echo "docker-entrypoint: running $f"
    psql -qX -v ON_ERROR_STOP=1 -U "$user" -d "$db" -f "$f"
  done
  pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
  echo "docker-entrypoint: initialization done"
fi
exec postgres -D "$PGDATA" -c listen_addresses='*' "$@"
