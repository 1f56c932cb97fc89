#!/usr/bin/env bash
# pg.sh: a private PostgreSQL 15 (wal_level=logical, pgvector available) for the demo and the
# integration tests, in a folder of its own, run as a non-root user (PostgreSQL refuses root:
# as root, the server runs as the system user "postgres").
#   pg.sh start DIR PORT   initdb if needed, start; prints the connection string
#   pg.sh stop DIR         fast shutdown
#   pg.sh restart DIR      fast restart (same port)
#   pg.sh kill DIR         immediate shutdown (crash-like)
#   pg.sh dir DIR          prints DIR, or a folder under /tmp when the server's user could not
#                          reach DIR (a checkout under a private home folder, as root)
# Superuser "postgres", trust authentication on 127.0.0.1 only.
set -euo pipefail
BIN=/usr/lib/postgresql/15/bin
cmd=$1
if [ "$cmd" = dir ]; then
  mkdir -p "$2"
  if [ "$(id -u)" -ne 0 ] || runuser -u postgres -- test -x "$(cd "$2" && pwd)"; then
    cd "$2" && pwd
  else
    d=$(mktemp -d /tmp/cdcvec-pg.XXXXXX) && chmod 755 "$d" && echo "$d"
  fi
  exit 0
fi
dir=$(mkdir -p "$2" && cd "$2" && pwd)
as_pg() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}
case "$cmd" in
start)
  port=$3
  if [ ! -f "$dir/data/PG_VERSION" ]; then
    [ "$(id -u)" -eq 0 ] && chown postgres "$dir"
    as_pg "$BIN/initdb" -D "$dir/data" -U postgres --auth=trust --encoding=UTF8 --locale=C.UTF-8 >"$dir/initdb.log"
    cat >>"$dir/data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir'
wal_level = logical
max_replication_slots = 16
max_wal_senders = 16
wal_sender_timeout = 60s
fsync = off
full_page_writes = off
shared_buffers = 128MB
CONF
    printf 'host all all 127.0.0.1/32 trust\nhost replication all 127.0.0.1/32 trust\nlocal all all trust\n' \
      >"$dir/data/pg_hba.conf"
  fi
  as_pg "$BIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start >/dev/null
  echo "postgres://postgres@127.0.0.1:$(sed -n 's/^port = //p' "$dir/data/postgresql.conf" | tail -1)/postgres"
  ;;
stop) as_pg "$BIN/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null ;;
restart) as_pg "$BIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -m fast -w restart >/dev/null ;;
kill) as_pg "$BIN/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null ;;
*) echo "usage: pg.sh start DIR PORT | stop DIR | restart DIR | kill DIR" >&2; exit 2 ;;
esac
