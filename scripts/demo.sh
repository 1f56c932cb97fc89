#!/usr/bin/env bash
# demo.sh: README's main command. On a fresh machine: installs what is missing, fetches the
# model, builds cdcvec, starts a private PostgreSQL (wal_level=logical, pgvector) under the
# build folder as a non-root user, loads batch 1 of the bookstore catalog, starts
# `cdcvec sync`, searches, applies batch 2 plus an update and a delete, searches again as soon
# as the changes are searchable, and stops everything cleanly.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
PORT=${CDCVEC_DEMO_PORT:-55432}

bash scripts/install-deps.sh
python3 models/fetch_model.py
cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$BUILD_DIR" -j"$(nproc)" >/dev/null
bin=$PWD/$BUILD_DIR/cdcvec
. scripts/pg_lib.sh
pg_private demo-pg

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
step "starting PostgreSQL 15 with wal_level=logical and pgvector in $pgdir"
DB=$(bash scripts/pg.sh start "$pgdir" "$PORT")
echo "$DB"

step "loading batch 1 of the catalog (8 books)"
sed -n '1,/-- batch 2/p' tests/data/books.sql | psql -qX "$DB"
q "SELECT id || '  ' || name FROM books ORDER BY id"

step "cdcvec sync --source $DB --table public.books --text-column description"
CDCVEC_LOG=${CDCVEC_LOG:-warn} "$bin" sync --source "$DB" --table public.books --text-column description \
  --http 127.0.0.1:$((PORT + 1)) &
sync_pid=$!
# searchable = the sink holds a vector for every row, with the current text
MISMATCH="SELECT count(*) FROM books b FULL JOIN cdcvec.public_books v USING (id)
  WHERE b.id IS NULL OR v.id IS NULL OR v.text_hash <> sha256(convert_to(b.description, 'UTF8'))
     OR (v.payload->>'year')::int IS DISTINCT FROM b.year"
wait_searchable() {
  local t0 now
  t0=$(date +%s%N)
  for _ in $(seq 1 1200); do
    if [ "$(q "$MISMATCH" 2>/dev/null)" = 0 ]; then
      now=$(date +%s%N)
      echo "searchable after $(((now - t0) / 1000000)) ms"
      return 0
    fi
    sleep 0.05
  done
  echo "not searchable after 60 s" >&2
  return 1
}
wait_searchable
searches() {
  for query in "books like star wars" "aliens invade the earth" "a society that controls people"; do
    echo
    echo "search: \"$query\""
    "$bin" search "$query" --source "$DB" --table public.books --limit 3 2>/dev/null
  done
}
searches

step "batch 2 (8 more books), an update of a description, a change of a year, a delete"
sed -n '/-- batch 2/,$p' tests/data/books.sql | psql -qX "$DB"
q "UPDATE books SET description = 'A boy discovers he is a wizard and attends a school of magic.' WHERE name = 'The Time Machine'"
q "UPDATE books SET year = 1966 WHERE name = 'Dune'"
q "DELETE FROM books WHERE name = 'The Hunger Games'"
wait_searchable
searches

step "metrics (http://127.0.0.1:$((PORT + 1))/metrics)"
curl -s "http://127.0.0.1:$((PORT + 1))/metrics" | grep -E '^cdcvec_sync_(changes|embedded|reembed|batches)' || true

step "stopping"
kill -TERM "$sync_pid" && wait "$sync_pid"
echo "cdcvec sync stopped; slot position: $(q "SELECT confirmed_flush_lsn FROM pg_replication_slots")"
