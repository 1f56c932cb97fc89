#!/usr/bin/env bash
# test_pgerr_live.sh: the cv_pg classifier against errors a real PostgreSQL 15 raises, through
# tests/pgerr_probe. Two private servers from scripts/pg.sh: the first for connection failures
# (wrong password, missing password/role/database, bad sslmode, SSL refused, nothing
# listening, no REPLICATION right) and statement failures (publication on another role's
# table, on an unlogged table, on a missing table, a slot already streaming to someone else, a
# terminated backend, bad data); the second with max_replication_slots = 1 (slots exhausted),
# then wal_level = replica (no logical decoding) and SSL with a self-signed certificate
# (unverifiable or mismatched certificates). Both are stopped on exit.
#   usage: test_pgerr_live.sh path/to/pgerr_probe
set -u
BIN=/usr/lib/postgresql/15/bin
. "$(dirname "$0")/sync_lib.sh"
test_begin pgerr 43000 "$1"
probe=$bin
fail=0
recv_pid=
export PGPASSFILE=$work/no-pgpass PGCONNECT_TIMEOUT=10
unset PGPASSWORD PGSSLMODE PGSSLROOTCERT PGSERVICE PGUSER PGDATABASE

# expect NAME PATTERN CONNINFO [SQL...]: the probe's line must match the extended regex PATTERN
expect() {
  local name=$1 pattern=$2 out
  shift 2
  out=$("$probe" "$@" 2>&1)
  if echo "$out" | grep -Eq -- "$pattern"; then
    echo "ok   $name"
  else
    echo "FAIL $name"
    echo "     want: $pattern"
    echo "     got:  $out"
    fail=1
  fi
}
# rewrite FILE: replaces FILE's content with stdin, keeping its owner (the server runs as postgres)
rewrite() { local tmp=$work/rewrite.tmp; cat >"$tmp" && cat "$tmp" >"$1" && rm -f "$tmp"; }

p1=$(free_port $((43000 + $$ % 4000)))
p2=$(free_port $((p1 + 1)))
dead=$(free_port $((p2 + 1)))
pg_start_retry "$work/pg1" DB1 "$p1" || { echo "FAIL cannot start PostgreSQL"; exit 1; }
p1=${DB1##*:}; p1=${p1%%/*} # the port it got
H1="host=127.0.0.1 port=$p1"
q1() { psql -qAtX "$DB1" -c "$1"; }
psql -qX "$DB1" >/dev/null <<'SQL'
CREATE ROLE alice LOGIN PASSWORD 'secret';
CREATE ROLE carol LOGIN;
GRANT CREATE ON DATABASE postgres TO alice;
CREATE TABLE t_owned (id int PRIMARY KEY, d text);
CREATE UNLOGGED TABLE t_unlogged (id int PRIMARY KEY, d text);
CREATE PUBLICATION p_ok FOR TABLE t_owned;
SQL
{ echo "host all alice 127.0.0.1/32 scram-sha-256"; cat "$work/pg1/data/pg_hba.conf"; } | rewrite "$work/pg1/data/pg_hba.conf"
q1 "SELECT pg_reload_conf()" >/dev/null

echo "# connection failures"
expect "wrong password: permanent auth" '^stage=connect .*retriable=0 kind=auth .*password authentication failed' \
  "$H1 user=alice password=wrong dbname=postgres"
expect "no password: permanent auth" '^stage=connect .*retriable=0 kind=auth .*no password supplied' \
  "$H1 user=alice dbname=postgres"
expect "missing role: permanent auth" "^stage=connect .*retriable=0 kind=auth .*role 'ghost' does not exist" \
  "$H1 user=ghost dbname=postgres"
expect "missing database: permanent missing_object" \
  "^stage=connect .*retriable=0 kind=missing_object .*database 'nosuchdb' does not exist" \
  "$H1 user=postgres dbname=nosuchdb"
expect "bad sslmode: permanent config" "^stage=connect .*retriable=0 kind=config .*invalid sslmode value" \
  "$H1 user=postgres sslmode=bogus"
expect "SSL required, server without SSL: permanent config" \
  '^stage=connect .*retriable=0 kind=config .*SSL was required' "$H1 user=postgres sslmode=require"
expect "no REPLICATION right: permanent privilege" \
  '^stage=connect .*retriable=0 kind=privilege .*replication role' "$H1 user=carol dbname=postgres replication=database"
expect "nothing listening: retriable connection" '^stage=connect .*retriable=1 kind=connection .*refused' \
  "host=127.0.0.1 port=$dead user=postgres"
expect "right password connects" '^ok$' "$H1 user=alice password=secret dbname=postgres" "SELECT 1"

echo "# statement failures"
expect "publication on another role's table: permanent privilege, fix names the owner" \
  '^stage=query .*retriable=0 kind=privilege sqlstate=42501 fix=".*owner.*must be owner of table t_owned' \
  "$H1 user=alice password=secret dbname=postgres" "CREATE PUBLICATION p_alice FOR TABLE t_owned"
expect "publication on an unlogged table: permanent config" \
  '^stage=query .*retriable=0 kind=config sqlstate=22023 fix=".*SET LOGGED.*cannot add relation' \
  "$DB1" "CREATE PUBLICATION p_unlogged FOR TABLE t_unlogged"
expect "publication on a missing table: permanent missing_object" \
  '^stage=query .*retriable=0 kind=missing_object sqlstate=42P01' "$DB1" "CREATE PUBLICATION p_x FOR TABLE nope"
expect "division by zero: permanent data" '^stage=query .*retriable=0 kind=data sqlstate=22012' "$DB1" "SELECT 1/0"
expect "terminated backend: retriable connection" '^stage=query .*retriable=1 kind=connection' \
  "$DB1" "SELECT pg_terminate_backend(pg_backend_pid())"

R1="$H1 user=postgres dbname=postgres replication=database"
expect "slot created" '^ok$' "$R1" "CREATE_REPLICATION_SLOT s1 LOGICAL pgoutput"
"$BIN/pg_recvlogical" -d "$R1" -S s1 --start -o proto_version=1 -o publication_names=p_ok -f /dev/null \
  2>"$work/recvlogical.log" &
recv_pid=$!
for _ in $(seq 1 100); do
  [ "$(q1 "SELECT active FROM pg_replication_slots WHERE slot_name = 's1'")" = t ] && break
  sleep 0.1
done
expect "slot streaming to another process: retriable conflict" \
  "^stage=query .*retriable=1 kind=conflict sqlstate=55006 fix=\"-\" .*replication slot 's1' is active for PID" \
  "$R1" "START_REPLICATION SLOT s1 LOGICAL 0/0 (proto_version '1', publication_names 'p_ok')"
kill "$recv_pid" 2>/dev/null && wait "$recv_pid" 2>/dev/null
recv_pid=

echo "# second server: max_replication_slots = 1, then wal_level = replica with SSL"
pg_start_retry "$work/pg2" DB2 "$p2" || { echo "FAIL cannot start PostgreSQL"; exit 1; }
p2=${DB2##*:}; p2=${p2%%/*} # the port it got
H2="host=127.0.0.1 port=$p2"
echo "max_replication_slots = 1" >>"$work/pg2/data/postgresql.conf"
bash "$root/scripts/pg.sh" restart "$work/pg2"
R2="$H2 user=postgres dbname=postgres replication=database"
expect "the one slot" '^ok$' "$DB2" "SELECT pg_create_logical_replication_slot('a', 'pgoutput')"
expect "all slots in use: permanent config, fix names max_replication_slots" \
  '^stage=query .*retriable=0 kind=config sqlstate=53400 fix=".*max_replication_slots.*pg_replication_slots.*all replication slots are in use' \
  "$R2" "CREATE_REPLICATION_SLOT b LOGICAL pgoutput"
expect "slot dropped" '^ok$' "$DB2" "SELECT pg_drop_replication_slot('a')"

echo "wal_level = replica" >>"$work/pg2/data/postgresql.conf"
ssl=0
if command -v openssl >/dev/null; then
  d=$work/pg2/data
  openssl req -new -x509 -days 2 -nodes -subj "/CN=localhost" -keyout "$d/server.key" -out "$d/server.crt" \
    >/dev/null 2>&1 &&
    openssl req -new -x509 -days 2 -nodes -subj "/CN=other" -keyout "$work/other.key" -out "$work/other.crt" \
      >/dev/null 2>&1 && ssl=1
  if [ $ssl = 1 ]; then
    chmod 600 "$d/server.key"
    [ "$(id -u)" -eq 0 ] && chown postgres "$d/server.key" "$d/server.crt"
    cp "$d/server.crt" "$work/server.crt"
    echo "ssl = on" >>"$d/postgresql.conf"
  fi
fi
bash "$root/scripts/pg.sh" restart "$work/pg2"
expect "logical slot with wal_level = replica: permanent config, fix names wal_level" \
  '^stage=query .*retriable=0 kind=config sqlstate=55000 fix=".*wal_level = logical.*logical decoding requires wal_level' \
  "$R2" "CREATE_REPLICATION_SLOT c LOGICAL pgoutput"
if [ $ssl = 1 ]; then
  expect "missing root certificate: permanent config" \
    '^stage=connect .*retriable=0 kind=config .*root certificate file' \
    "$H2 user=postgres sslmode=verify-ca sslrootcert=$work/nonexistent.crt"
  expect "certificate from another CA: permanent config" \
    '^stage=connect .*retriable=0 kind=config .*certificate verify failed' \
    "$H2 user=postgres sslmode=verify-ca sslrootcert=$work/other.crt"
  expect "certificate for another host name: permanent config" \
    '^stage=connect .*retriable=0 kind=config .*does not match host name' \
    "$H2 user=postgres sslmode=verify-full sslrootcert=$work/server.crt"
  expect "verified SSL connects" '^ok$' "$H2 user=postgres sslmode=verify-ca sslrootcert=$work/server.crt" \
    "SELECT 1"
else
  echo "skip SSL certificate cases: no openssl command"
fi

[ $fail = 0 ] && echo "all passed"
exit $fail
